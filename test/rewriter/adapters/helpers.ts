import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Stage, StageInvocation } from "@moss/rewriter";

/** The fake coding-agent CLIs (claude, codex, aider, opencode, fake-version). */
export const FAKES = fileURLToPath(new URL("./fakes", import.meta.url));

/** A checkout may lose the executable bit; the fakes must run as commands. */
export function ensureFakesExecutable(): void {
  for (const n of readdirSync(FAKES)) if (!n.includes(".")) chmodSync(join(FAKES, n), 0o755);
}

export function tempRoot(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `moss-${prefix}-`));
}

/** The allow-listed environment a caller would pass: the fakes first on PATH, node reachable for their shebang. */
export function fakeEnv(root: string, extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: [FAKES, dirname(process.execPath), "/usr/local/bin", "/usr/bin", "/bin"].join(":"), HOME: root, ...extra };
}

export function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", ["-c", "user.name=Test", "-c", "user.email=test@localhost", ...args], { cwd, encoding: "utf8" });
}

/** A git repository with one committed source file, `src/user.ts`. */
export function makeRepo(root: string, name = "repo"): string {
  const dir = join(root, name);
  mkdirSync(join(dir, "src"), { recursive: true });
  writeFileSync(join(dir, "src", "user.ts"), USER_TS);
  git(dir, "init", "-q");
  git(dir, "add", "-A");
  git(dir, "commit", "-qm", "init");
  return dir;
}

export const USER_TS = ["export function greet(user: { name: string } | undefined): string {", "  return `hello ${user.name}`;", "}", ""].join("\n");

export const EVIDENCE = {
  batchId: "b1",
  agent: "demo",
  attempt: 1,
  fingerprint: "fp-null-user-0001",
  failures: [{ error: { type: "TypeError", message: "Cannot read properties of undefined (reading 'name')" } }],
};

let seq = 0;
/** A stage invocation whose evidence, prompt and output live next to (not inside) the worktree. */
export function invocation(root: string, worktree: string, stage: Stage, env: Record<string, string>, o: Partial<StageInvocation> & { prompt?: string; evidence?: unknown } = {}): StageInvocation {
  const dir = join(root, `run-${++seq}`);
  mkdirSync(dir, { recursive: true });
  const evidencePath = join(dir, "evidence.json");
  const promptPath = join(dir, "prompt.md");
  writeFileSync(evidencePath, JSON.stringify(o.evidence ?? EVIDENCE));
  writeFileSync(promptPath, o.prompt ?? `# Fix agent 'demo'\n\nStage ${stage}: the greeting crashes on a missing user.\n`);
  return { stage, worktree, evidencePath, promptPath, outputPath: join(dir, "out", `${stage}.md`), timeoutMs: 20_000, env, ...stripExtras(o) };
}

function stripExtras(o: Partial<StageInvocation> & { prompt?: string; evidence?: unknown }): Partial<StageInvocation> {
  const { prompt: _p, evidence: _e, ...rest } = o;
  return rest;
}

/** `git status --porcelain` of a worktree: empty when nothing changed. */
export function status(worktree: string): string {
  return git(worktree, "status", "--porcelain").trim();
}

/** Whether a process exists and is not a zombie (a killed orphan may linger unreaped when PID 1 does not reap). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

export function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, "utf8")) as T;
}

export async function waitFor(cond: () => boolean, ms = 3_000): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}
