import { BatchNotFoundError, getBatch, kvGet, transitionBatch, type KV } from "@moss/bus";
import { FingerprintBreaker, RejectedCandidate, type Approval, type AttemptEvidence, type BatchRecord, type BatchRetry, type BatchState, type BatchVerdict, type CandidateFailed, type ReplayCompleted } from "@moss/contracts";
import type { Logger } from "@moss/telemetry";
import { PROMOTION_ENDS, promote, type PromoteDeps } from "./promote";

export interface VerdictDeps extends PromoteDeps {
  batches: KV;
  /** Circuit breakers by `<agent>.<fingerprint key>` (the curator counts, the promoter obeys). */
  breakers: KV;
  breakerThreshold: (agent: string) => number;
  /** Rejected candidates (`moss_candidates`). */
  candidates?: KV;
  /**
   * Whether a candidate commit may be promoted: signed, and the signature good for an allowed signer
   * (config `rewriter.signing`). Undefined: no check.
   */
  verifySignature?: (agent: string, commit: string) => Promise<{ ok: boolean; reason: string }>;
  autoApprove: boolean;
  maxAttempts: number;
  publishRetry: (m: BatchRetry) => Promise<void>;
  publishVerdict: (m: BatchVerdict) => Promise<void>;
  log: Logger;
}

/** Ends the promoter decides on its own (promotions end in PROMOTION_ENDS, through promote()). */
const VERDICT_ENDS: readonly BatchState[] = ["exhausted", "needs-human", "rejected"];

/**
 * A replay.completed / candidate.failed of an attempt older than the batch's current one: a late redelivery. Acting
 * on it would drag the batch back to `rewriting` from a later attempt's stage (and strand that attempt's result).
 */
function stale(msg: ReplayCompleted | CandidateFailed, rec: BatchRecord, deps: VerdictDeps): boolean {
  if (msg.attempt >= rec.attempt) return false;
  deps.log.info("ignoring a late message of an earlier attempt", { batch: msg.batchId, attempt: msg.attempt, current: rec.attempt, state: rec.state });
  return true;
}

/**
 * A redelivered attempt result for a batch that already ended: the decision stands; only the message announcing it
 * may be missing (a crash between the final transition and the publish), so it is published again from the record
 * and this message (same content, same msgId: JetStream drops it when it did get out).
 */
async function announceEnd(rec: BatchRecord, msg: ReplayCompleted | CandidateFailed, deps: VerdictDeps): Promise<void> {
  const base = { batchId: msg.batchId, agent: msg.agent, attempt: msg.attempt, commit: msg.commit };
  const reason = rec.reason ?? "";
  if (rec.state === "exhausted") await deps.publishVerdict({ ...base, verdict: "exhausted", reason: reason.startsWith("plateau:") ? reason : exhaustedReason(msg.attempt, reason) });
  else if (rec.state === "needs-human") await deps.publishVerdict({ ...base, verdict: "needs-human", reason });
  // A signature refusal happens on replay.completed: this message is the one redelivered if that publish was lost.
  else if (rec.state === "rejected" && "passed" in msg && msg.passed && rec.candidate?.commit === msg.commit) {
    await deps.publishVerdict({ ...base, image: msg.image, verdict: "rejected", reason });
  }
  // Other rejections: the approval handler announces them (its message is the one redelivered).
  // promoted / rolled-back: the outcome was published before the batch moved there.
}

const exhaustedReason = (attempt: number, last: string) => `gave up after ${attempt} attempt(s); last: ${last}`;

/** Replay done: a pass goes to the consent gate, a failure back to the rewriter (or gives up). */
export async function onReplayCompleted(msg: ReplayCompleted, deps: VerdictDeps): Promise<void> {
  const cur = (await getBatch(deps.batches, msg.batchId))?.value;
  if (cur && stale(msg, cur, deps)) return;
  if (cur?.state === "promoting") {
    // Redelivered after the decision was taken; a promotion a crash interrupted is resumed (or, without the
    // autoApprove policy, by the redelivered approval).
    if (deps.autoApprove) await promote(cur, "policy:autoApprove", deps);
    return;
  }
  if (cur && (PROMOTION_ENDS.includes(cur.state) || VERDICT_ENDS.includes(cur.state))) return announceEnd(cur, msg, deps);
  if (!msg.passed) {
    const failed = msg.results.filter((r) => !r.passed);
    const reason = `${failed.length} of ${msg.results.length} failure(s) still fail in replay: ${failed[0]!.reason}`;
    return iterate(msg, { attempt: msg.attempt, commit: msg.commit, diff: msg.diff, verdict: "replay-failed", reason, results: msg.results }, deps);
  }
  const candidate = { attempt: msg.attempt, commit: msg.commit, image: msg.image, diff: msg.diff };
  // Only a signed commit that verifies against the allowed signers may ever ship.
  const sig = deps.verifySignature ? await deps.verifySignature(msg.agent, msg.commit) : { ok: true, reason: "" };
  if (!sig.ok) {
    const reason = `replay passed, but the commit cannot be promoted: ${sig.reason}`;
    await keepRejected(msg.batchId, { attempt: msg.attempt, commit: msg.commit, diff: msg.diff, verdict: "unsigned", reason }, deps);
    await transitionBatch(deps.batches, msg.batchId, "rejected", { candidate, reason });
    await deps.publishVerdict({ batchId: msg.batchId, agent: msg.agent, attempt: msg.attempt, commit: msg.commit, image: msg.image, verdict: "rejected", reason });
    return;
  }
  const { record } = await transitionBatch(deps.batches, msg.batchId, "awaiting-approval", { candidate, reason: "replay passed" });
  if (deps.autoApprove) {
    deps.log.info("replay passed; promoting under the autoApprove policy", { batch: msg.batchId });
    await promote(record, "policy:autoApprove", deps);
    return;
  }
  await deps.publishVerdict({ batchId: msg.batchId, agent: msg.agent, attempt: msg.attempt, commit: msg.commit, image: msg.image, verdict: "awaiting-approval", reason: `replay passed; run \`moss approve ${msg.batchId}\` to promote` });
}

/** The rewriter produced no candidate: that attempt counts, and the next one gets the reason. */
export async function onCandidateFailed(msg: CandidateFailed, deps: VerdictDeps): Promise<void> {
  const cur = (await getBatch(deps.batches, msg.batchId))?.value;
  if (cur && stale(msg, cur, deps)) return;
  // (A promotion needs a candidate, so for this attempt it cannot have started; it is left alone all the same.)
  if (cur && (cur.state === "promoting" || PROMOTION_ENDS.includes(cur.state) || VERDICT_ENDS.includes(cur.state))) return announceEnd(cur, msg, deps);
  return iterate(msg, { attempt: msg.attempt, commit: msg.commit, diff: msg.diff, verdict: msg.verdict, reason: msg.reason, results: [] }, deps);
}

export async function onApproval(msg: Approval, deps: VerdictDeps): Promise<void> {
  const cur = await getBatch(deps.batches, msg.batchId);
  if (!cur) throw new BatchNotFoundError(msg.batchId);
  if (msg.decision === "reject") {
    // The record keeps the verdict's reason, so a redelivery (the publish may have been lost after the transition)
    // announces the same verdict again, whoever sent this one; its msgId makes the repeat a no-op when it got out.
    const rec = cur.value.state === "rejected" ? cur.value : (await transitionBatch(deps.batches, msg.batchId, "rejected", { reason: `rejected by ${msg.by}${msg.reason ? `: ${msg.reason}` : ""}` })).record;
    await deps.publishVerdict({ batchId: msg.batchId, agent: rec.agent, attempt: rec.attempt, commit: rec.candidate?.commit, image: rec.candidate?.image, verdict: "rejected", reason: rec.reason ?? `rejected by ${msg.by}` });
    return;
  }
  // Approving twice, or a redelivered approval of a batch already promoted, changes nothing.
  if (cur.value.state !== "awaiting-approval" && cur.value.state !== "promoting") {
    deps.log.warn("approval ignored", { batch: msg.batchId, state: cur.value.state });
    return;
  }
  await promote(cur.value, msg.by, deps);
}

async function iterate(msg: ReplayCompleted | CandidateFailed, evidence: AttemptEvidence, deps: VerdictDeps): Promise<void> {
  const previous = [...msg.previous.filter((p) => p.attempt !== msg.attempt), evidence];
  await keepRejected(msg.batchId, { attempt: msg.attempt, commit: evidence.commit, diff: evidence.diff, verdict: evidence.verdict, reason: evidence.reason }, deps);
  const plateau = plateauOf(msg, evidence);
  if (plateau) {
    await transitionBatch(deps.batches, msg.batchId, "exhausted", { reason: plateau });
    await deps.publishVerdict({ batchId: msg.batchId, agent: msg.agent, attempt: msg.attempt, commit: evidence.commit, verdict: "exhausted", reason: plateau });
    return;
  }
  const mark = `${msg.batchId}:${msg.attempt}:${"passed" in msg ? "replay" : "candidate"}`;
  // The final transitions come before their announcement, which a redelivery repeats from the record (announceEnd).
  if (await breakerOpen(msg.batchId, mark, deps)) {
    const reason = `fingerprint ${msg.fingerprint} needs a human: its circuit breaker opened after repeated rejected candidates; last: ${evidence.reason}`;
    await transitionBatch(deps.batches, msg.batchId, "needs-human", { reason });
    await deps.publishVerdict({ batchId: msg.batchId, agent: msg.agent, attempt: msg.attempt, commit: evidence.commit, verdict: "needs-human", reason });
    return;
  }
  if (msg.attempt >= deps.maxAttempts) {
    await transitionBatch(deps.batches, msg.batchId, "exhausted", { reason: evidence.reason });
    await deps.publishVerdict({ batchId: msg.batchId, agent: msg.agent, attempt: msg.attempt, commit: evidence.commit, verdict: "exhausted", reason: exhaustedReason(msg.attempt, evidence.reason) });
    return;
  }
  await transitionBatch(deps.batches, msg.batchId, "rewriting", { reason: evidence.reason });
  deps.log.info("sending batch back to the rewriter", { batch: msg.batchId, next: msg.attempt + 1, why: evidence.reason });
  await deps.publishRetry({
    batchId: msg.batchId,
    agent: msg.agent,
    fingerprint: msg.fingerprint,
    baseVersion: msg.baseVersion,
    failures: msg.failures,
    count: msg.count,
    attempt: msg.attempt + 1,
    previous,
  });
}

/**
 * No further rewrite starts for a fingerprint whose breaker is open. The curator counts rejections from the same
 * outcome messages the promoter is handling, maybe a moment later: this one is counted here if it is not yet.
 */
async function breakerOpen(batchId: string, mark: string, deps: VerdictDeps): Promise<boolean> {
  const rec = await getBatch(deps.batches, batchId);
  if (!rec?.value.fingerprintKey) return false;
  const b = (await kvGet(deps.breakers, `${rec.value.agent}.${rec.value.fingerprintKey}`, FingerprintBreaker))?.value;
  if (b?.needsHuman) return true;
  const consecutive = (b?.consecutiveRejections ?? 0) + (b?.counted.includes(mark) ? 0 : 1);
  return consecutive >= deps.breakerThreshold(rec.value.agent);
}

/**
 * Plateau guard: an attempt whose replay fixes no more failures than the attempt before it (the last one that got
 * as far as replay) ends the batch; iterating further would only spend more on the same place.
 */
export function plateauOf(msg: ReplayCompleted | CandidateFailed, evidence: AttemptEvidence): string | undefined {
  if (!evidence.results.length) return undefined;
  const before = [...msg.previous].filter((p) => p.attempt < msg.attempt && p.results.length > 0).sort((a, b) => b.attempt - a.attempt)[0];
  if (!before) return undefined;
  const fixed = (r: AttemptEvidence["results"]) => r.filter((x) => x.passed).length;
  const now = fixed(evidence.results);
  const then = fixed(before.results);
  if (now > then) return undefined;
  return `plateau: attempt ${msg.attempt} fixed ${now} of ${evidence.results.length} failure(s), no better than attempt ${before.attempt} (${then}); stopping`;
}

/** Keeps a candidate that was not promoted (its branch stays in the agent repo) where later batches can learn from it. */
export async function keepRejected(batchId: string, c: { attempt: number; commit?: string; diff?: RejectedCandidate["diff"]; verdict: string; reason: string }, deps: VerdictDeps): Promise<void> {
  if (!deps.candidates) return;
  const rec = (await getBatch(deps.batches, batchId))?.value;
  if (!rec?.fingerprintKey) return;
  const entry: RejectedCandidate = {
    agent: rec.agent,
    fingerprint: rec.fingerprint,
    batchId,
    attempt: c.attempt,
    commit: c.commit,
    branch: c.commit ? `moss/${batchId}/${c.attempt}` : undefined,
    diff: c.diff,
    verdict: c.verdict,
    reason: c.reason.slice(0, 4_000),
    at: new Date().toISOString(),
  };
  await deps.candidates.put(`${rec.agent}.${rec.fingerprintKey}.${batchId}.${c.attempt}`, JSON.stringify(RejectedCandidate.parse(entry)));
}
