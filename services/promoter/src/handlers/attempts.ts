/**
 * The judge of every attempt. The promoter is the one service that sees every outcome of an attempt — its replay
 * (replay.completed), the lack of a candidate (candidate.failed), an operator's decision, the promotion's bake — so it
 * alone decides what comes next: the consent gate, another attempt (batch.retry back to the rewriter, with the
 * evidence), or the end (plateau, exhausted, needs-human), and it alone counts outcomes into the fingerprint's circuit
 * breaker, in the same step as the decision that depends on the count.
 */
import { branchName, isFinal } from "@moss/batch";
import { Messages, regressed, replayVerdict, type AttemptEvidence, type BatchRecord, type CandidateFailed, type ReplayCompleted } from "@moss/contracts";
import type { PromoterDeps } from "../deps";
import { decideConsent, patchFacts } from "../policy/consent";
import { promote } from "../promotion/promote";

type AttemptResult = ReplayCompleted | CandidateFailed;

/**
 * A replay.completed / candidate.failed of an attempt older than the batch's current one: a late redelivery. Acting
 * on it would drag the batch back to `rewriting` from a later attempt's stage (and strand that attempt's result).
 */
function stale(msg: AttemptResult, rec: BatchRecord, deps: PromoterDeps): boolean {
  if (msg.attempt >= rec.attempt) return false;
  deps.log.info("ignoring a late message of an earlier attempt", { batch: msg.batchId, attempt: msg.attempt, current: rec.attempt, state: rec.state });
  return true;
}

/** Whether the batch's attempts were judged for good: it ended, or it waits for a human. */
const judged = (rec: BatchRecord) => isFinal(rec.state) || rec.state === "needs-human";

/**
 * A redelivered attempt result for a batch that was judged already: the decision stands; only the message announcing it
 * may be missing (a crash between the final transition and the publish), so it is published again from the record
 * and this message (same content, same msgId: JetStream drops it when it did get out).
 */
async function announceEnd(rec: BatchRecord, msg: AttemptResult, deps: PromoterDeps): Promise<void> {
  const base = { batchId: msg.batchId, agent: msg.agent, attempt: msg.attempt, commit: msg.commit };
  const reason = rec.reason ?? "";
  if (rec.state === "exhausted") await deps.publish(Messages.batchVerdict, { ...base, verdict: "exhausted", reason: reason.startsWith("plateau:") ? reason : exhaustedReason(msg.attempt, reason) });
  else if (rec.state === "needs-human") await deps.publish(Messages.batchVerdict, { ...base, verdict: "needs-human", reason });
  // A signature refusal happens on replay.completed: this message is the one redelivered if that publish was lost.
  else if (rec.state === "rejected" && "passed" in msg && msg.passed && rec.candidate?.commit === msg.commit) {
    await deps.publish(Messages.batchVerdict, { ...base, image: msg.image, verdict: "rejected", reason });
  }
  // Other rejections: the approval handler announces them (its message is the one redelivered).
  // promoted / rolled-back: the outcome was published before the batch moved there.
}

const exhaustedReason = (attempt: number, last: string) => `gave up after ${attempt} attempt(s); last: ${last}`;

/** Counts one rejected candidate of this attempt into its fingerprint's breaker; resolves whether the breaker is now open. */
async function countRejection(msg: AttemptResult, kind: "replay" | "candidate" | "verdict", deps: PromoterDeps): Promise<boolean> {
  const threshold = deps.agent(msg.agent).curation.breakerThreshold;
  const b = await deps.breakers.count({ agent: msg.agent, fingerprint: msg.fingerprint, fingerprintKey: msg.fingerprintKey, batchId: msg.batchId, attempt: msg.attempt, kind, rejected: true }, threshold);
  if (b.needsHuman && b.consecutiveRejections === threshold) deps.log.warn("fingerprint needs a human: breaker open", { agent: msg.agent, fingerprint: msg.fingerprint, consecutive: b.consecutiveRejections });
  return b.needsHuman;
}

/** Replay done: a pass goes to the consent gate, a failure back to the rewriter (or gives up). */
export async function onReplayCompleted(msg: ReplayCompleted, deps: PromoterDeps): Promise<void> {
  const cur = await deps.batches.get(msg.batchId);
  if (cur && stale(msg, cur, deps)) return;
  if (cur?.state === "promoting") {
    // Redelivered after the decision was taken; a promotion a crash interrupted is resumed (or, without the
    // autoApprove policy, by the redelivered approval).
    const by = cur.promotion?.approvedBy;
    if (deps.autoApprove || by?.startsWith("policy:")) await promote(cur, by ?? "policy:autoApprove", deps);
    return;
  }
  if (cur && judged(cur)) return announceEnd(cur, msg, deps);
  // A replay counts only for what the rewriter built for this attempt (its record says what): a message may trigger
  // a decision, never supply what is deployed.
  const built = cur?.built;
  if (!built || built.attempt !== msg.attempt || built.commit !== msg.commit || built.image !== msg.image) {
    deps.log.warn("ignoring a replay.completed that does not match what the rewriter built for this attempt", {
      batch: msg.batchId, attempt: msg.attempt, commit: msg.commit, image: msg.image, built: built && { attempt: built.attempt, commit: built.commit, image: built.image },
    });
    return;
  }
  if (!msg.passed) {
    const { verdict, reason } = replayVerdict(msg);
    return iterate(msg, { attempt: msg.attempt, commit: msg.commit, diff: msg.diff, verdict, reason, results: msg.results, regressions: msg.regressions }, deps);
  }
  const candidate = { attempt: built.attempt, commit: built.commit, image: built.image, imageId: built.imageId, diff: built.diff };
  // Only signed commits that verify against the allowed signers may ever ship: every one from the base to the candidate.
  const sig = deps.verifySignature ? await deps.verifySignature(msg.agent, built.commit, cur!.baseVersion) : { ok: true, reason: "" };
  if (!sig.ok) {
    const reason = `replay passed, but the commit cannot be promoted: ${sig.reason}`;
    await keepRejected(msg, { attempt: msg.attempt, commit: msg.commit, diff: msg.diff, verdict: "unsigned", reason }, deps);
    await countRejection(msg, "verdict", deps);
    await deps.batches.transition(msg.batchId, "rejected", { candidate, reason });
    await deps.publish(Messages.batchVerdict, { batchId: msg.batchId, agent: msg.agent, attempt: msg.attempt, commit: msg.commit, image: msg.image, verdict: "rejected", reason });
    return;
  }
  const { record } = await deps.batches.transition(msg.batchId, "awaiting-approval", { candidate, reason: "replay passed" });
  const consent = await consentFor(msg, deps);
  if ("approvedBy" in consent) {
    deps.log.info("replay passed; promoting under an approval policy", { batch: msg.batchId, policy: consent.approvedBy });
    await promote(record, consent.approvedBy, deps);
    return;
  }
  await deps.publish(Messages.batchVerdict, { batchId: msg.batchId, agent: msg.agent, attempt: msg.attempt, commit: msg.commit, image: msg.image, verdict: "awaiting-approval", reason: `replay passed; ${consent.waiting}: run \`moss approve ${msg.batchId}\` to promote` });
}

/** Whether a policy approves this candidate (autoApprove, or the first rule of promoter.approval.rules that holds). */
async function consentFor(msg: ReplayCompleted, deps: PromoterDeps): Promise<{ approvedBy: string } | { waiting: string }> {
  if (deps.autoApprove) return { approvedBy: "policy:autoApprove" };
  const rules = deps.approvalRules ?? [];
  if (!rules.length || !deps.diffText) return { waiting: "no approval rule is configured (promoter.approval.rules)" };
  const facts = { ...patchFacts(await deps.diffText(msg.diff)), failuresFixed: msg.results.filter((r) => r.passed).length, regressionsReplayed: (msg.regressions ?? []).length };
  return decideConsent(rules, facts);
}

/** The rewriter produced no candidate: that attempt counts, and the next one gets the reason. */
export async function onCandidateFailed(msg: CandidateFailed, deps: PromoterDeps): Promise<void> {
  const cur = await deps.batches.get(msg.batchId);
  if (cur && stale(msg, cur, deps)) return;
  // (A promotion needs a candidate, so for this attempt it cannot have started; it is left alone all the same.)
  if (cur && (cur.state === "promoting" || judged(cur))) return announceEnd(cur, msg, deps);
  return iterate(msg, { attempt: msg.attempt, commit: msg.commit, diff: msg.diff, verdict: msg.verdict, reason: msg.reason, results: [] }, deps);
}

/**
 * An attempt that did not produce a promotable candidate: kept for later batches, counted into the breaker, then
 * judged: plateau, breaker open, out of attempts, or another attempt.
 */
async function iterate(msg: AttemptResult, evidence: AttemptEvidence, deps: PromoterDeps): Promise<void> {
  const previous = [...msg.previous.filter((p) => p.attempt !== msg.attempt), evidence];
  await keepRejected(msg, evidence, deps);
  // Counted before any decision, as each decision's final transition comes before its announcement, which a
  // redelivery repeats from the record (announceEnd); counting twice is a no-op.
  const breakerOpen = await countRejection(msg, "passed" in msg ? "replay" : "candidate", deps);
  const plateau = plateauOf(msg, evidence);
  if (plateau) {
    await deps.batches.transition(msg.batchId, "exhausted", { reason: plateau });
    await deps.publish(Messages.batchVerdict, { batchId: msg.batchId, agent: msg.agent, attempt: msg.attempt, commit: evidence.commit, verdict: "exhausted", reason: plateau });
    return;
  }
  if (breakerOpen) {
    const reason = `fingerprint ${msg.fingerprint} needs a human: its circuit breaker opened after repeated rejected candidates; last: ${evidence.reason}`;
    await deps.batches.transition(msg.batchId, "needs-human", { reason });
    await deps.publish(Messages.batchVerdict, { batchId: msg.batchId, agent: msg.agent, attempt: msg.attempt, commit: evidence.commit, verdict: "needs-human", reason });
    return;
  }
  if (msg.attempt >= deps.agent(msg.agent).maxAttempts) {
    await deps.batches.transition(msg.batchId, "exhausted", { reason: evidence.reason });
    await deps.publish(Messages.batchVerdict, { batchId: msg.batchId, agent: msg.agent, attempt: msg.attempt, commit: evidence.commit, verdict: "exhausted", reason: exhaustedReason(msg.attempt, evidence.reason) });
    return;
  }
  await deps.batches.transition(msg.batchId, "rewriting", { reason: evidence.reason });
  deps.log.info("sending batch back to the rewriter", { batch: msg.batchId, next: msg.attempt + 1, why: evidence.reason });
  await deps.publish(Messages.batchRetry, {
    batchId: msg.batchId,
    agent: msg.agent,
    fingerprint: msg.fingerprint,
    fingerprintKey: msg.fingerprintKey,
    baseVersion: msg.baseVersion,
    failures: msg.failures,
    count: msg.count,
    attempt: msg.attempt + 1,
    previous,
  });
}

/**
 * Plateau guard: an attempt whose replay is no better than the attempt before it (the last one that got as far as
 * replay) ends the batch; iterating further would only spend more on the same place. Better: more failures fixed, or
 * as many with fewer recorded successes changed.
 */
export function plateauOf(msg: AttemptResult, evidence: AttemptEvidence): string | undefined {
  if (!evidence.results.length) return undefined;
  const before = [...msg.previous].filter((p) => p.attempt < msg.attempt && p.results.length > 0).sort((a, b) => b.attempt - a.attempt)[0];
  if (!before) return undefined;
  const fixed = (r: AttemptEvidence["results"]) => r.filter((x) => x.passed).length;
  const now = fixed(evidence.results);
  const then = fixed(before.results);
  if (now > then) return undefined;
  const broke = (e: Pick<AttemptEvidence, "regressions">) => regressed(e.regressions).length;
  if (now === then && broke(evidence) < broke(before)) return undefined;
  const changes = broke(evidence) ? ` and changed ${broke(evidence)} recorded success(es)` : "";
  return `plateau: attempt ${msg.attempt} fixed ${now} of ${evidence.results.length} failure(s)${changes}, no better than attempt ${before.attempt} (${then}${broke(before) ? `, ${broke(before)} changed` : ""}); stopping`;
}

/** Keeps a candidate that was not promoted (its branch stays in the agent repo) where later batches can learn from it. */
async function keepRejected(msg: AttemptResult, c: Pick<AttemptEvidence, "attempt" | "commit" | "diff" | "verdict" | "reason">, deps: PromoterDeps): Promise<void> {
  if (!deps.candidates) return;
  await deps.candidates.keep(msg.fingerprintKey, {
    agent: msg.agent,
    fingerprint: msg.fingerprint,
    batchId: msg.batchId,
    attempt: c.attempt,
    commit: c.commit,
    branch: c.commit ? branchName(msg.batchId, c.attempt) : undefined,
    diff: c.diff,
    verdict: c.verdict,
    reason: c.reason.slice(0, 4_000),
    at: new Date().toISOString(),
  });
}
