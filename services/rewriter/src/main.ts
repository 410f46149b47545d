// Rewriter: batch → coding agent → signed-off commit → candidate image. Wiring only.
import { route } from "@moss/bus";
import { Buckets, Consumers, Messages } from "@moss/contracts";
import { runService } from "@moss/lifecycle";
import { createRuntime } from "@moss/runtime";
import { rewrite, type RewriterDeps } from "./handlers/rewrite";

await runService({
  name: "rewriter",
  env: process.env,
  async start({ config, log, bus, blob }) {
    const deps: RewriterDeps = {
      agents: config.agents,
      worktreesDir: config.paths.worktrees,
      command: config.rewriter.command,
      timeoutMs: config.rewriter.timeoutMs,
      envAllow: config.rewriter.envAllow,
      env: process.env,
      blob,
      runtime: createRuntime(),
      batches: await bus.kv(Buckets.batches),
      log,
      publishReady: async (m) => void (await bus.publish(Messages.candidateReady, m, { msgId: `candidate-${m.batchId}-${m.attempt}` })),
      publishFailed: async (m) => void (await bus.publish(Messages.candidateFailed, m, { msgId: `candidate-${m.batchId}-${m.attempt}` })),
    };
    const handle = (m: Parameters<typeof rewrite>[0]) => rewrite(m, deps);
    const consumer = await bus.consume(Consumers.rewriter, [route(Messages.batchReady, handle), route(Messages.batchRetry, handle)]);
    return { consumers: [consumer] };
  },
});
