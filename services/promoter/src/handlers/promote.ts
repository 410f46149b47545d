import { kvUpdate, transitionBatch, type KV } from "@moss/bus";
import { Buckets, Deployment, MossError, type BatchRecord, type PromotionOutcome } from "@moss/contracts";
import type { Logger } from "@moss/telemetry";

/** The slice of @moss/runtime the promoter uses. */
export interface LivePort {
  deployLive(spec: { agent: string; image: string; version: string; env: Record<string, string>; stateDir?: string }): Promise<{ container: string; previous?: { container: string; image: string } }>;
  rollbackLive(agent: string): Promise<{ container: string; image: string }>;
  liveStatus(agent: string): Promise<{ container: string; image: string; running: boolean } | undefined>;
}

export interface PromoteDeps {
  batches: KV;
  deployments: KV;
  runtime: LivePort;
  /** One health probe of the live agent: resolves true when healthy. */
  probe: (agent: string) => Promise<boolean>;
  /** Env of the live agent (port, NATS url...), version added here. */
  liveEnv: (agent: string) => Record<string, string>;
  /** The agent's state directory, kept on a volume across versions. */
  stateDir: (agent: string) => string | undefined;
  bake: { bakeMs: number; probeIntervalMs: number; maxFailedProbes: number; startupMs: number };
  publishOutcome: (m: PromotionOutcome) => Promise<void>;
  log: Logger;
  sleep?: (ms: number) => Promise<void>;
}

/**
 * Swaps the live agent for the batch's candidate, watches it for the bake window, and rolls back on trouble.
 * Only a batch in `awaiting-approval` (or `promoting`, when a crash interrupted an earlier delivery) with a
 * candidate that passed replay gets here.
 */
export async function promote(batch: BatchRecord, approvedBy: string, deps: PromoteDeps): Promise<void> {
  const c = batch.candidate;
  if (!c) throw new MossError("MOSS_E_NO_CANDIDATE", `batch ${batch.batchId} has no candidate that passed replay`, false);
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const log = deps.log.child({ batch: batch.batchId, image: c.image });
  const resuming = batch.state === "promoting";
  await transitionBatch(deps.batches, batch.batchId, "promoting", { reason: `approved by ${approvedBy}` });

  // A crash after the swap must not swap again: that would replace the kept previous version with the candidate.
  const live = resuming ? await deps.runtime.liveStatus(batch.agent) : undefined;
  const swap =
    live?.image === c.image
      ? { container: live.container, previous: undefined as { container: string; image: string } | undefined }
      : await deps.runtime.deployLive({ agent: batch.agent, image: c.image, version: c.commit, env: { ...deps.liveEnv(batch.agent), MOSS_AGENT_VERSION: c.commit }, stateDir: deps.stateDir(batch.agent) });
  log.info("swapped live agent", { container: swap.container, previous: swap.previous?.image, resumed: live?.image === c.image });

  // Startup: the first healthy probe must come within startupMs.
  let ok = 0;
  let failed = 0;
  const startEnd = Date.now() + deps.bake.startupMs;
  let up = false;
  while (Date.now() < startEnd) {
    if (await deps.probe(batch.agent)) {
      up = true;
      ok++;
      break;
    }
    await sleep(deps.bake.probeIntervalMs);
  }
  let reason: string;
  if (!up) {
    failed = deps.bake.maxFailedProbes;
    reason = `the new version never answered its health probe within ${deps.bake.startupMs} ms`;
  } else {
    const bakeEnd = Date.now() + deps.bake.bakeMs;
    while (Date.now() < bakeEnd && failed < deps.bake.maxFailedProbes) {
      await sleep(deps.bake.probeIntervalMs);
      if (await deps.probe(batch.agent)) ok++;
      else failed++;
    }
    reason = failed >= deps.bake.maxFailedProbes ? `${failed} failed health probes during the ${deps.bake.bakeMs} ms bake window` : `healthy for the ${deps.bake.bakeMs} ms bake window (${ok} probes)`;
  }

  const outcomeBase = { batchId: batch.batchId, agent: batch.agent, attempt: c.attempt, commit: c.commit, image: c.image, previousImage: swap.previous?.image, probes: { ok, failed }, approvedBy };
  if (failed >= deps.bake.maxFailedProbes) {
    log.warn("rolling back", { reason });
    let restored: string;
    try {
      restored = `rolled back to ${(await deps.runtime.rollbackLive(batch.agent)).image}`;
    } catch (err) {
      if ((err as { code?: string }).code !== "MOSS_E_NO_PREVIOUS_VERSION") throw err;
      restored = "no previous version to roll back to";
    }
    await transitionBatch(deps.batches, batch.batchId, "rolled-back", { reason: `${restored}: ${reason}` });
    await deps.publishOutcome({ ...outcomeBase, outcome: "rolled-back", reason: `${restored}: ${reason}` });
    return;
  }
  const now = new Date().toISOString();
  await kvUpdate(
    deps.deployments,
    batch.agent,
    Deployment,
    (cur) => ({
      agent: batch.agent,
      image: c.image,
      version: c.commit,
      container: swap.container,
      previous: cur ? { image: cur.image, version: cur.version, container: swap.previous?.container ?? cur.container } : undefined,
      batchId: batch.batchId,
      updatedAt: now,
    }),
    Buckets.deployments,
  );
  await transitionBatch(deps.batches, batch.batchId, "promoted", { reason });
  await deps.publishOutcome({ ...outcomeBase, outcome: "promoted", reason });
  log.info("promoted", { reason });
}
