// Auditor: every moss.> message into an append-only, hash-chained log; operator API over it. Wiring only.
import { rawRoute } from "@moss/bus";
import { AllMessages, Consumers, Messages, type ConsumerDef } from "@moss/contracts";
import { runService } from "@moss/lifecycle";
import { AuditLog } from "./audit-log";
import { record } from "./handlers/record";
import { deliver } from "./handlers/webhooks";
import { buildApp } from "./http";

await runService({
  name: "auditor",
  env: process.env,
  async start({ config, bus, blob }) {
    const log = new AuditLog(config.paths.audit);
    const routesFor = (c: ConsumerDef) => AllMessages.filter((m) => m.stream === c.stream).map((m) => rawRoute(m, (payload, ctx) => record(log, m.name, c.stream, payload, ctx)));
    const consumers = await Promise.all(
      [Consumers.auditorFailures, Consumers.auditorPipeline, Consumers.auditorDlq].map((c) => bus.consume(c, routesFor(c))),
    );
    // Webhooks on a consumer of their own: a hook that is down delays nobody's audit record.
    if (config.auditor.webhooks.length) {
      const hooks = { hooks: config.auditor.webhooks, delivered: new Set<string>() };
      const defs = [Messages.batchVerdict, Messages.promotion, Messages.rollbackDone];
      consumers.push(await bus.consume(Consumers.auditorWebhooks, defs.map((m) => rawRoute(m, (payload, ctx) => deliver(m.name, payload, `${m.name}-${ctx.streamSeq}`, hooks)))));
    }
    return {
      consumers,
      http: { app: buildApp({ log, blob }), host: config.auditor.host, port: config.auditor.port },
      onStop: async () => log.close(),
    };
  },
});
