/**
 * The promotion procedure: swap the live agent for the batch's candidate, watch it for the bake window, and roll back
 * on trouble. Crash-safe in every step: the decision is journaled on the batch record (`promotion.decision`) before it
 * is acted on, the outcome is published (idempotent by msgId) before the final transition, and a resumed delivery
 * neither swaps again (the live image is already the candidate) nor rolls back twice (the live image is no longer the
 * candidate).
 */
import { NoCandidateError, Transitions, withLastGood } from "@moss/batch";
import { Messages, type BatchRecord, type BatchState, type PromotionJournal } from "@moss/contracts";
import { Codes } from "@moss/errors";
import type { PromotionDeps } from "../deps";
import { rejectedDuringBake, retirePrevious, rollBackViaGateway, swapAndBakeViaGateway } from "./gateway";

type Decision = NonNullable<PromotionJournal["decision"]>;

/** Where a promotion ends (the state machine's edges out of `promoting`). Its outcome is published before the batch moves there. */
export const PROMOTION_ENDS: readonly BatchState[] = Transitions.promoting;

/**
 * Moves the batch to `promoting` (from `awaiting-approval`) with who approved it, leaving a batch already there as it
 * is: its journal holds the first approver and maybe the decision, which a resumed delivery must not overwrite.
 */
async function enterPromoting(deps: PromotionDeps, batchId: string, approvedBy: string): Promise<{ record: BatchRecord; resumed: boolean }> {
  let resumed = false;
  const { record } = await deps.batches.change(batchId, (cur) => {
    resumed = cur.state === "promoting";
    if (resumed || PROMOTION_ENDS.includes(cur.state)) return undefined;
    if (!cur.candidate) throw new NoCandidateError(batchId);
    // Any state but awaiting-approval is refused by the state machine.
    return { ...cur, state: "promoting", reason: `approved by ${approvedBy}`, promotion: { approvedBy } };
  });
  return { record, resumed };
}

/**
 * Swaps the live agent for the batch's candidate, watches it for the bake window, and rolls back on trouble. Only a
 * batch in `awaiting-approval` (or `promoting`, when a crash interrupted an earlier delivery) with a candidate that
 * passed replay gets here.
 */
export async function promote(batch: BatchRecord, approvedBy: string, deps: PromotionDeps): Promise<void> {
  // One promoter acts on an agent at a time: a second batch of the agent (or a replica given a redelivery while the
  // first still bakes) waits for the lease; a promoter that died mid-bake is taken over once its lease ran out.
  const held = deps.leases ? await deps.leases.acquire(`promoter.${batch.agent}`, `batch ${batch.batchId}`, deps.leaseTtlMs ?? 10_000) : undefined;
  try {
    await promoteHeld(batch, approvedBy, held ? { ...deps, held } : deps);
  } finally {
    await held?.release();
  }
}

async function promoteHeld(batch: BatchRecord, approvedBy: string, deps: PromotionDeps): Promise<void> {
  const { record, resumed } = await enterPromoting(deps, batch.batchId, approvedBy);
  // Another delivery got there first; it published the outcome before the final transition.
  if (PROMOTION_ENDS.includes(record.state)) return;
  const c = record.candidate;
  if (!c) throw new NoCandidateError(batch.batchId);
  const log = deps.log.child({ batch: batch.batchId, image: c.image });

  const journaled = resumed ? record.promotion?.decision : undefined;
  if (journaled) {
    log.info("resuming a promotion whose decision was taken", { outcome: journaled.outcome.outcome });
    return finish(record, journaled, true, deps);
  }
  // Who approved is the first approval's, also when a later delivery resumes it.
  const by = record.promotion?.approvedBy ?? approvedBy;

  if (deps.serve(batch.agent).mode === "gateway") {
    const d = await swapAndBakeViaGateway(record, by, deps, log);
    if ("refused" in d) return refuse(record, d.refused, deps);
    return decide(batch, d, by, deps);
  }
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  // A crash after the swap must not swap again: that would replace the kept previous version with the candidate.
  const live = resumed ? await deps.runtime.liveStatus(batch.agent) : undefined;
  let swap: { container: string; previous?: { container?: string; image: string } };
  if (live?.image === c.image) {
    // The swap's answer is lost; the deployment record still names the version it replaced.
    const dep = await deps.deployments.get(batch.agent);
    swap = { container: live.container, previous: dep && dep.batchId !== batch.batchId && dep.image !== c.image ? { image: dep.image } : undefined };
  } else {
    // The last check before anything changes: the signatures again, and (in the runtime) that the image is the one built
    // from this commit. A candidate that fails it is rejected, and nothing is deployed.
    const sig = deps.verifySignature ? await deps.verifySignature(batch.agent, c.commit, record.baseVersion) : { ok: true, reason: "" };
    if (!sig.ok) return refuse(record, `the commit cannot be promoted: ${sig.reason}`, deps);
    try {
      swap = await deps.runtime.deployLive({
        agent: batch.agent,
        image: c.image,
        ...(c.imageId ? { imageId: c.imageId } : {}),
        version: c.commit,
        env: deps.liveEnv(batch.agent, c.commit),
        stateDir: deps.stateDir(batch.agent),
      });
    } catch (err) {
      if ((err as { code?: string }).code === Codes.IMAGE_MISMATCH.code) return refuse(record, (err as Error).message, deps);
      throw err;
    }
  }
  log.info("swapped live agent", { container: swap.container, previous: swap.previous?.image, resumed: live?.image === c.image });

  // Startup: the first healthy probe must come within startupMs.
  let ok = 0;
  let failed = 0;
  const startEnd = Date.now() + deps.bake.startupMs;
  let up = false;
  let last = "";
  const probe = async () => {
    const r = await deps.probe(batch.agent);
    if (!r.healthy) last = r.detail;
    return r.healthy;
  };
  while (Date.now() < startEnd) {
    if (await probe()) {
      up = true;
      ok++;
      break;
    }
    await sleep(deps.bake.probeIntervalMs);
  }
  let reason: string;
  let rejected: string | undefined;
  if (!up) {
    failed = deps.bake.maxFailedProbes;
    reason = `the new version never answered its health probe within ${deps.bake.startupMs} ms (last: ${last || "no probe ran"})`;
  } else {
    const bakeEnd = Date.now() + deps.bake.bakeMs;
    while (Date.now() < bakeEnd && failed < deps.bake.maxFailedProbes) {
      await sleep(deps.bake.probeIntervalMs);
      // An operator rejected the batch while it baked: no more watching, it goes back.
      const r = (await deps.batches.get(batch.batchId))?.promotion?.rejected;
      if (r) {
        rejected = rejectedDuringBake(r);
        break;
      }
      if (await probe()) ok++;
      else failed++;
    }
    reason = rejected ?? (failed >= deps.bake.maxFailedProbes ? `${failed} failed health probes during the ${deps.bake.bakeMs} ms bake window (last: ${last})` : `healthy for the ${deps.bake.bakeMs} ms bake window (${ok} probes)`);
  }

  const decision: Decision = {
    outcome: {
      batchId: batch.batchId,
      agent: batch.agent,
      attempt: c.attempt,
      commit: c.commit,
      image: c.image,
      previousImage: swap.previous?.image,
      outcome: rejected || failed >= deps.bake.maxFailedProbes ? "rolled-back" : "promoted",
      reason,
      probes: { ok, failed },
      approvedBy: by,
    },
    container: swap.container,
    previousContainer: swap.previous?.container,
  };
  return decide(batch, decision, by, deps);
}

/** Journals the decision on the batch record before anything acts on it, then acts on it. */
async function decide(batch: BatchRecord, decision: Decision, by: string, deps: PromotionDeps): Promise<void> {
  deps.held?.check();
  const verb = decision.outcome.outcome === "promoted" ? "promoting" : "rolling back";
  // The journal keeps what the bake wrote on it (a recurrence, the state saved at the swap).
  const { record: decided } = await deps.batches.change(batch.batchId, (cur) => ({ ...cur, state: "promoting", reason: `${verb}: ${decision.outcome.reason}`, promotion: { ...cur.promotion, approvedBy: by, decision } }));
  return finish(decided, decision, false, deps);
}

/** A candidate that failed its last check before the swap: rejected (counted against its fingerprint), nothing deployed. */
async function refuse(batch: BatchRecord, why: string, deps: PromotionDeps): Promise<void> {
  const c = batch.candidate!;
  deps.log.warn("refusing to deploy the candidate", { batch: batch.batchId, reason: why });
  if (batch.fingerprintKey) {
    const threshold = deps.agent(batch.agent).curation.breakerThreshold;
    await deps.breakers.count({ agent: batch.agent, fingerprint: batch.fingerprint, fingerprintKey: batch.fingerprintKey, batchId: batch.batchId, attempt: c.attempt, kind: "verdict", rejected: true }, threshold);
  }
  const reason = `not deployed: ${why}`;
  await deps.batches.transition(batch.batchId, "rejected", { reason });
  await deps.publish(Messages.batchVerdict, { batchId: batch.batchId, agent: batch.agent, attempt: c.attempt, commit: c.commit, image: c.image, verdict: "rejected", reason });
}

/**
 * Acts on a journaled decision, counts its outcome into the fingerprint's breaker, publishes the outcome, then moves
 * the batch to its end. Each step is repeatable.
 */
async function finish(batch: BatchRecord, d: Decision, resumed: boolean, deps: PromotionDeps): Promise<void> {
  const c = batch.candidate!;
  const log = deps.log.child({ batch: batch.batchId, image: c.image });
  const count = async (rejected: boolean) => {
    if (!batch.fingerprintKey) return; // a record from a curator that kept no fingerprint key
    const threshold = deps.agent(batch.agent).curation.breakerThreshold;
    await deps.breakers.count({ agent: batch.agent, fingerprint: batch.fingerprint, fingerprintKey: batch.fingerprintKey, batchId: batch.batchId, attempt: c.attempt, kind: "promotion", rejected }, threshold);
  };
  if (d.outcome.outcome === "rolled-back") {
    log.warn("rolling back", { reason: d.outcome.reason });
    const restored = deps.serve(batch.agent).mode === "gateway" ? await rollBackViaGateway(batch, d, deps) : await rollBack(batch.agent, c.image, resumed, deps);
    const reason = `${restored}: ${d.outcome.reason}`;
    await count(true);
    await deps.publish(Messages.promotion, { ...d.outcome, reason });
    await deps.batches.transition(batch.batchId, "rolled-back", { reason });
    return;
  }
  const now = new Date().toISOString();
  await deps.deployments.record(batch.agent, (cur) => {
    // Written by an earlier delivery of this promotion: its `previous` is the version this one replaced.
    if (cur?.batchId === batch.batchId && cur.image === c.image) return undefined;
    return {
      agent: batch.agent,
      image: c.image,
      version: c.commit,
      container: d.container,
      previous: cur ? { image: cur.image, version: cur.version, container: d.previousContainer ?? cur.container } : undefined,
      batchId: batch.batchId,
      updatedAt: now,
      // It baked well: the newest last-known-good version.
      lastGood: withLastGood(cur?.lastGood, { version: c.commit, image: c.image, container: d.container, at: now, batchId: batch.batchId }, deps.bake.keepVersions),
    };
  });
  if (deps.serve(batch.agent).mode === "gateway") await retirePrevious(batch, d, deps);
  await count(false);
  await deps.publish(Messages.promotion, d.outcome);
  await deps.batches.transition(batch.batchId, "promoted", { reason: d.outcome.reason });
  log.info("promoted", { reason: d.outcome.reason });
}

/**
 * Puts the previous version back, once. A resumed delivery first asks what is live: if it is no longer the
 * candidate, the rollback happened before the crash, and doing it again would fail (nothing kept) or worse.
 */
async function rollBack(agent: string, candidateImage: string, resumed: boolean, deps: PromotionDeps): Promise<string> {
  if (resumed) {
    const live = await deps.runtime.liveStatus(agent);
    if (live && live.image !== candidateImage) return `rolled back to ${live.image}`;
  }
  try {
    return `rolled back to ${(await deps.runtime.rollbackLive(agent)).image}`;
  } catch (err) {
    if ((err as { code?: string }).code !== Codes.NO_PREVIOUS_VERSION.code) throw err;
    return "no previous version to roll back to";
  }
}
