// Replayer: candidate → every failure of its batch replayed in an ephemeral, isolated container. Wiring only.
import { route } from "@moss/bus";
import { Buckets, Consumers, Messages } from "@moss/contracts";
import { runService } from "@moss/lifecycle";
import { createRuntime } from "@moss/runtime";
import { replay, type ReplayerDeps } from "./handlers/replay";

await runService({
  name: "replayer",
  env: process.env,
  async start({ config, log, bus, blob }) {
    const deps: ReplayerDeps = {
      agents: config.agents,
      concurrency: config.replayer.concurrency,
      blob,
      runtime: createRuntime({ trialMemoryBytes: config.replayer.memoryMb * 1024 * 1024, trialPidsLimit: config.replayer.pidsLimit }),
      batches: await bus.kv(Buckets.batches),
      log,
      publish: async (m) => void (await bus.publish(Messages.replayCompleted, m, { msgId: `replay-${m.batchId}-${m.attempt}` })),
    };
    const consumer = await bus.consume(Consumers.replayer, [route(Messages.candidateReady, (m) => replay(m, deps))]);
    return { consumers: [consumer] };
  },
});
