/**
 * The git note on every Moss commit (`refs/notes/moss`, a `MossNote`): the rewriter, which holds the repository,
 * writes what became of the commit as each part of its story is published — the candidate built from it, its replay,
 * the verdict, its promotion or rollback — with the commands that show the rest. A redelivered message writes the same
 * note again, which changes nothing.
 */
import { MossNote, type AuditCheckpointed, type BatchVerdict, type CandidateReady, type PromotionOutcome, type ReplayCompleted } from "@moss/contracts";
import { AUDIT_NOTES, appendNoteLine, readNote, resolveCommit, writeNote } from "@moss/git";
import type { Logger } from "@moss/telemetry";

export interface NoteDeps {
  agent(name: string): { repo: string };
  log: Logger;
}

export type NoteEvent =
  | { kind: "candidate"; msg: CandidateReady }
  | { kind: "replay"; msg: ReplayCompleted }
  | { kind: "verdict"; msg: BatchVerdict }
  | { kind: "promotion"; msg: PromotionOutcome };

/** What one event adds to the note. */
function part(e: NoteEvent): Partial<MossNote> {
  switch (e.kind) {
    case "candidate":
      return { candidate: { branch: e.msg.branch, image: e.msg.image, ...(e.msg.codingAgent ? { codingAgent: e.msg.codingAgent } : {}), filesChanged: e.msg.filesChanged } };
    case "replay":
      return {
        replay: {
          passed: e.msg.passed,
          failures: e.msg.results.map((r) => ({ id: r.failureId, passed: r.passed, ...(r.verdict ? { verdict: r.verdict } : {}), reason: r.reason.slice(0, 300) })),
          regressions: { replayed: e.msg.regressions.length, changed: e.msg.regressions.filter((r) => !r.passed && r.verdict !== "error").length },
        },
      };
    case "verdict":
      return { verdict: { verdict: e.msg.verdict, reason: e.msg.reason.slice(0, 1_000) } };
    case "promotion":
      return { promotion: { outcome: e.msg.outcome, reason: e.msg.reason.slice(0, 1_000), approvedBy: e.msg.approvedBy } };
  }
}

/** Merges what `e` says into the note on its commit (a verdict that names no commit has none to note). */
export async function onNoteEvent(e: NoteEvent, deps: NoteDeps): Promise<void> {
  const commit = e.msg.commit;
  if (!commit) return;
  const { repo } = deps.agent(e.msg.agent);
  const existing = await readNote(repo, commit);
  const parsed = existing === undefined ? undefined : MossNote.safeParse(jsonOrNull(existing));
  // A note someone else wrote (or one too old to read) is replaced by Moss's: the ref is Moss's own.
  if (parsed && !parsed.success) deps.log.warn("the Moss note on a commit was unreadable; writing it afresh", { commit, agent: e.msg.agent });
  const base: MossNote = parsed?.success
    ? parsed.data
    : {
        note: "moss.note.v1",
        batch: e.msg.batchId,
        agent: e.msg.agent,
        attempt: e.msg.attempt,
        commit,
        links: { show: `moss show ${e.msg.batchId}`, trace: `moss trace ${e.msg.batchId}`, replay: `moss replay --all-failures-of ${e.msg.batchId} --version ${commit}` },
      };
  const next = MossNote.parse({ ...base, ...part(e) });
  const text = `${JSON.stringify(next, null, 2)}\n`;
  if (existing === text) return;
  await writeNote(repo, commit, text);
  deps.log.info("noted on the commit", { commit: commit.slice(0, 12), kind: e.kind, batch: e.msg.batchId });
}

function jsonOrNull(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

export interface CheckpointNoteDeps {
  /** Every configured agent and its repository. */
  repos(): Array<{ agent: string; repo: string }>;
  /** The commit an agent is live on, if it is deployed. */
  live(agent: string): Promise<string | undefined>;
  log: Logger;
}

/**
 * Keeps an audit checkpoint as a git note (`refs/notes/moss-audit`, one JSON line per checkpoint) on the commit each
 * agent is live on (its HEAD when it is not deployed): a copy of the chain head outside the log, its KV and its blob
 * store, in a history every clone and mirror of the repository carries. A repository that cannot take it is said and
 * skipped; a redelivery adds nothing.
 */
export async function onAuditCheckpoint(msg: AuditCheckpointed, deps: CheckpointNoteDeps): Promise<void> {
  const line = JSON.stringify({ seq: msg.seq, data: msg.data, ...(msg.signature ? { signature: msg.signature } : {}) });
  for (const { agent, repo } of deps.repos()) {
    try {
      const commit = (await deps.live(agent)) ?? (await resolveCommit(repo, "HEAD"));
      if (await appendNoteLine(repo, commit, line, AUDIT_NOTES)) deps.log.info("audit checkpoint noted in git", { agent, seq: msg.seq, commit: commit.slice(0, 12) });
    } catch (err) {
      deps.log.warn("could not keep the audit checkpoint as a git note", { agent, seq: msg.seq, err: (err as Error).message });
    }
  }
}
