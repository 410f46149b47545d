import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const BIN = fileURLToPath(new URL("../../cli/bin/moss.mjs", import.meta.url));

/** The environment without any MOSS_* / OTEL_* setting of the machine running the tests. */
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("MOSS_") && !k.startsWith("OTEL_")));

export interface MossRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `moss ...args` as a user does, with a clean environment plus `env`; killed after 30 s so a command that
 * unexpectedly starts a stack cannot hang the suite.
 */
export function runMoss(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<MossRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: opts.cwd, env: { ...cleanEnv, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
