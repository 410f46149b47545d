import { BatchNotFoundError, BatchTransitionError, kvGet, kvUpdate, transitionBatch, type KV } from "@moss/bus";
import { BatchRecord, Buckets, Deployment, PromotionOutcome, type BatchState } from "@moss/contracts";
import { Codes, MossError } from "@moss/errors";
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

/** Where a promotion ends. Its outcome is published before the batch moves there, so a batch found there needs nothing. */
export const PROMOTION_ENDS: readonly BatchState[] = ["promoted", "rolled-back"];

/**
 * The promotion's decision, journaled on the batch record (in `reason`, while the batch is `promoting`) before
 * anything acts on it: a delivery that resumes after a crash finishes that decision — the same outcome, no second
 * bake that could decide otherwise, no second swap, no second rollback. The record has no field for it and its
 * schema is shared, so it rides at the end of `reason` until the final transition replaces it.
 */
interface Decision {
  /** The outcome to publish; for a rollback, `reason` is why, and what the rollback restored is prefixed to it. */
  outcome: PromotionOutcome;
  /** The live container after the swap, and the kept previous one, for the deployment record. */
  container: string;
  previousContainer?: string;
}

const JOURNAL = "\n[moss:decision] ";

function writeJournal(d: Decision): string {
  const verb = d.outcome.outcome === "promoted" ? "promoting" : "rolling back";
  return `${verb}: ${d.outcome.reason}${JOURNAL}${JSON.stringify(d)}`;
}

function readJournal(reason: string | undefined): Decision | undefined {
  const i = reason?.lastIndexOf(JOURNAL) ?? -1;
  if (i < 0) return undefined;
  try {
    const d = JSON.parse(reason!.slice(i + JOURNAL.length)) as Partial<Decision>;
    const outcome = PromotionOutcome.safeParse(d.outcome);
    if (!outcome.success || typeof d.container !== "string") return undefined;
    return { outcome: outcome.data, container: d.container, previousContainer: typeof d.previousContainer === "string" ? d.previousContainer : undefined };
  } catch {
    return undefined;
  }
}

const APPROVED = /^approved by (.*)$/s;

/**
 * Moves the batch to `promoting` (from `awaiting-approval`), leaving a batch already there as it is: its reason
 * holds who approved it and maybe the journaled decision, which a resumed delivery must not overwrite.
 */
async function enterPromoting(kv: KV, batchId: string, approvedBy: string): Promise<{ record: BatchRecord; resumed: boolean }> {
  let resumed = false;
  const res = await kvUpdate(
    kv,
    batchId,
    BatchRecord,
    (cur) => {
      if (!cur) throw new BatchNotFoundError(batchId);
      resumed = cur.state === "promoting";
      if (resumed || PROMOTION_ENDS.includes(cur.state)) return undefined;
      if (cur.state !== "awaiting-approval") throw new BatchTransitionError(batchId, cur.state, "promoting");
      if (!cur.candidate) throw new MossError(Codes.NO_CANDIDATE, `batch ${batchId} has no candidate that passed replay`);
      return { ...cur, state: "promoting" as const, reason: `approved by ${approvedBy}`, updatedAt: new Date().toISOString() };
    },
    Buckets.batches,
  );
  return { record: res!.value, resumed };
}

/**
 * Swaps the live agent for the batch's candidate, watches it for the bake window, and rolls back on trouble.
 * Only a batch in `awaiting-approval` (or `promoting`, when a crash interrupted an earlier delivery) with a
 * candidate that passed replay gets here.
 *
 * Crash-safe in every step: the decision is journaled before it is acted on, the outcome is published (idempotent by
 * msgId) before the final transition, and a resumed delivery neither swaps again (the live image is already the
 * candidate) nor rolls back twice (the live image is no longer the candidate).
 */
export async function promote(batch: BatchRecord, approvedBy: string, deps: PromoteDeps): Promise<void> {
  const { record, resumed } = await enterPromoting(deps.batches, batch.batchId, approvedBy);
  // Another delivery got there first; it published the outcome before the final transition.
  if (PROMOTION_ENDS.includes(record.state)) return;
  const c = record.candidate;
  if (!c) throw new MossError(Codes.NO_CANDIDATE, `batch ${batch.batchId} has no candidate that passed replay`);
  const log = deps.log.child({ batch: batch.batchId, image: c.image });

  const journaled = resumed ? readJournal(record.reason) : undefined;
  if (journaled) {
    log.info("resuming a promotion whose decision was taken", { outcome: journaled.outcome.outcome });
    return finish(record, journaled, true, deps);
  }
  // Who approved is the first approval's, also when a later delivery resumes it.
  const by = resumed ? (APPROVED.exec(record.reason ?? "")?.[1] ?? approvedBy) : approvedBy;

  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  // A crash after the swap must not swap again: that would replace the kept previous version with the candidate.
  const live = resumed ? await deps.runtime.liveStatus(batch.agent) : undefined;
  let swap: { container: string; previous?: { container?: string; image: string } };
  if (live?.image === c.image) {
    // The swap's answer is lost; the deployment record still names the version it replaced.
    const dep = (await kvGet(deps.deployments, batch.agent, Deployment))?.value;
    swap = { container: live.container, previous: dep && dep.batchId !== batch.batchId && dep.image !== c.image ? { image: dep.image } : undefined };
  } else {
    swap = await deps.runtime.deployLive({ agent: batch.agent, image: c.image, version: c.commit, env: { ...deps.liveEnv(batch.agent), MOSS_AGENT_VERSION: c.commit }, stateDir: deps.stateDir(batch.agent) });
  }
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

  const decision: Decision = {
    outcome: {
      batchId: batch.batchId,
      agent: batch.agent,
      attempt: c.attempt,
      commit: c.commit,
      image: c.image,
      previousImage: swap.previous?.image,
      outcome: failed >= deps.bake.maxFailedProbes ? "rolled-back" : "promoted",
      reason,
      probes: { ok, failed },
      approvedBy: by,
    },
    container: swap.container,
    previousContainer: swap.previous?.container,
  };
  const { record: decided } = await transitionBatch(deps.batches, batch.batchId, "promoting", { reason: writeJournal(decision) });
  return finish(decided, decision, false, deps);
}

/** Acts on a journaled decision, then publishes the outcome, then moves the batch to its end. Each step is repeatable. */
async function finish(batch: BatchRecord, d: Decision, resumed: boolean, deps: PromoteDeps): Promise<void> {
  const c = batch.candidate!;
  const log = deps.log.child({ batch: batch.batchId, image: c.image });
  if (d.outcome.outcome === "rolled-back") {
    log.warn("rolling back", { reason: d.outcome.reason });
    const restored = await rollBack(batch.agent, c.image, resumed, deps);
    const reason = `${restored}: ${d.outcome.reason}`;
    await deps.publishOutcome({ ...d.outcome, reason });
    await transitionBatch(deps.batches, batch.batchId, "rolled-back", { reason });
    return;
  }
  const now = new Date().toISOString();
  await kvUpdate(
    deps.deployments,
    batch.agent,
    Deployment,
    (cur) => {
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
      };
    },
    Buckets.deployments,
  );
  await deps.publishOutcome(d.outcome);
  await transitionBatch(deps.batches, batch.batchId, "promoted", { reason: d.outcome.reason });
  log.info("promoted", { reason: d.outcome.reason });
}

/**
 * Puts the previous version back, once. A resumed delivery first asks what is live: if it is no longer the
 * candidate, the rollback happened before the crash, and doing it again would fail (nothing kept) or worse.
 */
async function rollBack(agent: string, candidateImage: string, resumed: boolean, deps: PromoteDeps): Promise<string> {
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
