import { spawn } from "node:child_process";

export interface CodingAgentRun {
  /** `ok`: exited 0; `failed`: non-zero exit or could not start; `timeout`: killed at the timeout. */
  outcome: "ok" | "failed" | "timeout";
  exitCode: number | null;
  /** Interleaved stdout/stderr, capped. */
  output: string;
  durationMs: number;
  reason: string;
}

const MAX_OUTPUT = 2_000_000;

/** Replaces `{worktree}`, `{evidence}` and `{prompt}` in every argument of the template. */
export function renderCommand(template: readonly string[], vars: { worktree: string; evidence: string; prompt: string }): string[] {
  return template.map((a) => a.replaceAll("{worktree}", vars.worktree).replaceAll("{evidence}", vars.evidence).replaceAll("{prompt}", vars.prompt));
}

/** After the agent exits (and its group is killed), how long its output pipes may take to drain and close. */
const DRAIN_MS = 1_000;
/** After the timeout's SIGKILL, how long to wait for the exit before giving up on it (a process stuck in the kernel). */
const KILL_GRACE_MS = 5_000;

/**
 * Runs the coding agent as an external command in the worktree: a black box with an allow-listed environment,
 * no stdin (tools that wait on it get EOF), and a hard timeout that kills its whole process group.
 *
 * The run ends when the agent itself exits, not when its output pipes close: whatever it left running in the
 * background (a language server, a watcher, `cmd &`) may hold them open for ever, and must neither turn a finished
 * run into a timeout nor outlive the run. So on exit the rest of its process group is killed, and the output is
 * read until the pipes close or a short drain grace ends.
 */
export async function runCodingAgent(argv: string[], opts: { cwd: string; env: Record<string, string>; timeoutMs: number }): Promise<CodingAgentRun> {
  const started = Date.now();
  const [cmd, ...args] = argv;
  return new Promise((resolve) => {
    let output = "";
    let timedOut = false;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    let stuck: NodeJS.Timeout | undefined;
    const timeoutReason = `coding agent killed after its ${opts.timeoutMs} ms timeout`;
    const settle = (r: Omit<CodingAgentRun, "output" | "durationMs">) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(stuck);
      resolve({ ...r, output, durationMs: Date.now() - started });
    };
    // detached: the agent leads its own process group, so one signal reaches everything it started.
    const child = spawn(cmd!, args, { cwd: opts.cwd, env: opts.env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    const killGroup = () => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch (err) {
        // ESRCH: the group is already empty.
        if ((err as NodeJS.ErrnoException).code !== "ESRCH") child.kill("SIGKILL");
      }
    };
    // Strings, not Buffers: a multi-byte character split across two chunks is decoded whole.
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    const take = (d: string) => {
      if (output.length < MAX_OUTPUT) output += d;
    };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    const pipesClosed = Promise.all([child.stdout, child.stderr].map((s) => new Promise<void>((r) => (s.closed ? r() : s.once("close", () => r())))));

    timer = setTimeout(() => {
      timedOut = true;
      killGroup();
      // SIGKILL cannot be ignored, but a process stuck in uninterruptible sleep never exits: do not wait for it.
      stuck = setTimeout(() => settle({ outcome: "timeout", exitCode: null, reason: timeoutReason }), KILL_GRACE_MS);
    }, opts.timeoutMs);

    child.once("error", (err) => {
      // Only a failed spawn ends the run here; once running, the run ends at "exit".
      if (child.pid !== undefined) return;
      settle({ outcome: "failed", exitCode: null, reason: `could not start coding agent '${cmd}': ${err.message}` });
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      killGroup();
      let drain: NodeJS.Timeout | undefined;
      const drained = new Promise<void>((r) => (drain = setTimeout(r, DRAIN_MS)));
      void Promise.race([pipesClosed, drained]).then(() => {
        clearTimeout(drain);
        // A holder outside the group (it called setsid) must not keep this process busy reading.
        child.stdout.destroy();
        child.stderr.destroy();
        if (timedOut) settle({ outcome: "timeout", exitCode: code, reason: timeoutReason });
        else if (code === 0) settle({ outcome: "ok", exitCode: 0, reason: "exited 0" });
        else settle({ outcome: "failed", exitCode: code, reason: `coding agent exited ${code ?? signal}: ${lastLine(output)}` });
      });
    });
  });
}

function lastLine(s: string): string {
  const lines = s.trim().split("\n");
  return (lines[lines.length - 1] ?? "").slice(0, 300);
}
