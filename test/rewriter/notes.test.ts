// The git note on every Moss commit (refs/notes/moss), on a real repository: each part of the commit's story as it is
// published — candidate, replay, verdict, promotion — merged into one note `git log --notes=moss` shows; the same
// message again changes nothing; a note that is not Moss's is replaced; a verdict with no commit notes nothing.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BatchVerdict, CandidateReady, MossNote, PromotionOutcome, ReplayCompleted } from "@moss/contracts";
import { onNoteEvent } from "@moss/rewriter";
import { afterAll, describe, expect, it } from "vitest";
import { silent } from "../helpers/env";

describe("the Moss note on a commit (real git)", () => {
  const repo = mkdtempSync(join(tmpdir(), "moss-notes-"));
  afterAll(() => rmSync(repo, { recursive: true, force: true }));
  const git = (...a: string[]) => execFileSync("git", ["-C", repo, "-c", "user.name=Human", "-c", "user.email=h@example.com", ...a], { encoding: "utf8" }).trim();
  git("init", "-q", "-b", "main");
  writeFileSync(join(repo, "app.js"), "v1\n");
  git("add", "-A");
  git("commit", "-qm", "v1");
  writeFileSync(join(repo, "app.js"), "v2\n");
  git("commit", "-qam", "fix: the empty list");
  const commit = git("rev-parse", "HEAD");
  const deps = { agent: () => ({ repo }), log: silent };
  const diff = { sha256: "d".repeat(64), size: 10 };
  const base = { batchId: "b7", agent: "shop", fingerprint: "fp", fingerprintKey: "fpk", baseVersion: "a".repeat(40), failures: [{ id: "f1", event: diff }], count: 1, attempt: 2 };
  const note = () => MossNote.parse(JSON.parse(git("notes", "--ref=moss", "show", commit)));
  const head = () => git("rev-parse", "refs/notes/moss");

  it("merges the candidate, the replay, the verdict and the promotion into one note, with the commands that show the rest", async () => {
    await onNoteEvent({ kind: "candidate", msg: CandidateReady.parse({ ...base, commit, branch: "moss/b7/2", image: "moss/shop:abc", imageId: "sha256:1", diff, filesChanged: ["app.js"], codingAgent: "claude-code" }) }, deps);
    expect(note()).toEqual({
      note: "moss.note.v1",
      batch: "b7",
      agent: "shop",
      attempt: 2,
      commit,
      candidate: { branch: "moss/b7/2", image: "moss/shop:abc", codingAgent: "claude-code", filesChanged: ["app.js"] },
      links: { show: "moss show b7", trace: "moss trace b7", replay: `moss replay --all-failures-of b7 --version ${commit}` },
    });
    await onNoteEvent({ kind: "replay", msg: ReplayCompleted.parse({ ...base, commit, image: "moss/shop:abc", diff, passed: true, results: [{ failureId: "f1", passed: true, verdict: "pass", reason: "answered 200", durationMs: 31 }] }) }, deps);
    await onNoteEvent({ kind: "verdict", msg: BatchVerdict.parse({ batchId: "b7", agent: "shop", attempt: 2, commit, verdict: "awaiting-approval", reason: "replay passed" }) }, deps);
    await onNoteEvent({ kind: "promotion", msg: PromotionOutcome.parse({ batchId: "b7", agent: "shop", attempt: 2, commit, image: "moss/shop:abc", outcome: "promoted", reason: "healthy for the bake", probes: { ok: 9, failed: 0 }, approvedBy: "ana" }) }, deps);
    expect(note()).toMatchObject({
      candidate: { branch: "moss/b7/2" },
      replay: { passed: true, failures: [{ id: "f1", passed: true, verdict: "pass", reason: "answered 200" }], regressions: { replayed: 0, changed: 0 } },
      verdict: { verdict: "awaiting-approval", reason: "replay passed" },
      promotion: { outcome: "promoted", reason: "healthy for the bake", approvedBy: "ana" },
    });
    // Next to the commit, wherever the repository goes.
    expect(git("log", "-1", "--notes=moss", "--format=%N", commit)).toContain('"outcome": "promoted"');
  });

  it("the same message again changes nothing; a verdict without a commit notes nothing", async () => {
    const before = head();
    await onNoteEvent({ kind: "promotion", msg: PromotionOutcome.parse({ batchId: "b7", agent: "shop", attempt: 2, commit, image: "moss/shop:abc", outcome: "promoted", reason: "healthy for the bake", probes: { ok: 9, failed: 0 }, approvedBy: "ana" }) }, deps);
    await onNoteEvent({ kind: "verdict", msg: BatchVerdict.parse({ batchId: "b8", agent: "shop", attempt: 1, verdict: "needs-human", reason: "breaker open" }) }, deps);
    expect(head()).toBe(before);
  });

  it("a note that is not Moss's is replaced by Moss's, from what this message says", async () => {
    git("notes", "--ref=moss", "add", "-f", "-m", "not json at all", commit);
    await onNoteEvent({ kind: "verdict", msg: BatchVerdict.parse({ batchId: "b7", agent: "shop", attempt: 2, commit, verdict: "rejected", reason: "rejected by bo: wrong approach" }) }, deps);
    expect(note()).toMatchObject({ batch: "b7", verdict: { verdict: "rejected", reason: "rejected by bo: wrong approach" } });
    expect(note().promotion).toBeUndefined();
  });
});
