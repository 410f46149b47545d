// Auditor: every moss.> message into an append-only, hash-chained log; its read model answered over the bus. Wiring only.
import { rawRoute, serveQuery } from "@moss/bus";
import { AllMessages, Buckets, Consumers, Messages, Queries, type ConsumerDef } from "@moss/contracts";
import { runService } from "@moss/lifecycle";
import { AuditLog } from "./audit-log";
import { Checkpointer, gitCopies } from "./checkpoints";
import { record } from "./handlers/record";
import { deliver } from "./handlers/webhooks";
import { buildApp, buildHealthApp } from "./http";

await runService({
  name: "auditor",
  env: process.env,
  async start({ config, bus, blob, log: logger }) {
    const log = new AuditLog(config.paths.audit);
    const checkpointsKv = await bus.kv(Buckets.audit);
    const signing = config.rewriter.signing;
    // Each checkpoint is said on the bus once stored: the rewriter keeps it as a git note in every agent repository.
    const checkpointer = new Checkpointer({ log, blob, kv: checkpointsKv, ...(signing.key ? { signingKey: signing.key } : {}), every: config.auditor.checkpointEvery, announce: (c) => bus.publish(Messages.auditCheckpoint, c) });
    const routesFor = (c: ConsumerDef) =>
      AllMessages.filter((m) => m.stream === c.stream).map((m) =>
        rawRoute(m, async (payload, ctx) => {
          await record(log, m.name, c.stream, payload, ctx);
          // A checkpoint that cannot be written (the key unreadable, the blob store away) never holds up a record: it
          // is said, and tried again at the next record.
          await checkpointer.maybe().catch((err: Error) => logger.warn("could not checkpoint the audit log; trying again at the next record", { err: err.message }));
        }),
      );
    const consumers = await Promise.all(
      [Consumers.auditorFailures, Consumers.auditorPipeline, Consumers.auditorDlq].map((c) => bus.consume(c, routesFor(c))),
    );
    // Webhooks on a consumer of their own: a hook that is down delays nobody's audit record.
    if (config.auditor.webhooks.length) {
      const hooks = { hooks: config.auditor.webhooks, delivered: new Set<string>() };
      const defs = [Messages.batchVerdict, Messages.promotion, Messages.rollbackDone];
      consumers.push(await bus.consume(Consumers.auditorWebhooks, defs.map((m) => rawRoute(m, (payload, ctx) => deliver(m.name, payload, `${m.name}-${ctx.streamSeq}`, hooks)))));
    }
    // The read model, answered to the operator API over the bus (which authenticated the operator); never on the network.
    // Each message as its stream still holds it: what `verify` holds the newest records to.
    const streams = {
      get: async (stream: string, seq: number) => {
        const m = await bus.jsm.streams.getMessage(stream, { seq }).catch(() => null);
        return m ? new TextDecoder().decode(m.data) : undefined;
      },
    };
    // The checkpoints as the agent repositories on this machine keep them (a repository it cannot read is left out).
    const git = gitCopies(Object.entries(config.agents).map(([agent, a]) => ({ agent, repo: a.repo })));
    const reads = buildApp({ log, blob, streams, git, checkpoints: { kv: checkpointsKv, ...(signing.allowedSigners ? { allowedSigners: signing.allowedSigners } : {}) } });
    const queries = serveQuery(
      bus.nc,
      Queries.audit,
      async (req) => {
        const r = await reads.inject({ method: req.method, url: req.url });
        return { status: r.statusCode, contentType: String(r.headers["content-type"] ?? "application/json"), body: r.rawPayload };
      },
      { blobs: blob, log: logger },
    );
    return {
      consumers,
      http: { app: buildHealthApp(log), host: config.auditor.host, port: config.auditor.port },
      onStop: async () => {
        queries.stop();
        await checkpointer.now().catch(() => undefined);
        log.close();
      },
    };
  },
});

