// Rewriter: batch → staged coding agent → guardrails → signed commit → candidate image. Wiring only.
import { batchStore, bisectStore, candidateStore, deploymentStore, reviewStore, timeTravelStore } from "@moss/batch";
import { route } from "@moss/bus";
import { knownAgent } from "@moss/config";
import { Buckets, Consumers, Messages } from "@moss/contracts";
import { runService } from "@moss/lifecycle";
import { createDockerClient, createRuntime, RUNTIME_DEFAULTS } from "@moss/runtime";
import { createAdapter } from "./adapters";
import { rewrite, type RewriterDeps } from "./handlers/rewrite";
import { onBisect, onBisectStepDone } from "./handlers/bisect";
import { onAuditCheckpoint, onNoteEvent } from "./handlers/notes";
import { onReview } from "./handlers/review";
import { onTimeTravel } from "./handlers/versions";
import { AdapterConfigError } from "./errors";
import { exposedByMounts, readableByOthers, sandboxed } from "./sandbox";

await runService({
  name: "rewriter",
  env: process.env,
  async start({ config, log, bus, blob }) {
    const r = config.rewriter;
    // One runtime builds candidates and the versions `moss replay` and `moss bisect` ask for.
    const runtime = createRuntime({ buildTimeoutMs: r.buildTimeoutMs });
    const adapterCfg = r.adapter ?? (r.command ? { preset: "command" as const, command: [...r.command] } : undefined);
    const deps: RewriterDeps = {
      agent: (name) => {
        const a = knownAgent(config, name);
        return { repo: a.entry.repo, stages: a.rewrite.stages, tier: a.rewrite.tier };
      },
      worktreesDir: config.paths.worktrees,
      adapter: adapterCfg ? sandboxed(createAdapter(structuredClone(adapterCfg)), r.sandbox, log) : undefined,
      timeoutMs: r.timeoutMs,
      envAllow: r.envAllow,
      env: process.env,
      guardrails: structuredClone(r.guardrails),
      signing: { key: r.signing.key, allowedSigners: r.signing.allowedSigners },
      blob,
      runtime,
      batches: batchStore(await bus.kv(Buckets.batches)),
      candidates: candidateStore(await bus.kv(Buckets.candidates)),
      publish: bus.publish,
      log,
    };
    // Moss's own secrets and other agents' code: what the sandbox exists to keep from the coding agent.
    const secret = [config.paths.dataDir, r.signing.key, r.signing.allowedSigners, config.paths.natsCredentials, config.source, "/var/run/docker.sock", ...Object.values(config.agents).map((a) => a.repo)].filter(
      (p): p is string => Boolean(p),
    );
    if (r.sandbox.kind === "container") {
      const exposed = exposedByMounts(r.sandbox.mounts, secret);
      if (exposed.length)
        throw new AdapterConfigError(`rewriter.sandbox.mounts would put ${exposed.join(", ")} in front of the coding agent: mount only the tool's own installation (a directory that holds none of Moss's data, keys, config or repositories).`);
      if (adapterCfg && adapterCfg.preset !== "symbolic") {
        const image = await createDockerClient(RUNTIME_DEFAULTS.socketPath).getImage(r.sandbox.image).inspect().catch(() => undefined);
        if (!image) log.warn("the coding agent's sandbox image is not on this Docker engine: every attempt will fail until it is. `npm run setup` builds moss/coding-agent; a tool of your own needs an image FROM it with the tool installed (rewriter.sandbox.image) or its installation mounted (rewriter.sandbox.mounts)", { image: r.sandbox.image });
      }
    } else if (r.sandbox.kind === "user") {
      // The sandbox keeps the coding agent out of what others may not read: say where that is not so.
      const open = secret.filter((p) => readableByOthers(p));
      if (open.length) log.warn("the sandboxed coding agent could read these (other users may read them): make them, or a directory above them, mode 700", { paths: open });
      log.warn("rewriter.sandbox.kind is user: the coding agent's network is open (only a container sandbox limits it to rewriter.sandbox.allow)");
    } else log.warn("rewriter.sandbox.kind is none: the coding agent runs as the rewriter's user and can read the signing key, the NATS credentials and every repository");
    const handle = (m: Parameters<typeof rewrite>[0]) => rewrite(m, deps);
    const consumer = await bus.consume(Consumers.rewriter, [route(Messages.batchReady, handle), route(Messages.batchRetry, handle)]);
    // `moss replay` of a version: found and built on a consumer of its own, so it never waits behind a coding agent.
    const versionDeps = {
      agent: (name: string) => ({ repo: knownAgent(config, name).entry.repo }),
      runtime,
      deployments: deploymentStore(await bus.kv(Buckets.deployments)),
      travels: timeTravelStore(await bus.kv(Buckets.timeTravel)),
      bisects: bisectStore(await bus.kv(Buckets.bisects)),
      publish: bus.publish,
      log,
    };
    const reviewDeps = {
      ...versionDeps,
      agent: (name: string) => {
        const a = knownAgent(config, name).entry;
        return { repo: a.repo, areas: a.review.areas, mainBranch: a.review.mainBranch };
      },
      reviewed: await bus.kv(Buckets.reviewed),
      reviews: reviewStore(await bus.kv(Buckets.reviews)),
      batches: deps.batches,
    };
    const versions = await bus.consume(Consumers.rewriterVersions, [
      route(Messages.timeTravel, (m, ctx) => onTimeTravel(m, versionDeps, ctx)),
      route(Messages.bisect, (m) => onBisect(m, versionDeps)),
      route(Messages.review, (m) => onReview(m, reviewDeps)),
    ]);
    // Reconcile on a schedule where the config asks: one request per agent per period (replicas agree on its id).
    const timers = Object.entries(config.agents)
      .filter(([, a]) => a.review.reconcileEveryMs)
      .map(([agent, a]) =>
        setInterval(() => {
          const every = a.review.reconcileEveryMs!;
          const at = new Date().toISOString();
          const msg = { id: `sched-${agent}-${Math.floor(Date.now() / every)}`, kind: "reconcile" as const, agent, version: "live", by: "schedule", at };
          void (async () => {
            if (await reviewDeps.reviews.create({ ...msg, state: "requested", updatedAt: at })) await onReview(msg, reviewDeps);
          })().catch((err: Error) => log.warn("scheduled reconcile failed", { agent, err: err.message }));
        }, a.review.reconcileEveryMs).unref(),
      );
    const bisects = await bus.consume(Consumers.rewriterBisect, [route(Messages.timeTravelDone, (m) => onBisectStepDone(m, versionDeps))]);
    // The git note on every Moss commit, as its story is published.
    const noteDeps = { agent: versionDeps.agent, log };
    const checkpointDeps = {
      repos: () => Object.entries(config.agents).map(([agent, a]) => ({ agent, repo: a.repo })),
      live: async (agent: string) => (await versionDeps.deployments.get(agent))?.version,
      log,
    };
    const notes = await bus.consume(Consumers.rewriterNotes, [
      route(Messages.candidateReady, (msg) => onNoteEvent({ kind: "candidate", msg }, noteDeps)),
      route(Messages.replayCompleted, (msg) => onNoteEvent({ kind: "replay", msg }, noteDeps)),
      route(Messages.batchVerdict, (msg) => onNoteEvent({ kind: "verdict", msg }, noteDeps)),
      route(Messages.promotion, (msg) => onNoteEvent({ kind: "promotion", msg }, noteDeps)),
      route(Messages.auditCheckpoint, (msg) => onAuditCheckpoint(msg, checkpointDeps)),
    ]);
    return { consumers: [consumer, versions, bisects, notes], onStop: async () => timers.forEach(clearInterval) };
  },
});
