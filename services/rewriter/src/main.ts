// Rewriter: batch → staged coding agent → guardrails → signed commit → candidate image. Wiring only.
import { route } from "@moss/bus";
import { Buckets, Consumers, Messages } from "@moss/contracts";
import { runService } from "@moss/lifecycle";
import { createRuntime } from "@moss/runtime";
import { createAdapter } from "./adapters";
import { rewrite, type RewriterDeps } from "./handlers/rewrite";

await runService({
  name: "rewriter",
  env: process.env,
  async start({ config, log, bus, blob }) {
    const r = config.rewriter;
    const adapterCfg = r.adapter ?? (r.command ? { preset: "command" as const, command: [...r.command] } : undefined);
    const deps: RewriterDeps = {
      agents: config.agents,
      worktreesDir: config.paths.worktrees,
      adapter: adapterCfg ? createAdapter(structuredClone(adapterCfg)) : undefined,
      plan: (agent) => {
        const o = config.agents[agent]?.rewrite;
        return { stages: { ...r.stages, ...o?.stages }, tier: r.tiers[o?.depth ?? r.depth] };
      },
      timeoutMs: r.timeoutMs,
      envAllow: r.envAllow,
      env: process.env,
      guardrails: structuredClone(r.guardrails),
      signing: { key: r.signing.key, allowedSigners: r.signing.allowedSigners },
      blob,
      runtime: createRuntime({ buildTimeoutMs: config.rewriter.buildTimeoutMs }),
      batches: await bus.kv(Buckets.batches),
      candidates: await bus.kv(Buckets.candidates),
      log,
      publishReady: async (m) => void (await bus.publish(Messages.candidateReady, m, { msgId: `candidate-${m.batchId}-${m.attempt}` })),
      publishFailed: async (m) => void (await bus.publish(Messages.candidateFailed, m, { msgId: `candidate-${m.batchId}-${m.attempt}` })),
    };
    const handle = (m: Parameters<typeof rewrite>[0]) => rewrite(m, deps);
    const consumer = await bus.consume(Consumers.rewriter, [route(Messages.batchReady, handle), route(Messages.batchRetry, handle)]);
    return { consumers: [consumer] };
  },
});
