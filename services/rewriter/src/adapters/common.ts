import { closeSync, constants, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { firstLine, runProcess, type ProcessRun } from "./process";
import type { AdapterResult, Stage, StageInvocation } from "./types";

/** Whether a stage may change files. Every other stage is asked, in the tool's own terms where it has them, to only read. */
export function editsFiles(stage: Stage): boolean {
  return stage === "implement";
}

/**
 * Linux refuses a single argument longer than 128 KiB (MAX_ARG_STRLEN) with E2BIG; past this size a preset hands
 * the prompt over as a file or on stdin instead of as an argument.
 */
export const MAX_PROMPT_ARG = 100_000;

const ANSWER: Record<Stage, string> = {
  locate: "your diagnosis (where the root cause is, and why)",
  plan: "your plan",
  "plan-review": "your review of the plan",
  implement: "a short summary of what you changed",
  "code-review": "your review of the change",
};

/**
 * The prompt a tool receives: the stage's prompt file, then a short footer that says where the evidence is and,
 * for the read-only stages, that nothing may be edited (on top of the tool's own read-only mode, where it has one).
 */
export function composePrompt(inv: StageInvocation, promptText: string): string {
  const lines = ["", "---", `Moss stage: ${inv.stage}.`, `The evidence (JSON) is in ${inv.evidencePath}.`];
  if (!editsFiles(inv.stage)) lines.push("This stage is read-only: do not create, edit or delete any file.");
  lines.push(`End with ${ANSWER[inv.stage]} as your final message.`);
  // An argument that starts with "-" would be read as an option by the tool's parser.
  const text = promptText.startsWith("-") ? `\n${promptText}` : promptText;
  return `${text.trimEnd()}\n${lines.join("\n")}\n`;
}

/** The stage's answer file is ours: a stale one from an earlier run must not pass for this run's answer. */
export function prepareOutput(outputPath: string): void {
  mkdirSync(dirname(outputPath), { recursive: true });
  rmSync(outputPath, { force: true });
}

/**
 * A regular file's bytes, opened without following a link (a tool may plant one), up to `max` bytes; undefined when
 * it is missing, a link, not a file, or bigger.
 */
export function readRegular(path: string, max = Number.MAX_SAFE_INTEGER): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    return st.isFile() && st.size <= max ? readFileSync(fd) : undefined;
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** A regular file's text (see {@link readRegular}). */
export function readIfExists(path: string): string | undefined {
  return readRegular(path)?.toString("utf8");
}

/** Names in the worktree's root, to tell afterwards which ones a tool created for its own bookkeeping. */
export function rootEntries(worktree: string): Set<string> {
  try {
    return new Set(readdirSync(worktree));
  } catch {
    return new Set();
  }
}

/**
 * Removes what a tool left in the worktree's root for itself (caches, histories) and that was not there before
 * the run: the rewriter commits everything the worktree holds, and decides "no change" by `git status`.
 */
export function removeDroppings(worktree: string, before: Set<string>, pattern: RegExp | undefined): string[] {
  if (!pattern) return [];
  const removed: string[] = [];
  for (const name of rootEntries(worktree)) {
    if (before.has(name) || !pattern.test(name)) continue;
    rmSync(join(worktree, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

/** A tool's version: `<bin> --version`, first line, or undefined when it does not answer with exit 0 in time. */
export async function probeVersion(bin: string, env: Record<string, string>, cwd: string): Promise<string | undefined> {
  const r = await runProcess([bin, "--version"], { cwd, env, timeoutMs: 15_000, maxOutput: 64_000 });
  if (r.kind !== "exited" || r.exitCode !== 0) return undefined;
  return firstLine(r.stdout || r.stderr) || undefined;
}

/** Caches the first answer of an async probe (the probe runs once even when asked concurrently). */
export function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= fn());
}

/** The result of a run that ended before the tool could say anything (could not start, timed out). */
export function abnormal(run: ProcessRun, bin: string, timeoutMs: number): AdapterResult | undefined {
  const base = { output: run.output, exitCode: run.exitCode, durationMs: run.durationMs };
  if (run.kind === "spawn-error") {
    return { ...base, outcome: "failure", reason: `could not start '${bin}': ${run.error ?? "unknown error"} (is it installed and on the PATH?)` };
  }
  if (run.kind === "timeout") return { ...base, outcome: "timeout", reason: `'${bin}' killed after its ${timeoutMs} ms timeout (with its whole process group)` };
  return undefined;
}

/** Parses every line of a JSON-lines text that is a JSON object; other lines (logs, a cut at the cap) are skipped. */
export function jsonLines(text: string): Array<Record<string, unknown>> {
  const events: Array<Record<string, unknown>> = [];
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (!t.startsWith("{")) continue;
    try {
      const v: unknown = JSON.parse(t);
      if (isObject(v)) events.push(v);
    } catch {
      // not an event
    }
  }
  return events;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** An error's text wherever a tool put it: a string, `{message}`, `{data: {message}}`, `{error: ...}`. */
export function errorText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (!isObject(v)) return undefined;
  const direct = str(v["message"]);
  if (direct) return direct;
  const nested = errorText(v["data"]) ?? errorText(v["error"]);
  if (nested) return nested;
  const name = str(v["name"]);
  return name ?? JSON.stringify(v).slice(0, 300);
}

/** Writes a file, never through a link a tool may have planted at `path`. */
export function writeText(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o644);
  try {
    writeFileSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

export function exists(path: string): boolean {
  return existsSync(path);
}
