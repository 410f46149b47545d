import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { simpleGit, type SimpleGit } from "simple-git";
import { GitCommandError, UnsafeRepositoryError } from "./errors";

/** A git command that produces no output for this long is killed (a hung signing prompt, a stuck lock). */
const IDLE_TIMEOUT_MS = 60_000;

/**
 * Settings no repository may decide for Moss, passed with `-c` (which wins over every config file) on every call.
 * A coding agent runs in a worktree of the agent's repository and can write that repository's config and hooks; none
 * of what it writes may run inside Moss, whose own git calls (status, add, diff, commit, worktree add...) happen with
 * Moss's signing key at hand:
 * - no hooks (post-checkout, pre-commit, reference-transaction...), no fsmonitor program, no pager, no editor, no
 *   external diff, no credential helper, no transport at all (Moss never fetches or pushes);
 * - the verifier of signatures is the stock ssh-keygen, and signatures are never shown in plain logs;
 * - output this package parses (paths, prefixes, untracked files, submodules) has one fixed shape.
 */
const HARDENING: readonly string[] = [
  "core.fsmonitor=false",
  "core.hooksPath=/dev/null",
  "core.pager=cat",
  "core.editor=false",
  "sequence.editor=false",
  "core.askPass=",
  "credential.helper=",
  "diff.external=",
  "protocol.allow=never",
  "submodule.recurse=false",
  "gc.auto=0",
  "maintenance.auto=false",
  "gpg.program=gpg",
  "gpg.x509.program=gpgsm",
  "gpg.ssh.program=ssh-keygen",
  "log.showSignature=false",
  "color.ui=false",
  "core.quotePath=false",
  "diff.noprefix=false",
  "diff.mnemonicPrefix=false",
  "diff.relative=false",
  "diff.ignoreSubmodules=none",
  "status.showUntrackedFiles=all",
];

/**
 * Program-valued settings a repository's own config (or a file it includes) can define under a name of its choosing:
 * a clean/smudge filter, a diff driver, a merge driver, a trailer command. Each one found in the repository's config is
 * switched off for the call. The operator's own (system, global) drivers are kept: git-lfs and the like live there.
 */
const DRIVER_KEYS = /^(filter|diff|merge|trailer)\.(.+)\.(clean|smudge|process|command|textconv|driver|cmd)$/;

/** Inherited variables that name a program or a config file for git to use: none of them reaches git. */
const UNTRUSTED_ENV = new Set(["EDITOR", "VISUAL", "PAGER", "PREFIX", "SSH_ASKPASS"]);
/**
 * What every git call runs with instead: never prompting, no pager, no editor, no optional index writes, and no
 * replace refs (a `refs/replace/*` written into the repository would let a commit stand for another tree).
 */
const OWN_ENV = { GIT_TERMINAL_PROMPT: "0", GIT_PAGER: "cat", GIT_EDITOR: "false", GIT_OPTIONAL_LOCKS: "0", GIT_NO_REPLACE_OBJECTS: "1" } as const;

/**
 * The environment of every git call: the parent's, without any `GIT_*` variable (an inherited GIT_DIR, GIT_INDEX_FILE
 * or GIT_EXTERNAL_DIFF would point git elsewhere or run something) or other program-naming one, plus OWN_ENV, in the
 * C locale (the messages this package reads are git's English ones).
 */
function gitEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.toUpperCase().startsWith("GIT_") && !UNTRUSTED_ENV.has(k.toUpperCase())) env[k] = v;
  return { ...env, ...OWN_ENV, LC_ALL: "C" };
}

export interface GitRunOptions {
  /** Extra `-c key=value` for this call (after the hardening, so a caller may pin a value, never loosen one). */
  config?: readonly string[];
  /** Called with stdout as it arrives (a patch too large to hold twice is scanned while git writes it). */
  onStdout?: (chunk: Buffer) => void;
}

function client(cwd: string, config: readonly string[], onStdout?: (chunk: Buffer) => void): SimpleGit {
  let git: SimpleGit;
  try {
    git = simpleGit({
      baseDir: cwd,
      config: [...config],
      trimmed: false,
      timeout: { block: IDLE_TIMEOUT_MS },
      allowEnvironment: Object.keys(OWN_ENV),
      // simple-git's guards refuse `-c` values that point git at programs; ours only ever switch them off or pin
      // the stock ones, and no caller input reaches them.
      unsafe: {
        allowUnsafeHooksPath: true,
        allowUnsafeGpgProgram: true,
        allowUnsafeFsMonitor: true,
        allowUnsafePager: true,
        allowUnsafeEditor: true,
        allowUnsafeAskPass: true,
        allowUnsafeCredentialHelper: true,
        allowUnsafeDiffExternal: true,
        allowUnsafeDiffTextConv: true,
        allowUnsafeFilter: true,
        allowUnsafeMergeDriver: true,
        allowUnsafeProtocolOverride: true,
        allowUnsafeConfigPaths: true,
        allowUnsafeCommandBinaries: true,
      },
      errors(error, result) {
        if (error) return error;
        if (result.exitCode === 0) return undefined;
        return Buffer.concat([...result.stdErr, ...result.stdOut, Buffer.from(`(git exited with code ${result.exitCode})`)]);
      },
    } as Parameters<typeof simpleGit>[0]);
  } catch (cause) {
    // simple-git refuses a baseDir that does not exist.
    throw new GitCommandError([], cwd, `${(cause as Error).message}: ${cwd}`, { cause });
  }
  git.env(gitEnv());
  if (onStdout) git.outputHandler((_cmd, stdout) => stdout.on("data", (c: Buffer) => onStdout(c)));
  return git;
}

/**
 * What the repository's own config (local and worktree scopes, and the files they include) asks git to run, switched
 * off: `-c` settings for this call. A repository that moves its work tree elsewhere (`core.worktree`) is refused: Moss
 * cleans and resets work trees, and must know which directory that is.
 */
async function repoOverrides(cwd: string): Promise<string[]> {
  let listing: string;
  try {
    listing = await client(cwd, HARDENING).raw(["config", "--list", "--show-scope", "-z"]);
  } catch {
    return []; // not a repository (yet): there is no repository config to distrust
  }
  const out: string[] = [];
  // `-z --show-scope`: scope NUL key LF value NUL, repeated.
  const parts = listing.split("\0");
  for (let i = 0; i + 1 < parts.length; i += 2) {
    const scope = parts[i];
    if (scope !== "local" && scope !== "worktree") continue;
    const entry = parts[i + 1]!;
    const nl = entry.indexOf("\n");
    const key = (nl < 0 ? entry : entry.slice(0, nl)).toLowerCase();
    if (key === "core.worktree") throw new UnsafeRepositoryError(cwd, "core.worktree", "it points git at another work tree");
    const m = DRIVER_KEYS.exec(key);
    if (m) {
      out.push(`${key}=`);
      if (m[1] === "filter") out.push(`filter.${m[2]}.required=false`);
    }
  }
  return out;
}

/**
 * Runs `git <args>` in `cwd`, hardened (see HARDENING, DRIVER_KEYS and gitEnv), and returns stdout untrimmed. The one
 * way Moss runs git.
 *
 * Any non-zero exit rejects with a GitCommandError carrying stderr + stdout: simple-git's `raw()` on its own resolves
 * when git exits non-zero with an empty stderr (`git commit` with nothing staged, `git verify-commit` on an unsigned
 * commit). `-c` values only live for this process; no config file is written.
 */
export async function runGit(cwd: string, args: readonly string[], opts: GitRunOptions = {}): Promise<string> {
  const config = [...HARDENING, ...(await repoOverrides(cwd)), ...(opts.config ?? [])];
  try {
    return await client(cwd, config, opts.onStdout).raw([...args]);
  } catch (cause) {
    if (cause instanceof GitCommandError) throw cause;
    throw new GitCommandError(args, cwd, (cause as Error).message, { cause });
  }
}

/** `runGit` for a command that writes binary output (`git archive`): git writes it to a private file, read back whole. */
export async function runGitToBuffer(cwd: string, args: readonly string[], outputOption: (file: string) => string): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), "moss-git-"));
  const file = join(dir, "out");
  try {
    await runGit(cwd, [...args.slice(0, 1), outputOption(file), ...args.slice(1)]);
    return await readFile(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
