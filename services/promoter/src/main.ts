// Promoter: the judge of every attempt, consent, swap, bake, rollback. Wiring only.
import { leaseStore, openStores, readGatewayStats, routeStore } from "@moss/batch";
import { route } from "@moss/bus";
import { knownAgent, resolveAgent } from "@moss/config";
import { Buckets, Consumers, Messages } from "@moss/contracts";
import { requireGoodSignatures } from "@moss/git";
import { liveEnv, runService } from "@moss/lifecycle";
import { createRuntime, httpProbe } from "@moss/runtime";
import type { PromoterDeps } from "./deps";
import { onApproval } from "./handlers/approvals";
import { onCandidateFailed, onReplayCompleted } from "./handlers/attempts";
import { onRegression } from "./handlers/regression";
import { onRollbackRequest } from "./handlers/rollback";

await runService({
  name: "promoter",
  env: process.env,
  async start({ config, log, bus, blob }) {
    const live = (agent: string) => knownAgent(config, agent).entry;
    const stats = bus.kv(Buckets.gatewayStats);
    const signing = config.rewriter.signing;
    const deps: PromoterDeps = {
      ...(await openStores(bus)),
      agent: (name) => resolveAgent(config, name),
      verifySignature: signing.required
        ? async (agent, commit, base) => {
            if (!signing.allowedSigners) return { ok: false, reason: "rewriter.signing.required is on but rewriter.signing.allowedSigners is not set (run `moss keys init`)" };
            try {
              await requireGoodSignatures(live(agent).repo, base, commit, signing.allowedSigners);
              return { ok: true, reason: "good signature" };
            } catch (err) {
              if ((err as { retryable?: boolean }).retryable) throw err;
              return { ok: false, reason: (err as Error).message };
            }
          }
        : undefined,
      runtime: createRuntime(),
      probe: (agent) => {
        const a = live(agent);
        return httpProbe(`http://127.0.0.1:${a.livePort}${a.healthPath}`, config.promoter.probeTimeoutMs, agent)();
      },
      serve: (agent) => {
        const a = live(agent);
        return { mode: a.serve, port: a.serve === "gateway" ? a.port : a.livePort, healthPath: a.healthPath };
      },
      canary: (agent) => live(agent).canary,
      rollbackState: (agent) => live(agent).rollbackState,
      stateBlobs: { put: (tar) => blob.put(tar, { contentType: "application/x-tar" }), get: (ref) => blob.get(ref.sha256) },
      routes: routeStore(await bus.kv(Buckets.routes)),
      leases: leaseStore(await bus.kv(Buckets.leases)),
      leaseTtlMs: config.promoter.leaseTtlMs,
      liveStats: async (agent) => readGatewayStats(await stats, agent, Math.max(5_000, config.gateway.statsIntervalMs * 20)),
      statsIntervalMs: config.gateway.statsIntervalMs,
      probeUrl: (url) => httpProbe(url, config.promoter.probeTimeoutMs)(),
      analysis: config.promoter.analysis,
      liveEnv: (agent, version) => liveEnv(config, agent, version),
      stateDir: (agent) => live(agent).stateDir,
      bake: config.promoter,
      autoApprove: config.promoter.autoApprove,
      approvalRules: config.promoter.approval.rules,
      diffText: async (ref) => (await blob.get(ref.sha256)).toString("utf8"),
      rollbackOnRecurrenceMs: config.promoter.rollbackOnRecurrenceMs,
      publish: bus.publish,
      log,
    };
    const consumer = await bus.consume(Consumers.promoter, [
      route(Messages.replayCompleted, (m) => onReplayCompleted(m, deps)),
      route(Messages.candidateFailed, (m) => onCandidateFailed(m, deps)),
      route(Messages.approval, (m) => onApproval(m, deps)),
      route(Messages.rollback, (m) => onRollbackRequest(m, deps)),
      route(Messages.regression, (m) => onRegression(m, deps)),
    ]);
    return { consumers: [consumer] };
  },
});
