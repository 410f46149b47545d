// Auditor: every moss.> message into an append-only, hash-chained log; operator API over it. Wiring only.
import { rawRoute } from "@moss/bus";
import { AllMessages, Consumers, type ConsumerDef } from "@moss/contracts";
import { runService } from "@moss/lifecycle";
import { AuditLog } from "./audit-log";
import { record } from "./handlers/record";
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
    return {
      consumers,
      http: { app: buildApp({ log, blob }), host: config.auditor.host, port: config.auditor.port },
      onStop: async () => log.close(),
    };
  },
});
