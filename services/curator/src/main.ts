// Curator: failure events in, batches out. Wiring only; decisions live in handlers/ and state/.
import { kvKeys, route } from "@moss/bus";
import { Buckets, Consumers, Messages, Streams, failureSubject } from "@moss/contracts";
import { runService } from "@moss/lifecycle";
import { context, extractContext } from "@moss/telemetry";
import { createFingerprinter } from "./fingerprint";
import { onOutcome, type BreakerDeps } from "./handlers/breaker";
import { ingestChunk, tick, type CuratorDeps } from "./handlers/ingest";
import { buildApp } from "./http";

await runService({
  name: "curator",
  env: process.env,
  async start({ config, log, bus, blob }) {
    const policyFor = (agent: string) => ({ ...config.curator, ...config.agents[agent]?.curation });
    let ackFloor = 0;
    const refreshAckFloor = async () => {
      const info = await bus.jsm.consumers.info(Streams.FAILURES, Consumers.curator.durable);
      ackFloor = info.ack_floor.stream_seq;
    };
    await refreshAckFloor();
    const deps: CuratorDeps = {
      blob,
      state: await bus.kv(Buckets.curator),
      batches: await bus.kv(Buckets.batches),
      breakers: await bus.kv(Buckets.fingerprints),
      policyFor,
      fingerprint: createFingerprinter(config.curator.fingerprint),
      ackFloor: () => ackFloor,
      log,
      maxStateBytes: bus.nc.info?.max_payload,
      publishReady: async (msg, trace) => {
        await context.with(extractContext(trace), () => bus.publish(Messages.batchReady, msg, { msgId: `batch-ready-${msg.batchId}` }));
      },
      publishVerdict: async (m) => void (await bus.publish(Messages.batchVerdict, m, { msgId: `verdict-${m.batchId}-${m.attempt}-${m.verdict}` })),
      publishRegression: async (m) => void (await bus.publish(Messages.regression, m, { msgId: `regression-${m.failureId}` })),
    };
    const breakerDeps: BreakerDeps = { batches: deps.batches, breakers: deps.breakers, thresholdFor: (a) => policyFor(a).breakerThreshold, log };

    const failures = await bus.consumeChunks(Consumers.curator, Messages.failure, (items) => ingestChunk(items, deps), { maxChunk: config.curator.maxChunk });
    const outcomes = await bus.consume(Consumers.curatorOutcomes, [
      route(Messages.replayCompleted, (msg) => onOutcome({ kind: "replay", msg }, breakerDeps)),
      route(Messages.candidateFailed, (msg) => onOutcome({ kind: "candidate", msg }, breakerDeps)),
      route(Messages.batchVerdict, (msg) => onOutcome({ kind: "verdict", msg }, breakerDeps)),
      route(Messages.promotion, (msg) => onOutcome({ kind: "promotion", msg }, breakerDeps)),
    ]);

    // Windows close, queues drain and the outbox empties on a timer, from every replica (CAS makes that safe).
    let ticking = false;
    const timer = setInterval(() => {
      if (ticking) return;
      ticking = true;
      (async () => {
        await refreshAckFloor();
        for (const key of await kvKeys(deps.state, "agent.*")) await tick(key.slice("agent.".length), deps);
      })()
        .catch((err) => log.warn("curator tick failed; the next one retries", { err }))
        .finally(() => (ticking = false));
    }, Math.min(500, Math.max(100, config.curator.batchWindowMs / 4)));

    const http = config.curator.http.enabled
      ? {
          app: buildApp({
            token: config.curator.http.token,
            bodyLimitBytes: config.curator.http.bodyLimitBytes,
            publish: async (ev) => void (await bus.publish(Messages.failure, ev, { msgId: ev.id, subject: failureSubject(ev.agent) })),
          }),
          host: config.curator.http.host,
          port: config.curator.http.port,
        }
      : undefined;
    return { consumers: [failures, outcomes], http, onStop: async () => clearInterval(timer) };
  },
});
