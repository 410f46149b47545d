// Curator: failure events in, batches out. Wiring only; the decisions live in handlers/, state/, outbox.ts and timer.ts.
import { batchStore, breakerStore, regressionStore } from "@moss/batch";
import { resolveAgent } from "@moss/config";
import { route } from "@moss/bus";
import { Buckets, Consumers, Messages, Streams } from "@moss/contracts";
import { runService } from "@moss/lifecycle";
import { createFingerprinter } from "./fingerprint";
import { ingestChunk } from "./handlers/failures";
import { ingestSuccess } from "./handlers/successes";
import { buildApp } from "./http";
import type { CuratorDeps } from "./deps";
import { tickAll } from "./timer";

await runService({
  name: "curator",
  env: process.env,
  async start({ config, log, bus, blob }) {
    let ackFloor = 0;
    const refreshAckFloor = async () => {
      const info = await bus.jsm.consumers.info(Streams.FAILURES, Consumers.curator.durable);
      ackFloor = info.ack_floor.stream_seq;
    };
    await refreshAckFloor();
    const deps: CuratorDeps = {
      blob,
      state: await bus.kv(Buckets.curator),
      batches: batchStore(await bus.kv(Buckets.batches)),
      breakers: breakerStore(await bus.kv(Buckets.fingerprints)),
      policyFor: (agent) => resolveAgent(config, agent).curation,
      fingerprint: createFingerprinter(config.curator.fingerprint),
      ackFloor: () => ackFloor,
      log,
      maxStateBytes: bus.nc.info?.max_payload,
      publish: bus.publish,
    };
    const failures = await bus.consumeChunks(Consumers.curator, Messages.failure, (items) => ingestChunk(items, deps), { maxChunk: config.curator.maxChunk });
    const regressions = regressionStore(await bus.kv(Buckets.regressions));
    const successes = await bus.consume(Consumers.curatorSuccesses, [
      route(Messages.success, (ev) => ingestSuccess(ev, { blob, regressions, log, policyFor: (agent) => config.agents[agent]?.regressions })),
    ]);

    // Windows close, queues drain and the outbox empties on a timer, from every replica (CAS makes that safe).
    let ticking = false;
    const timer = setInterval(() => {
      if (ticking) return;
      ticking = true;
      (async () => {
        await refreshAckFloor();
        await tickAll(deps);
      })()
        .catch((err) => log.warn("curator tick failed; the next one retries", { err }))
        .finally(() => (ticking = false));
    }, Math.min(500, Math.max(100, config.curator.batchWindowMs / 4)));

    const http = config.curator.http.enabled
      ? {
          app: buildApp({
            token: config.curator.http.token,
            bodyLimitBytes: config.curator.http.bodyLimitBytes,
            publish: bus.publish,
          }),
          host: config.curator.http.host,
          port: config.curator.http.port,
        }
      : undefined;
    return { consumers: [failures, successes], http, onStop: async () => clearInterval(timer) };
  },
});
