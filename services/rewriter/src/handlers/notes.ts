/**
 * The git note on every Moss commit (`refs/notes/moss`, a `MossNote`): the rewriter, which holds the repository,
 * writes what became of the commit as each part of its story is published — the candidate built from it, its replay,
 * the verdict, its promotion or rollback — with the commands that show the rest. A redelivered message writes the same
 * note again, which changes nothing.
 */
import { MossNote, type BatchVerdict, type CandidateReady, type PromotionOutcome, type ReplayCompleted } from "@moss/contracts";
import { readNote, writeNote } from "@moss/git";
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
