import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll } from "vitest";

/**
 * Points HOME at a fresh temp dir for this test file (vitest runs each file in its own process),
 * so neither the tests nor the library can read or write the real ~/.gitconfig. Returns the temp
 * root; `root()` is valid inside tests.
 */
export function isolatedHome(): { root: () => string; home: () => string } {
  let root = "";
  const saved = process.env.HOME;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "moss-git-"));
    process.env.HOME = join(root, "home");
    mkdirSync(process.env.HOME);
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.HOME;
    else process.env.HOME = saved;
    rmSync(root, { recursive: true, force: true });
  });
  return { root: () => root, home: () => join(root, "home") };
}

/** Runs git directly (not through @moss/git), with the test's HOME and no ambient GIT_* variables. */
export function git(cwd: string, ...args: string[]): string {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("GIT_")) env[k] = v;
  return execFileSync("git", args, { cwd, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

let n = 0;
/** A new repository under `root` with one file staged (nothing committed yet). */
export function newRepo(root: string): string {
  const repo = join(root, `repo-${++n}`);
  mkdirSync(repo, { recursive: true });
  git(repo, "init", "-q", "-b", "main");
  stage(repo, "app.js", "console.log('v1');\n");
  return repo;
}

/** Writes `file` in `repo` and stages it. */
export function stage(repo: string, file: string, content: string): void {
  const path = join(repo, file);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
  git(repo, "add", "--", file);
}

/** `%G?` as git itself reports it, with only the given allowed signers file. */
export function gitStatusLetter(repo: string, sha: string, allowedSigners: string): string {
  return git(repo, "-c", `gpg.ssh.allowedSignersFile=${allowedSigners}`, "log", "-1", "--format=%G?", sha).trim();
}

/** Runs an async function and returns what it threw (fails the test if it resolved). */
export async function thrown(p: Promise<unknown>): Promise<Error & { code?: string; retryable?: boolean }> {
  try {
    await p;
  } catch (err) {
    return err as Error & { code?: string; retryable?: boolean };
  }
  throw new Error("expected a rejection, but the promise resolved");
}
