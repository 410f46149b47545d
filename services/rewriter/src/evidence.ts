/** The evidence file a coding agent receives for an attempt, and the attempt's base prompt. */
import type { BlobStore } from "@moss/blob";
import type { CandidateStore } from "@moss/batch";
import { describeInput, describeRegression, FailureEvent, regressed, type AttemptEvidence, type BatchReady, type BatchRetry, type BlobRef, type RejectedCandidate } from "@moss/contracts";
import type { Logger } from "@moss/telemetry";

/** The evidence file handed to the coding agent. */
export interface Evidence {
  batchId: string;
  agent: string;
  attempt: number;
  fingerprint: string;
  baseVersion: string;
  /** Failures seen in all; `failures` holds the samples. */
  count: number;
  failures: FailureEvent[];
  /** Earlier attempts: their diff and how their replay went. */
  previous: Array<AttemptEvidence & { diffText?: string }>;
  /** Fixes of the same fingerprint that were tried in earlier batches and not promoted, with why. */
  rejectedBefore: Array<RejectedCandidate & { diffText?: string }>;
  prompt: string;
}

/** Rejected candidates of other batches shown to an attempt: the most recent ones. */
const MAX_REJECTED = 5;

export async function buildEvidence(
  msg: BatchReady | BatchRetry,
  previous: AttemptEvidence[],
  deps: { blob: BlobStore; candidates?: CandidateStore; log: Logger },
): Promise<Evidence> {
  const { blob } = deps;
  const text = async (ref?: BlobRef) => (ref ? (await blob.get(ref.sha256)).toString("utf8") : undefined);
  const failures = await Promise.all(msg.failures.map(async (f) => FailureEvent.parse(JSON.parse((await text(f.event))!))));
  const prev = await Promise.all(previous.map(async (p) => ({ ...p, diffText: await text(p.diff) })));
  const others = deps.candidates
    ? (await deps.candidates.list(msg.agent, msg.fingerprintKey, (key, err) => deps.log.warn("skipping an unreadable rejected candidate", { key, err: err.message })))
        .filter((c) => c.batchId !== msg.batchId)
        .slice(0, MAX_REJECTED)
    : [];
  const rejectedBefore = await Promise.all(others.map(async (c) => ({ ...c, diffText: (await text(c.diff))?.slice(0, 20_000) })));
  return {
    batchId: msg.batchId,
    agent: msg.agent,
    attempt: msg.attempt,
    fingerprint: msg.fingerprint,
    baseVersion: msg.baseVersion,
    count: msg.count,
    failures,
    previous: prev,
    rejectedBefore,
    prompt: promptFor(msg, failures, prev, rejectedBefore),
  };
}

function promptFor(msg: BatchReady | BatchRetry, failures: FailureEvent[], previous: Evidence["previous"], rejected: Evidence["rejectedBefore"]): string {
  const first = failures[0]!;
  const lines = [
    `# Fix agent '${msg.agent}' (batch ${msg.batchId}, attempt ${msg.attempt})`,
    "",
    `${msg.count} production failure(s) share one root cause (fingerprint \`${msg.fingerprint}\`).`,
    `Example: ${describeInput(first)} failed with ${first.error.type}: ${first.error.message}`,
    "",
    "The full evidence (requests, errors, stacks, logs, env) is in the JSON file next to this prompt.",
    "Change the source in the current directory so that every one of these requests succeeds.",
    "Fix the root cause; do not hide the error, do not edit tests or replay fixtures.",
    "Every failing request will be replayed against your change in a fresh container before anything ships,",
    "and so will recorded requests that work today: your change must keep their answers.",
  ];
  for (const p of previous) {
    lines.push("", `## Attempt ${p.attempt} did not work (${p.verdict}): ${p.reason}`);
    for (const r of p.results.filter((x) => !x.passed)) {
      const check = r.failed && r.failed.check !== "trial" ? ` [${r.failed.check}${r.failed.path ? ` ${r.failed.path}` : ""}: expected ${r.failed.expected}, got ${r.failed.actual}]` : "";
      lines.push(`- failure ${r.failureId}${r.verdict ? ` (${r.verdict})` : ""}: ${r.reason}${check}`);
    }
    // What it broke: recorded successes whose outcome it changed, before → after; the next attempt must keep them.
    for (const r of regressed(p.regressions)) lines.push(`- it broke a request that used to work: ${describeRegression(r)} (was: ${r.recorded.status} ${(r.recorded.body ?? "").slice(0, 200)})`);
  }
  if (rejected.length) {
    lines.push("", "## Fixes of this root cause tried before and not promoted");
    for (const c of rejected) lines.push(`- batch ${c.batchId} attempt ${c.attempt}${c.commit ? ` (commit ${c.commit.slice(0, 12)}, branch ${c.branch})` : ""}: ${c.verdict}: ${c.reason}`);
  }
  return lines.join("\n") + "\n";
}
