// Promoter: verdicts, consent, swap, bake, rollback. Wiring only.
import { route } from "@moss/bus";
import { Buckets, Consumers, Messages } from "@moss/contracts";
import { runService } from "@moss/lifecycle";
import { requireGoodSignature } from "@moss/git";
import { createRuntime } from "@moss/runtime";
import { onApproval, onCandidateFailed, onReplayCompleted, type VerdictDeps } from "./handlers/verdict";
import { httpProbe } from "./probe";

await runService({
  name: "promoter",
  env: process.env,
  async start({ config, log, bus }) {
    const agentCfg = (agent: string) => {
      const a = config.agents[agent];
      if (!a) throw new Error(`agent '${agent}' is not in the Moss config`);
      return a;
    };
    const deps: VerdictDeps = {
      batches: await bus.kv(Buckets.batches),
      deployments: await bus.kv(Buckets.deployments),
      breakers: await bus.kv(Buckets.fingerprints),
      candidates: await bus.kv(Buckets.candidates),
      verifySignature: config.rewriter.signing.required
        ? async (agent, commit) => {
            const allowed = config.rewriter.signing.allowedSigners;
            if (!allowed) return { ok: false, reason: "rewriter.signing.required is on but rewriter.signing.allowedSigners is not set (run `moss keys init`)" };
            try {
              await requireGoodSignature(agentCfg(agent).repo, commit, allowed);
              return { ok: true, reason: "good signature" };
            } catch (err) {
              if ((err as { retryable?: boolean }).retryable) throw err;
              return { ok: false, reason: (err as Error).message };
            }
          }
        : undefined,
      breakerThreshold: (agent) => config.agents[agent]?.curation.breakerThreshold ?? config.curator.breakerThreshold,
      runtime: createRuntime(),
      probe: (agent) => {
        const a = agentCfg(agent);
        return httpProbe(`http://127.0.0.1:${a.livePort}${a.healthPath}`, config.promoter.probeTimeoutMs)();
      },
      liveEnv: (agent) => ({ ...agentCfg(agent).env, PORT: String(agentCfg(agent).livePort), AGENT_NAME: agent, MOSS_NATS_URL: config.nats.url }),
      stateDir: (agent) => agentCfg(agent).stateDir,
      bake: config.promoter,
      autoApprove: config.promoter.autoApprove,
      maxAttempts: config.promoter.maxAttempts ?? config.rewriter.tiers[config.rewriter.depth].maxAttempts,
      log,
      publishRetry: async (m) => void (await bus.publish(Messages.batchRetry, m, { msgId: `batch-retry-${m.batchId}-${m.attempt}` })),
      publishVerdict: async (m) => void (await bus.publish(Messages.batchVerdict, m, { msgId: `verdict-${m.batchId}-${m.attempt}-${m.verdict}` })),
      publishOutcome: async (m) => void (await bus.publish(Messages.promotion, m, { msgId: `promotion-${m.batchId}` })),
    };
    const consumer = await bus.consume(Consumers.promoter, [
      route(Messages.replayCompleted, (m) => onReplayCompleted(m, deps)),
      route(Messages.candidateFailed, (m) => onCandidateFailed(m, deps)),
      route(Messages.approval, (m) => onApproval(m, deps)),
    ]);
    return { consumers: [consumer] };
  },
});
