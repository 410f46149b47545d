// Replayer: candidate → every failure of its batch replayed in an ephemeral, isolated container. Wiring only.
import { batchStore, regressionStore, timeTravelStore } from "@moss/batch";
import { route } from "@moss/bus";
import { knownAgent } from "@moss/config";
import { Buckets, Consumers, Messages } from "@moss/contracts";
import { runService } from "@moss/lifecycle";
import { createRuntime } from "@moss/runtime";
import { replay, replayTrial, type ReplayerDeps } from "./handlers/replay";
import { onTimeTravelReady } from "./handlers/time-travel";

/** Longer than the longest trial (failure timeout max 10 min x 1.5, plus start allowance). */
const STALE_TRIAL_MS = 20 * 60_000;

await runService({
  name: "replayer",
  env: process.env,
  async start({ config, log, bus, blob }) {
    const runtime = createRuntime({
      trialMemoryBytes: config.replayer.memoryMb * 1024 * 1024,
      trialPidsLimit: config.replayer.pidsLimit,
      trialPoolSize: config.replayer.warmPool ?? config.replayer.concurrency,
    });
    // Trials are always removed, unless their replayer died mid-trial: clear those (at once when that replayer was a
    // process of this host that is gone; else when older than any trial can run).
    const removed = await runtime.removeStaleTrials(STALE_TRIAL_MS).catch((err) => (log.warn("could not sweep stale trial containers", { err }), 0));
    if (removed) log.info("removed trial containers left by a crashed replayer", { removed });
    const deps: ReplayerDeps = {
      agent: (name) => knownAgent(config, name).entry,
      blob,
      runtime,
      batches: batchStore(await bus.kv(Buckets.batches)),
      replays: await bus.kv(Buckets.replays),
      regressions: regressionStore(await bus.kv(Buckets.regressions)),
      publish: bus.publish,
      log,
    };
    const candidates = await bus.consume(Consumers.replayer, [route(Messages.candidateReady, (m, ctx) => replay(m, deps, ctx))]);
    // This replica's share of every batch: as many trials as it runs at once, and no more taken ahead, so a replica
    // that joins takes the next trial as soon as it is free.
    const concurrency = config.replayer.concurrency;
    const trials = await bus.consume(Consumers.replayerTrials, [route(Messages.replayTrial, (m, ctx) => replayTrial(m, deps, ctx))], { concurrency, prefetch: concurrency });
    // `moss replay`: stored turns against any version, one request at a time per replica, its trials `concurrency` at once.
    const travelDeps = { ...deps, travels: timeTravelStore(await bus.kv(Buckets.timeTravel)), concurrency };
    const travels = await bus.consume(Consumers.replayerTimeTravel, [route(Messages.timeTravelReady, (m, ctx) => onTimeTravelReady(m, travelDeps, ctx))]);
    // Trial sidecars made ahead, so the first trial does not pay for its own; removed when this replica stops.
    void runtime.warmTrials();
    return { consumers: [candidates, trials, travels], onStop: () => runtime.close() };
  },
});
