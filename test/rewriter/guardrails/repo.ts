import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

/** A real repository with one commit, and a worktree of it at that commit, as the rewriter hands to a coding agent. */
export interface Repo {
  /** The main repository. */
  main: string;
  /** The worktree the coding agent edits. */
  wt: string;
  /** The base commit. */
  base: string;
  write(path: string, content: string | Buffer): void;
  git(...args: string[]): string;
}

const roots: string[] = [];

export function cleanupRepos(): void {
  while (roots.length > 0) rmSync(roots.pop()!, { recursive: true, force: true });
}

function git(cwd: string, args: string[]): string {
  return execFileSync("git", ["-c", "user.name=Test", "-c", "user.email=test@localhost", "-c", "init.defaultBranch=main", ...args], {
    cwd,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** `files` is the base commit's content. */
export function makeRepo(files: Record<string, string | Buffer>): Repo {
  const root = mkdtempSync(join(tmpdir(), "moss-guardrails-"));
  roots.push(root);
  const main = join(root, "repo");
  mkdirSync(main);
  git(main, ["init", "-q"]);
  const write = (base: string) => (path: string, content: string | Buffer) => {
    const p = join(base, path);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, content);
  };
  for (const [p, c] of Object.entries(files)) write(main)(p, c);
  git(main, ["add", "-A"]);
  git(main, ["commit", "-q", "--allow-empty", "-m", "base"]);
  const base = git(main, ["rev-parse", "HEAD"]).trim();
  const wt = join(root, "wt");
  git(main, ["worktree", "add", "-q", "-b", "attempt", wt, base]);
  return { main, wt, base, write: write(wt), git: (...args) => git(wt, args) };
}

/** `n` lines of text. */
export function lines(n: number, tag = "line"): string {
  return Array.from({ length: n }, (_, i) => `${tag} ${i + 1}\n`).join("");
}
