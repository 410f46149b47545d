import { spawn, spawnSync } from "node:child_process";
import { closeSync, openSync, readdirSync, readFileSync } from "node:fs";

/** Default cap of each captured stream (and of the interleaved output): about 2 MB of text. */
export const MAX_OUTPUT = 2_000_000;
/** After the tool exits (and its group is killed), how long its pipes may take to drain and close. */
const DRAIN_MS = 1_000;
/** After the timeout's SIGKILL, how long to wait for the exit before giving up on it (a process stuck in the kernel). */
const KILL_GRACE_MS = 5_000;

/**
 * Text capped at about `cap` characters that keeps both ends: the head says how the run started, the tail holds
 * the final result line or the error that ended it — the part a JSON-lines parser and a reader need most.
 */
export class CappedText {
  private head = "";
  private tail = "";
  private total = 0;
  private readonly headCap: number;
  private readonly tailCap: number;
  constructor(cap: number = MAX_OUTPUT) {
    this.headCap = Math.floor(cap / 2);
    this.tailCap = cap - this.headCap;
  }
  push(s: string): void {
    this.total += s.length;
    if (this.head.length < this.headCap) {
      const room = this.headCap - this.head.length;
      this.head += s.slice(0, room);
      s = s.slice(room);
    }
    if (!s) return;
    this.tail += s;
    // Trimmed in batches, not on every chunk, so a chatty tool costs amortised linear time.
    if (this.tail.length > 2 * this.tailCap) this.tail = this.tail.slice(-this.tailCap);
  }
  get truncated(): boolean {
    return this.total > this.headCap + this.tailCap;
  }
  text(): string {
    if (!this.truncated) return this.head + this.tail;
    const tail = this.tail.slice(-this.tailCap);
    return `${this.head}\n… [${this.total - this.head.length - tail.length} characters omitted] …\n${tail}`;
  }
}

export interface ProcessRun {
  /** `exited`: the process ended by itself (any code or signal); `spawn-error`: it never started; `timeout`: killed at the timeout. */
  kind: "exited" | "spawn-error" | "timeout";
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Why it could not start (`kind` = `spawn-error`). */
  error?: string;
  stdout: string;
  stderr: string;
  /** stdout and stderr interleaved as they arrived. */
  output: string;
  /** Whether stdout lost its middle to the cap. */
  stdoutTruncated: boolean;
  durationMs: number;
}

export interface ProcessOptions {
  cwd: string;
  env: Record<string, string>;
  timeoutMs: number;
  /** A file to read as stdin (the tool reads it to EOF); otherwise stdin is /dev/null, so a tool that reads stdin gets EOF at once. */
  stdinFile?: string;
  /** Cap of each captured stream; default {@link MAX_OUTPUT}. */
  maxOutput?: number;
  /** Run as this uid/gid (the sandbox's; needs root). */
  runAs?: { uid: number; gid: number };
}

/** A run's captured streams (each capped) and how it becomes a {@link ProcessRun}, timed from this call. */
export function capture(maxOutput = MAX_OUTPUT) {
  const started = Date.now();
  const stdout = new CappedText(maxOutput);
  const stderr = new CappedText(maxOutput);
  const output = new CappedText(maxOutput);
  const finish = (r: Pick<ProcessRun, "kind" | "exitCode" | "signal" | "error">): ProcessRun => ({
    ...r,
    stdout: stdout.text(),
    stderr: stderr.text(),
    output: output.text(),
    stdoutTruncated: stdout.truncated,
    durationMs: Date.now() - started,
  });
  /** Reads a run's two streams into the captures, as UTF-8 strings (a character split across chunks is decoded whole). */
  const listen = (out: NodeJS.ReadableStream, err: NodeJS.ReadableStream) => {
    out.setEncoding("utf8");
    err.setEncoding("utf8");
    out.on("data", (d: string) => {
      stdout.push(d);
      output.push(d);
    });
    err.on("data", (d: string) => {
      stderr.push(d);
      output.push(d);
    });
  };
  return { finish, listen };
}

/**
 * Runs one tool as a black box: its own process group (detached), stdin closed or a file, stdout and stderr
 * captured as UTF-8 text, capped.
 *
 * The run ends when the tool itself exits, not when its pipes close: whatever it left running in the background
 * (a language server, a watcher, `cmd &`) may hold them open for ever, and must neither turn a finished run into a
 * timeout nor outlive the run. So on exit the rest of its process group is killed and the pipes are read until
 * they close or a short drain grace ends. At the timeout the whole group is SIGKILLed.
 */
export function runProcess(argv: readonly string[], opts: ProcessOptions): Promise<ProcessRun> {
  const [cmd, ...args] = argv;
  const { finish, listen } = capture(opts.maxOutput);
  if (!cmd) return Promise.resolve(finish({ kind: "spawn-error", exitCode: null, signal: null, error: "empty command" }));

  return new Promise((resolve) => {
    let settled = false;
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    let stuck: NodeJS.Timeout | undefined;
    const settle = (r: Pick<ProcessRun, "kind" | "exitCode" | "signal" | "error">) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(stuck);
      resolve(finish(r));
    };

    let stdinFd: number | undefined;
    let child: ReturnType<typeof spawn>;
    try {
      if (opts.stdinFile !== undefined) stdinFd = openSync(opts.stdinFile, "r");
      // detached: the tool leads its own process group, so one signal reaches everything it started.
      child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: [stdinFd ?? "ignore", "pipe", "pipe"], detached: true, ...(opts.runAs ?? {}) });
    } catch (err) {
      // Thrown synchronously: an argument with a NUL byte, an unreadable stdin file, ...
      if (stdinFd !== undefined) closeSync(stdinFd);
      settle({ kind: "spawn-error", exitCode: null, signal: null, error: (err as Error).message });
      return;
    }
    // The child has its own copy of the descriptor.
    if (stdinFd !== undefined) closeSync(stdinFd);

    const killGroup = () => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch (err) {
        // ESRCH: the group is already empty.
        if ((err as NodeJS.ErrnoException).code !== "ESRCH") child.kill("SIGKILL");
      }
    };
    const out = child.stdout!;
    const err = child.stderr!;
    listen(out, err);
    const pipesClosed = Promise.all([out, err].map((s) => new Promise<void>((r) => (s.closed ? r() : s.once("close", () => r())))));

    timer = setTimeout(() => {
      timedOut = true;
      killGroup();
      // SIGKILL cannot be ignored, but a process stuck in uninterruptible sleep never exits: do not wait for it.
      stuck = setTimeout(() => settle({ kind: "timeout", exitCode: null, signal: "SIGKILL" }), KILL_GRACE_MS);
    }, opts.timeoutMs);

    child.once("error", (e) => {
      // Only a failed spawn ends the run here; once running, the run ends at "exit".
      if (child.pid !== undefined) return;
      settle({ kind: "spawn-error", exitCode: null, signal: null, error: e.message });
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      killGroup();
      // A sandboxed tool's uid runs nothing else: whatever it left behind, in any process group, goes too.
      if (opts.runAs) killAllOf(opts.runAs.uid);
      let drain: NodeJS.Timeout | undefined;
      const drained = new Promise<void>((r) => (drain = setTimeout(r, DRAIN_MS)));
      void Promise.race([pipesClosed, drained]).then(() => {
        clearTimeout(drain);
        // A holder outside the group (it called setsid) must not keep this process busy reading.
        out.destroy();
        err.destroy();
        settle({ kind: timedOut ? "timeout" : "exited", exitCode: code, signal });
      });
    });
  });
}

/**
 * Kills every process of `uid` — kill(-1) as that uid reaches exactly them — until none is left (a process forking
 * while the first signal went out is caught by the next round). For a sandbox uid, which runs nothing else.
 */
export function killAllOf(uid: number): void {
  for (let round = 0; round < 10; round++) {
    spawnSync(process.execPath, ["-e", "try { process.kill(-1, 'SIGKILL') } catch {}"], { uid, gid: uid, stdio: "ignore", timeout: 10_000 });
    if (!processesOf(uid)) return;
  }
}

/** Whether any process runs as `uid` (from /proc; a process that exits while being read is skipped). */
function processesOf(uid: number): boolean {
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      if (m && Number(m[1]) === uid) return true;
    } catch {
      // gone
    }
  }
  return false;
}

/** The last non-empty line of a text, shortened: the usual place of a CLI's error. */
export function lastLine(s: string, max = 300): string {
  const lines = s.split("\n").map((l) => l.trim()).filter(Boolean);
  return (lines[lines.length - 1] ?? "").slice(0, max);
}

/** The first non-empty line of a text, shortened. */
export function firstLine(s: string, max = 200): string {
  return (s.split("\n").map((l) => l.trim()).find(Boolean) ?? "").slice(0, max);
}
