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

/**
 * Runs the coding agent as an external command in the worktree: a black box with an allow-listed environment,
 * no stdin (tools that wait on it get EOF), and a hard timeout that kills its whole process group.
 */
export async function runCodingAgent(argv: string[], opts: { cwd: string; env: Record<string, string>; timeoutMs: number }): Promise<CodingAgentRun> {
  const started = Date.now();
  const [cmd, ...args] = argv;
  return new Promise((resolve) => {
    let output = "";
    let timedOut = false;
    const child = spawn(cmd!, args, { cwd: opts.cwd, env: opts.env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    const take = (d: Buffer) => {
      if (output.length < MAX_OUTPUT) output += d.toString();
    };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
    }, opts.timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      resolve({ outcome: "failed", exitCode: null, output, durationMs: Date.now() - started, reason: `could not start coding agent '${cmd}': ${err.message}` });
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      const durationMs = Date.now() - started;
      if (timedOut) resolve({ outcome: "timeout", exitCode: code, output, durationMs, reason: `coding agent killed after its ${opts.timeoutMs} ms timeout` });
      else if (code === 0) resolve({ outcome: "ok", exitCode: 0, output, durationMs, reason: "exited 0" });
      else resolve({ outcome: "failed", exitCode: code, output, durationMs, reason: `coding agent exited ${code ?? signal}: ${lastLine(output)}` });
    });
  });
}

function lastLine(s: string): string {
  const lines = s.trim().split("\n");
  return (lines[lines.length - 1] ?? "").slice(0, 300);
}
