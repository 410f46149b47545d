/**
 * What Moss does with an agent's repository and the worktrees its coding agents work in: every call through the one
 * hardened runner, so nothing the repository (or a coding agent writing to it) configures runs inside Moss.
 */
import { existsSync, rmSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GitCommandError } from "./errors";
import { runGit, runGitToBuffer } from "./run";
import { resolveCommit } from "./verify";

/** Diffs read by Moss never run a driver a repository defines, and always show submodule changes. */
const PLAIN_DIFF = ["--no-ext-diff", "--no-textconv", "--ignore-submodules=none"];

/** The commit a branch points at, or undefined when there is no such branch. */
export async function branchHead(repo: string, branch: string): Promise<string | undefined> {
  const out = await runGit(repo, ["rev-parse", "--verify", "--quiet", `refs/heads/${branch}`]).catch(() => "");
  return out.trim() || undefined;
}

/** Whether `older` is an ancestor of (or is) `newer`. */
export async function isAncestor(repo: string, older: string, newer: string): Promise<boolean> {
  return runGit(repo, ["merge-base", "--is-ancestor", older, newer]).then(
    () => true,
    () => false,
  );
}

/**
 * The commits after `older` up to and including `newer`, oldest first, along `newer`'s first-parent line — the
 * versions that were the branch's tip one after another (check `isAncestor` first).
 */
export async function commitsBetween(repo: string, older: string, newer: string): Promise<string[]> {
  const out = await runGit(repo, ["rev-list", "--first-parent", "--reverse", `${older}..${newer}`]);
  return out.split("\n").filter(Boolean);
}

/** A commit's subject line, author and date, as a person recognises it. */
export async function commitInfo(repo: string, commit: string): Promise<{ subject: string; author: string; date: string }> {
  const out = await runGit(repo, ["log", "-1", "--format=%s%x00%an <%ae>%x00%aI", commit, "--"]);
  const [subject = "", author = "", date = ""] = out.trim().split("\0");
  return { subject, author, date };
}

/** The paths that differ between two commits. */
export async function changedFiles(repo: string, base: string, commit: string): Promise<string[]> {
  const out = await runGit(repo, ["diff", ...PLAIN_DIFF, "--name-only", "-z", `${base}..${commit}`]);
  return out.split("\0").filter(Boolean);
}

/** `git diff --stat --patch base..commit`, as people read it (no external diff, no textconv). */
export async function diffBetween(repo: string, base: string, commit: string): Promise<string> {
  return runGit(repo, ["diff", ...PLAIN_DIFF, "--stat", "--patch", `${base}..${commit}`]);
}

/** A fresh worktree at `base` on branch `branch` (created or reset); a leftover of an aborted earlier try is cleared first. */
export async function addWorktree(repo: string, path: string, branch: string, base: string): Promise<void> {
  if (existsSync(path)) await removeWorktree(repo, path);
  await runGit(repo, ["worktree", "prune"]);
  await runGit(repo, ["worktree", "add", "-f", "-B", branch, path, base]);
}

/** Removes a worktree and its directory, whatever state it is in. */
export async function removeWorktree(repo: string, path: string): Promise<void> {
  await runGit(repo, ["worktree", "remove", "--force", path]).catch(() => undefined);
  rmSync(path, { recursive: true, force: true });
  await runGit(repo, ["worktree", "prune"]).catch(() => undefined);
}

/** Puts a worktree back at `base`: HEAD, index and files, untracked files removed. */
export async function resetWorktree(worktree: string, base: string): Promise<void> {
  await runGit(worktree, ["reset", "--hard", "-q", base]);
  await runGit(worktree, ["clean", "-fdq"]);
}

/**
 * Folds whatever the worktree's HEAD holds beyond `base` (commits a coding agent made itself) back into the index,
 * with HEAD at `base`: the next commit is then the one commit of the whole change, on the attempt's base.
 */
export async function foldOnto(worktree: string, base: string): Promise<void> {
  await runGit(worktree, ["reset", "-q", "--soft", base]);
}

/** The tree a commit records. */
export async function treeOf(repo: string, commit: string): Promise<string> {
  return (await runGit(repo, ["rev-parse", "--verify", `${commit}^{tree}`])).trim();
}

/** Where a worktree stands: its HEAD, and whether anything differs from it (untracked files included). */
export async function worktreeState(worktree: string): Promise<{ head: string; dirty: boolean }> {
  const status = await runGit(worktree, ["status", "--porcelain", "--untracked-files=all", "--ignore-submodules=none"]);
  const head = (await runGit(worktree, ["rev-parse", "HEAD"])).trim();
  return { head, dirty: status.trim() !== "" };
}

/** The tree the index holds (to put it back after a stage that must not change it), and its diff against `base`. */
export async function stagedChange(worktree: string, base: string): Promise<{ tree: string; diff: string }> {
  const tree = (await runGit(worktree, ["write-tree"])).trim();
  const diff = await runGit(worktree, ["diff", ...PLAIN_DIFF, "--cached", base]);
  return { tree, diff };
}

/** Puts a staged tree back in place, with HEAD at `base`: undoes whatever a stage did, commits included. */
export async function restoreStaged(worktree: string, base: string, tree: string): Promise<void> {
  await runGit(worktree, ["reset", "-q", "--soft", base]);
  await runGit(worktree, ["read-tree", "--reset", "-u", tree]);
  await runGit(worktree, ["clean", "-fdq"]);
}

/** Agent repos are small; this only guards against a runaway archive filling memory. */
const MAX_ARCHIVE_BYTES = 1024 * 1024 * 1024;

/** The full sha `commit` names and a tar of its tree (`git archive`: committed files only), e.g. an image's build context. */
export async function archiveCommit(repo: string, commit: string): Promise<{ sha: string; tar: Buffer }> {
  const sha = await resolveCommit(repo, commit);
  const tar = await runGitToBuffer(repo, ["archive", "--format=tar", sha], (file) => `--output=${file}`);
  if (tar.length > MAX_ARCHIVE_BYTES) throw new GitCommandError(["archive", sha], repo, `the archive is ${tar.length} bytes, over ${MAX_ARCHIVE_BYTES}`);
  return { sha, tar };
}

/** The notes ref Moss keeps its own record of each Moss commit under (`git log --notes=moss` shows it). */
export const MOSS_NOTES = "refs/notes/moss";
/** Who writes Moss's notes (notes are commits of their own, on the notes ref). */
const NOTES_IDENTITY = ["user.name=Moss", "user.email=moss@localhost"];

/** The note on `commit` under `ref`, or undefined when it has none. */
export async function readNote(repo: string, commit: string, ref = MOSS_NOTES): Promise<string | undefined> {
  return runGit(repo, ["notes", `--ref=${ref}`, "show", commit]).catch(() => undefined);
}

/** Sets the note on `commit` under `ref` to `text` (replacing any). */
export async function writeNote(repo: string, commit: string, text: string, ref = MOSS_NOTES): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "moss-note-"));
  try {
    const file = join(dir, "note");
    await writeFile(file, text);
    await runGit(repo, ["notes", `--ref=${ref}`, "add", "-f", "-F", file, commit], { config: NOTES_IDENTITY });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The notes ref the audit log's checkpoints are kept under, a copy outside the log (one JSON line per checkpoint). */
export const AUDIT_NOTES = "refs/notes/moss-audit";

/** Appends `line` (and a newline) to the note on `commit` under `ref`, unless the note already holds that line. */
export async function appendNoteLine(repo: string, commit: string, line: string, ref = AUDIT_NOTES): Promise<boolean> {
  const cur = (await readNote(repo, commit, ref)) ?? "";
  if (cur.split("\n").includes(line)) return false;
  await writeNote(repo, commit, `${cur}${cur && !cur.endsWith("\n") ? "\n" : ""}${line}\n`, ref);
  return true;
}

/** Every note under `ref`, with the object it is on. */
export async function listNotes(repo: string, ref: string): Promise<Array<{ object: string; text: string }>> {
  const out = await runGit(repo, ["notes", `--ref=${ref}`, "list"]).catch(() => "");
  const notes: Array<{ object: string; text: string }> = [];
  for (const line of out.split("\n").filter(Boolean)) {
    const [blob, object] = line.split(" ");
    if (!blob || !object) continue;
    notes.push({ object, text: await runGit(repo, ["cat-file", "blob", blob]) });
  }
  return notes;
}
