/** The auditor's read model: a batch's whole story, and the list of batches, from the audit log alone. */
import { describeInput, regressed, replayVerdict, type AttemptView, type BatchReady, type BatchSummary, type BatchTimeline, type BatchVerdict, type BreakerReset, type CandidateFailed, type CandidateReady, type DeadLetter, type FailureEvent, type PromotionOutcome, type ReplayCompleted, type TimelineEntry } from "@moss/contracts";
import type { AuditLog, AuditRecord } from "./audit-log";

/**
 * Times are compared as the instants they name, never as strings: failures carry the agent's `occurredAt`, which may
 * have no fractional seconds ("…:00Z"), and '.' sorts before 'Z'. An unparsable time gets `missing`; callers pass the value that sorts it last.
 */
function instant(at: string, missing: number): number {
  const ms = Date.parse(at);
  return Number.isNaN(ms) ? missing : ms;
}
const compare = (a: number, b: number): number => (a < b ? -1 : a > b ? 1 : 0);

/** Builds a batch's story from the audit log alone (no other service is asked). */
/** The record's `who`, as a timeline entry carries it (a record from before Moss named who has none). */
const whoOf = (r: AuditRecord): { who?: string } => (r.who ? { who: r.who } : {});

export function batchTimeline(log: AuditLog, batchId: string): BatchTimeline | undefined {
  const recs = log.recordsOf(batchId);
  if (!recs?.length) return undefined;
  const ready = recs.find((r) => r.kind === "batch.ready.v1")?.data as BatchReady | undefined;
  const failureRecs = (ready?.failures ?? []).map((f) => log.failure(f.id)).filter((r): r is AuditRecord => Boolean(r));
  const failures = failureRecs.map((r) => {
    const ev = r.data as FailureEvent;
    return { id: ev.id, occurredAt: ev.occurredAt, route: ev.route, request: ev.request, invocation: ev.invocation, error: ev.error, version: ev.version };
  });
  const attempts = new Map<number, AttemptView>();
  const at = (n: number) => attempts.get(n) ?? attempts.set(n, { attempt: n }).get(n)!;
  const timeline: TimelineEntry[] = failureRecs.map((r) => {
    const ev = r.data as FailureEvent;
    return { at: ev.occurredAt, ...whoOf(r), kind: "failure", summary: `${describeInput(ev)} → ${ev.error.type}: ${ev.error.message}` };
  });
  let verdict = "in progress";
  const deadLetters: BatchTimeline["deadLetters"] = [];
  let promotion: PromotionOutcome | undefined;
  for (const r of recs) {
    const d = r.data as Record<string, unknown>;
    switch (r.kind) {
      case "batch.ready.v1":
        timeline.push({ at: r.at, ...whoOf(r), kind: "batch", summary: `batch closed with ${(d as BatchReady).count} failure(s); fingerprint ${(d as BatchReady).fingerprint}` });
        break;
      case "batch.retry.v1":
        timeline.push({ at: r.at, ...whoOf(r), kind: "retry", summary: `sent back to the rewriter for attempt ${d["attempt"]}` });
        break;
      case "candidate.ready.v1": {
        const c = d as unknown as CandidateReady;
        Object.assign(at(c.attempt), { commit: c.commit, branch: c.branch, image: c.image, filesChanged: c.filesChanged, diff: c.diff, stages: c.stages, codingAgent: c.codingAgent, signed: c.signed });
        timeline.push({ at: r.at, ...whoOf(r), kind: "candidate", summary: `attempt ${c.attempt}: commit ${c.commit.slice(0, 12)} changed ${c.filesChanged.join(", ")}; image ${c.image}` });
        break;
      }
      case "candidate.failed.v1": {
        const c = d as unknown as CandidateFailed;
        Object.assign(at(c.attempt), { commit: c.commit, verdict: c.verdict, reason: c.reason, diff: c.diff, stages: c.stages });
        timeline.push({ at: r.at, ...whoOf(r), kind: "candidate-failed", summary: `attempt ${c.attempt}: ${c.verdict}: ${c.reason}` });
        break;
      }
      case "replay.completed.v1": {
        const c = d as unknown as ReplayCompleted;
        const fixed = c.results.filter((x) => x.passed).length;
        const regressions = c.regressions ?? [];
        Object.assign(at(c.attempt), { replay: c.results, ...(regressions.length ? { regressions } : {}), verdict: c.passed ? "replay-passed" : replayVerdict(c).verdict });
        const named = c.results.filter((x) => x.verdict && x.verdict !== "pass" && x.verdict !== "fail").map((x) => `${x.failureId} ${x.verdict}${x.trials ? ` (${x.trials.passed} of ${x.trials.of} trials passed)` : ""}`);
        const changed = regressed(regressions).length;
        const kept = regressions.length ? `; ${changed ? `${changed} of ${regressions.length} recorded success(es) changed` : `${regressions.length} recorded success(es) unchanged`}` : "";
        timeline.push({ at: r.at, ...whoOf(r), kind: "replay", summary: `attempt ${c.attempt}: replay ${c.passed ? "passed" : "failed"} (${fixed}/${c.results.length} fixed)${kept}${named.length ? `; ${named.join(", ")}` : ""}` });
        break;
      }
      case "batch.verdict.v1": {
        const v = d as unknown as BatchVerdict;
        verdict = v.verdict;
        timeline.push({ at: r.at, ...whoOf(r), kind: "verdict", summary: `${v.verdict}: ${v.reason}` });
        break;
      }
      case "approval.v1":
        timeline.push({ at: r.at, ...whoOf(r), kind: "approval", summary: `${d["decision"]} by ${d["by"]}${d["reason"] ? `: ${d["reason"]}` : ""}` });
        break;
      case "breaker.reset.v1": {
        const b = d as unknown as BreakerReset;
        const released = b.released?.length ? `; released ${b.released.join(", ")}` : "";
        timeline.push({ at: b.at, ...whoOf(r), kind: "breaker-reset", summary: `circuit breaker of the fingerprint reset by ${b.by} (it was ${b.was.consecutiveRejections} rejection(s) in a row${b.was.needsHuman ? ", needs-human" : ""})${released}` });
        break;
      }
      case "dlq.v1": {
        const dl = d as unknown as DeadLetter;
        deadLetters.push({ at: dl.at ?? r.at, subject: dl.subject, consumer: dl.consumer, code: dl.code, reason: dl.reason });
        timeline.push({ at: dl.at ?? r.at, ...whoOf(r), kind: "dead-letter", summary: `${dl.consumer} gave up on ${dl.subject}: ${dl.reason}` });
        break;
      }
      case "promotion.outcome.v1":
        promotion = d as unknown as PromotionOutcome;
        verdict = promotion.outcome;
        timeline.push({ at: r.at, ...whoOf(r), kind: "promotion", summary: `${promotion.outcome} ${promotion.image} (approved by ${promotion.approvedBy}): ${promotion.reason}` });
        break;
    }
  }
  timeline.sort((a, b) => compare(instant(a.at, Infinity), instant(b.at, Infinity)));
  return {
    batchId,
    agent: ready?.agent,
    fingerprint: ready?.fingerprint,
    count: ready?.count,
    traceId: recs[0]?.traceId,
    failures,
    attempts: [...attempts.values()].sort((a, b) => a.attempt - b.attempt),
    verdict,
    promotion,
    timeline,
    deadLetters,
  };
}

/** Per log: each batch's summary, with the number of its records it was computed from (recomputed when that changes). */
const summaries = new WeakMap<AuditLog, Map<string, { n: number; summary: BatchSummary }>>();

/**
 * Every batch the log knows, newest first, with its latest verdict: a page of at most `limit`, after the cursor
 * `before` (the `lastAt|batchId` of the previous page's last row). Summaries are kept per batch and recomputed only for
 * batches that got new records, so a list costs what changed, not the whole log.
 */
export function listBatches(log: AuditLog, page: { limit?: number; before?: string } = {}): { batches: BatchSummary[]; next?: string } {
  let cache = summaries.get(log);
  if (!cache) summaries.set(log, (cache = new Map()));
  for (const id of log.batchIds()) {
    const n = log.countOf(id);
    if (cache.get(id)?.n === n) continue;
    const t = batchTimeline(log, id)!;
    cache.set(id, { n, summary: { batchId: id, agent: t.agent, count: t.count, verdict: t.verdict, lastAt: t.timeline[t.timeline.length - 1]?.at ?? "" } });
  }
  const key = (b: BatchSummary) => `${b.lastAt}|${b.batchId}`;
  const all = [...cache.values()]
    .map((c) => c.summary)
    .sort((a, b) => compare(instant(b.lastAt, -Infinity), instant(a.lastAt, -Infinity)) || (a.batchId < b.batchId ? 1 : a.batchId > b.batchId ? -1 : 0));
  const start = page.before === undefined ? 0 : all.findIndex((b) => key(b) === page.before) + 1;
  const limit = page.limit ?? 200;
  const batches = all.slice(start, start + limit);
  const more = start + limit < all.length;
  return more ? { batches, next: key(batches[batches.length - 1]!) } : { batches };
}
