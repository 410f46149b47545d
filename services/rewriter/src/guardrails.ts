/**
 * Guardrails: what a coding agent handed back, checked before anything is committed.
 *
 * The check stages the whole worktree (`git add -A`, so untracked files count) and compares the index with the
 * attempt's base commit. Comparing with the base rather than HEAD means commits the coding agent made itself
 * are inspected too. Everything is read from git, never from the file system: the index is what gets committed.
 */
import { posix } from "node:path";
import { StringDecoder } from "node:string_decoder";
import type { Guardrails } from "@moss/config";
import { runGit } from "@moss/git";
import picomatch from "picomatch";
import { Codes } from "@moss/errors";
import { GuardrailError } from "./errors";
import { compileSecretPattern, SecretScanner } from "./secrets";

/**
 * Limits on one patch: `rewriter.guardrails` of @moss/config, documented there. `forbid` adds to DEFAULT_FORBIDDEN,
 * which always applies (the built-ins protect what a patch is judged by: configuration can add to them, never lift
 * them); a `secretPatterns` entry `"/body/flags"` sets flags (e.g. `"/acme_[a-z0-9]{32}/i"`).
 */
export type GuardrailConfig = Guardrails;

/**
 * Paths a patch may never touch, whatever the configuration. The common thread: a patch must not grade itself,
 * nor change what runs it, judges it or ships it.
 */
export const DEFAULT_FORBIDDEN: readonly string[] = Object.freeze([
  // Git's own data: hooks and config there run code on the host; refs there rewrite history.
  ".git/**",
  "**/.git/**",
  // Moss's configuration of this agent: guardrails, replay settings, promotion policy. A patch that edits it
  // could loosen the very limits it is being checked against.
  "moss.config.json",
  "**/moss.config.*",
  ".moss/**",
  // CI and pipelines: they run with the repository's credentials and decide what gets deployed.
  ".ci/**",
  ".github/**",
  ".gitlab-ci.yml",
  ".circleci/**",
  "Jenkinsfile",
  "azure-pipelines.yml",
  // Git attributes decide how git diffs a file: marking `*.ts -diff` would make this patch's own lines
  // invisible to the line count and the secret scan below.
  "**/.gitattributes",
  // The agent's replay fixtures and evaluators: the recorded failures a patch is replayed against and the code
  // that scores the replay. A patch that edits them passes by changing the exam, not by fixing the agent.
  "moss/**",
  "**/replay-fixtures/**",
  "**/__replay__/**",
  "**/evals/**",
  "**/evaluators/**",
  "**/*.eval.*",
  // The agent's own tests: a patch that edits them passes its checks by changing the checks.
  "test/**",
  "tests/**",
  "spec/**",
  "**/__tests__/**",
  "**/*.test.*",
  "**/*.spec.*",
  "**/test_*.py",
  "**/*_test.py",
  "**/*_test.go",
]);

/** The defaults, as documented on GuardrailConfig (the same as @moss/config's `rewriter.guardrails` defaults). */
export const DEFAULT_GUARDRAIL_CONFIG: Readonly<GuardrailConfig> = Object.freeze({
  allow: [],
  forbid: [],
  maxFiles: 10,
  maxLines: 400,
  allowBinary: false,
  secretPatterns: [],
});

export type ViolationRule =
  | "forbidden-path"
  | "not-allowed-path"
  | "too-many-files"
  | "too-many-lines"
  | "binary-file"
  | "symlink-escape"
  | "symlink"
  | "secret"
  | "submodule";

export interface Violation {
  rule: ViolationRule;
  /** The changed path concerned; absent for whole-patch limits. */
  path?: string;
  /** 1-based line in the new version of `path` (secrets only). */
  line?: number;
  /** What is wrong, for a person or a coding agent to act on. Never contains a secret. */
  detail: string;
}

export type FileStatus = "A" | "M" | "D" | "R" | "T";

export interface ChangedFile {
  /** Path after the change (for a deletion: the deleted path). */
  path: string;
  /** For a rename: the path before. */
  from?: string;
  status: FileStatus;
  added: number;
  deleted: number;
  binary: boolean;
}

export interface GuardrailReport {
  ok: boolean;
  /** The tree that was checked (the index after `git add -A`): the commit made from it must record exactly this tree. */
  tree: string;
  violations: Violation[];
  files: ChangedFile[];
  /** Added + deleted lines over all text files. */
  linesChanged: number;
}

const MODE_SYMLINK = "120000";
const MODE_GITLINK = "160000";
/** Secret findings listed per file before the rest are summarised, so one generated blob cannot flood the reason. */
const MAX_SECRETS_PER_FILE = 10;

interface RawEntry {
  srcMode: string;
  dstMode: string;
  dstSha: string;
  status: FileStatus;
  path: string;
  from?: string;
}

interface Compiled {
  cfg: GuardrailConfig;
  forbid: Array<{ glob: string; match: (p: string) => boolean }>;
  allow: ((p: string) => boolean) | undefined;
  scanner: SecretScanner;
}

/**
 * Checks the worktree's changes against `base` (a commit): stages everything (`git add -A`), then inspects the
 * index against `base`. Missing config fields take their defaults. Throws GuardrailError only when the check
 * cannot run (bad config, not a git worktree, unknown base); a patch that breaks the rules gets `ok: false`.
 */
export async function checkGuardrails(worktree: string, base: string, cfg: Partial<GuardrailConfig> = {}): Promise<GuardrailReport> {
  const c = compile(cfg);
  if (base.startsWith("-")) throw new GuardrailError(Codes.GUARDRAIL_CONFIG, `base ${JSON.stringify(base)} is not a commit`);
  const git = gitIn(worktree);
  const baseSha = (await git(["rev-parse", "--verify", "--quiet", `${base}^{commit}`]).catch(() => "")).trim();
  if (!baseSha) throw new GuardrailError(Codes.GUARDRAIL_GIT, `base ${base} is not a commit in the repository of ${worktree}`);
  await git(["add", "-A"]);
  const tree = (await git(["write-tree"])).trim();

  const diff = ["diff", "--cached", ...PLAIN_DIFF, "--find-renames", "-z"];
  const raw = parseRaw(await git([...diff, "--raw", "--no-abbrev", baseSha]));
  const numstat = parseNumstat(await git([...diff, "--numstat", baseSha]));

  const files: ChangedFile[] = raw.map((e) => {
    const n = numstat.get(key(e.from, e.path));
    const f: ChangedFile = { path: e.path, status: e.status, added: n?.added ?? 0, deleted: n?.deleted ?? 0, binary: n?.binary ?? false };
    if (e.from !== undefined) f.from = e.from;
    return f;
  });
  const linesChanged = files.reduce((sum, f) => sum + f.added + f.deleted, 0);

  const violations: Violation[] = [];
  if (files.length > c.cfg.maxFiles) {
    violations.push({ rule: "too-many-files", detail: `${files.length} files changed; the limit is ${c.cfg.maxFiles}` });
  }
  if (linesChanged > c.cfg.maxLines) {
    violations.push({ rule: "too-many-lines", detail: `${linesChanged} lines changed; the limit is ${c.cfg.maxLines}` });
  }
  for (const [i, e] of raw.entries()) {
    violations.push(...pathViolations(e, c));
    if (e.srcMode === MODE_GITLINK || e.dstMode === MODE_GITLINK) {
      violations.push({ rule: "submodule", path: e.path, detail: "submodule change; a patch cannot add, move, update or remove a submodule" });
    } else if (e.path === ".gitmodules" || e.from === ".gitmodules") {
      violations.push({ rule: "submodule", path: e.path, detail: "submodule configuration changed; a patch cannot repoint submodules" });
    }
    if (e.dstMode === MODE_SYMLINK && e.status !== "D") {
      const target = (await git(["cat-file", "blob", e.dstSha])).toString();
      violations.push(...symlinkViolations(e.path, target, c));
    }
    if (files[i]!.binary && e.status !== "D" && !c.cfg.allowBinary) {
      violations.push({ rule: "binary-file", path: e.path, detail: "binary file; binary files are not allowed (guardrails.allowBinary)" });
    }
  }
  violations.push(...(await scanAddedLines(worktree, baseSha, c.scanner)));

  return { ok: violations.length === 0, tree, violations, files, linesChanged };
}

/** One line per violation: `path:line: detail`, `path: detail`, or `detail` for whole-patch limits. */
export function guardrailsReason(r: GuardrailReport): string {
  return r.violations
    .map((v) => {
      if (v.path === undefined) return v.detail;
      return v.line === undefined ? `${v.path}: ${v.detail}` : `${v.path}:${v.line}: ${v.detail}`;
    })
    .join("\n");
}

/** Fills defaults and compiles globs and regexes, reporting every bad field at once. */
function compile(partial: Partial<GuardrailConfig>): Compiled {
  const cfg: GuardrailConfig = { ...DEFAULT_GUARDRAIL_CONFIG, ...stripUndefined(partial) };
  const problems: string[] = [];
  for (const field of ["maxFiles", "maxLines"] as const) {
    const v = cfg[field];
    if (!Number.isInteger(v) || v < 0) problems.push(`${field}: ${JSON.stringify(v)} is not a non-negative integer`);
  }
  const glob = (field: string, g: string, i: number): ((p: string) => boolean) => {
    try {
      if (typeof g !== "string" || g.length === 0) throw new Error("empty glob");
      return picomatch(g, { dot: true });
    } catch (err) {
      problems.push(`${field}[${i}]: ${JSON.stringify(g)} is not a glob (${(err as Error).message})`);
      return () => false;
    }
  };
  const forbid = [
    ...DEFAULT_FORBIDDEN.map((g) => ({ glob: g, match: picomatch(g, { dot: true }) })),
    ...cfg.forbid.flatMap((g, i) => (DEFAULT_FORBIDDEN.includes(g) ? [] : [{ glob: g, match: glob("forbid", g, i) }])),
  ];
  const allowers = cfg.allow.map((g, i) => glob("allow", g, i));
  const extra: RegExp[] = [];
  for (const [i, p] of cfg.secretPatterns.entries()) {
    try {
      extra.push(compileSecretPattern(p));
    } catch (err) {
      problems.push(`secretPatterns[${i}]: ${JSON.stringify(p)} is not a regular expression (${(err as Error).message})`);
    }
  }
  if (problems.length > 0) {
    throw new GuardrailError(Codes.GUARDRAIL_CONFIG, `invalid guardrails config (rewriter.guardrails):\n  ${problems.join("\n  ")}`);
  }
  return {
    cfg,
    forbid,
    allow: allowers.length > 0 ? (p) => allowers.some((m) => m(p)) : undefined,
    scanner: new SecretScanner(extra),
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Forbidden / allow-list rules on both sides of a rename: moving a file out of a protected place is editing it too. */
function pathViolations(e: RawEntry, c: Compiled): Violation[] {
  const out: Violation[] = [];
  const sides: Array<{ p: string; note: string }> = [{ p: e.path, note: e.from !== undefined ? `; renamed from ${e.from}` : "" }];
  if (e.from !== undefined) sides.unshift({ p: e.from, note: `; renamed to ${e.path}` });
  for (const { p, note } of sides) {
    const hit = c.forbid.find((f) => f.match(p));
    if (hit) out.push({ rule: "forbidden-path", path: p, detail: `forbidden path (matches ${hit.glob})${note}` });
    else if (c.allow && !c.allow(p)) {
      out.push({ rule: "not-allowed-path", path: p, detail: `not in the allow-list (${c.cfg.allow.join(", ")})${note}` });
    }
  }
  return out;
}

/**
 * A symlink is resolved lexically against its own directory, as git stores it: absolute targets and targets
 * climbing above the worktree escape it. One that stays inside must not lead into a path the patch could not
 * touch directly (anything that follows the link, a build step or a copy, would reach it through an innocent name).
 */
function symlinkViolations(path: string, target: string, c: Compiled): Violation[] {
  if (target.length === 0) return [{ rule: "symlink", path, detail: "symlink with an empty target" }];
  if (posix.isAbsolute(target) || /^[A-Za-z]:[\\/]/.test(target) || target.startsWith("\\\\")) {
    return [{ rule: "symlink-escape", path, detail: `symlink to ${target}: absolute targets leave the worktree` }];
  }
  const resolved = posix.normalize(posix.join(posix.dirname(path), target));
  if (resolved === ".." || resolved.startsWith("../")) {
    return [{ rule: "symlink-escape", path, detail: `symlink to ${target} resolves outside the worktree` }];
  }
  if (resolved === ".git" || resolved.startsWith(".git/") || resolved.includes("/.git/") || resolved.endsWith("/.git")) {
    return [{ rule: "symlink", path, detail: `symlink to ${target} leads into git's own data (${resolved})` }];
  }
  const hit = c.forbid.find((f) => f.match(resolved));
  if (hit) return [{ rule: "symlink", path, detail: `symlink to ${target} leads to a forbidden path (${resolved} matches ${hit.glob})` }];
  if (c.allow && resolved !== "." && !c.allow(resolved)) {
    return [{ rule: "symlink", path, detail: `symlink to ${target} leads outside the allow-list (${resolved})` }];
  }
  return [];
}

function key(from: string | undefined, path: string): string {
  return from === undefined ? path : `${from}\0${path}`;
}

/** `:srcmode dstmode srcsha dstsha status\0path\0[newpath\0]` repeated. */
function parseRaw(out: string): RawEntry[] {
  const parts = out.split("\0");
  const entries: RawEntry[] = [];
  for (let i = 0; i < parts.length; ) {
    const head = parts[i++];
    if (!head) continue;
    const [srcMode, dstMode, , dstSha, status] = head.slice(1).split(" ");
    const letter = (status ?? "M")[0] as string;
    const first = parts[i++] ?? "";
    if (letter === "R" || letter === "C") {
      const second = parts[i++] ?? "";
      // A copy (not requested, but harmless to handle) leaves its source in place: only the new path changed.
      if (letter === "R") entries.push({ srcMode: srcMode!, dstMode: dstMode!, dstSha: dstSha!, status: "R", from: first, path: second });
      else entries.push({ srcMode: "000000", dstMode: dstMode!, dstSha: dstSha!, status: "A", path: second });
    } else {
      const s: FileStatus = letter === "A" || letter === "D" || letter === "T" ? letter : "M";
      entries.push({ srcMode: srcMode!, dstMode: dstMode!, dstSha: dstSha!, status: s, path: first });
    }
  }
  return entries;
}

/** `added\tdeleted\tpath\0` or, for a rename, `added\tdeleted\t\0old\0new\0`; binary files are `-\t-`. */
function parseNumstat(out: string): Map<string, { added: number; deleted: number; binary: boolean }> {
  const parts = out.split("\0");
  const map = new Map<string, { added: number; deleted: number; binary: boolean }>();
  for (let i = 0; i < parts.length; ) {
    const head = parts[i++];
    if (!head) continue;
    const [a = "", d = "", ...rest] = head.split("\t");
    let k: string;
    if (rest.join("\t") === "") {
      const from = parts[i++] ?? "";
      const to = parts[i++] ?? "";
      k = key(from, to);
    } else {
      k = key(undefined, rest.join("\t"));
    }
    const binary = a === "-" && d === "-";
    map.set(k, { added: binary ? 0 : Number(a), deleted: binary ? 0 : Number(d), binary });
  }
  return map;
}

/**
 * Secret scan over added lines only (`-U0`): context and removed lines belong to the base, which is not this
 * patch's doing. Hunk headers give exact counts, so a content line starting `+++` is never mistaken for a file
 * header, and the line numbers are those of the new file. Streamed: a huge patch must yield a verdict, not OOM.
 */
async function scanAddedLines(worktree: string, base: string, scanner: SecretScanner): Promise<Violation[]> {
  const violations: Violation[] = [];
  let path: string | undefined;
  let inHunk = false;
  let oldLeft = 0;
  let newLeft = 0;
  let lineNo = 0;
  let perFile = 0;
  let overflow = 0;
  const flushOverflow = (): void => {
    if (overflow > 0 && path !== undefined) {
      violations.push({ rule: "secret", path, detail: `${overflow} more possible secrets in this file (not listed)` });
    }
    overflow = 0;
    perFile = 0;
  };
  const onLine = (line: string): void => {
    if (inHunk) {
      const c = line[0];
      if (c === "+" && newLeft > 0) {
        newLeft--;
        const n = lineNo++;
        if (path === undefined) return;
        for (const f of scanner.scanLine(line.slice(1))) {
          if (perFile++ >= MAX_SECRETS_PER_FILE) overflow++;
          else violations.push({ rule: "secret", path, line: n, detail: `possible secret: ${f.kind} (${f.masked}); read it from the environment or a secret store instead` });
        }
      } else if (c === "-" && oldLeft > 0) {
        oldLeft--;
      }
      // "\ No newline at end of file" and anything else inside a hunk carry no added content.
      if (oldLeft === 0 && newLeft === 0) inHunk = false;
      return;
    }
    if (line.startsWith("diff --git ")) {
      flushOverflow();
      path = undefined;
    } else if (line.startsWith("+++ ")) {
      // Git ends the header with a tab when the name has a space in it; a tab inside a name is always quoted.
      const p = line.slice(4).replace(/\t$/, "");
      path = p === "/dev/null" ? undefined : stripPrefix(unquote(p));
    } else if (line.startsWith("@@ ")) {
      const m = /^@@ -\d+(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/.exec(line);
      if (!m) return;
      oldLeft = m[1] === undefined ? 1 : Number(m[1]);
      lineNo = Number(m[2]);
      newLeft = m[3] === undefined ? 1 : Number(m[3]);
      inHunk = oldLeft + newLeft > 0;
    }
  };

  const decoder = new StringDecoder("utf8");
  let pending = "";
  const onChunk = (chunk: Buffer) => {
    pending += decoder.write(chunk);
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      onLine(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
    }
  };
  await gitIn(worktree)(["diff", "--cached", ...PLAIN_DIFF, "--find-renames", "-U0", "--src-prefix=a/", "--dst-prefix=b/", base], onChunk);
  pending += decoder.end();
  if (pending) onLine(pending);
  flushOverflow();
  return violations;
}

function stripPrefix(p: string): string {
  return p.startsWith("b/") ? p.slice(2) : p;
}

/** Git's C-style quoting of unusual paths (`"a\tb"`, octal-escaped bytes), decoded as UTF-8. */
function unquote(p: string): string {
  if (!p.startsWith('"') || !p.endsWith('"') || p.length < 2) return p;
  const bytes: number[] = [];
  const esc: Record<string, number> = { a: 7, b: 8, t: 9, n: 10, v: 11, f: 12, r: 13, '"': 34, "\\": 92 };
  const body = p.slice(1, -1);
  for (let i = 0; i < body.length; i++) {
    const ch = body[i]!;
    if (ch !== "\\") {
      bytes.push(...Buffer.from(ch, "utf8"));
      continue;
    }
    const next = body[i + 1] ?? "";
    if (/[0-7]/.test(next)) {
      bytes.push(parseInt(body.slice(i + 1, i + 4), 8));
      i += 3;
    } else {
      bytes.push(esc[next] ?? next.charCodeAt(0));
      i += 1;
    }
  }
  return Buffer.from(bytes).toString("utf8");
}

/** How every diff here reads the index: no driver the repository defines, submodule changes always shown. */
const PLAIN_DIFF = ["--no-ext-diff", "--no-textconv", "--ignore-submodules=none"];

/**
 * git in the worktree through @moss/git's hardened runner (nothing the repository, or the coding agent that writes to
 * it, configures runs here); a failure is a GuardrailError: the check could not run.
 */
function gitIn(worktree: string): (args: string[], onStdout?: (chunk: Buffer) => void) => Promise<string> {
  return async (args, onStdout) => {
    try {
      return await runGit(worktree, args, { onStdout });
    } catch (err) {
      throw new GuardrailError(Codes.GUARDRAIL_GIT, `git ${args[0]} failed in ${worktree}: ${((err as { output?: string }).output ?? (err as Error).message).trim()}`, err);
    }
  };
}
