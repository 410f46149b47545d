import { execFile, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { FailureEvent } from "@moss/contracts";
import { freePort } from "../../helpers/nats";

export const run = promisify(execFile);
export const MONOREPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const EXAMPLE = join(MONOREPO, "examples/agent");
const ESBUILD = join(MONOREPO, "node_modules/.bin/esbuild");

/** The exec-form JSON array of the Dockerfile's `RUN [...]` / `CMD [...]` line. */
export async function dockerfileExec(repoDir: string, instruction: "RUN" | "CMD"): Promise<string[]> {
  const text = await readFile(join(repoDir, "Dockerfile"), "utf8");
  const line = text.split("\n").find((l) => l.startsWith(`${instruction} [`));
  if (!line) throw new Error(`no exec-form ${instruction} in the Dockerfile`);
  return JSON.parse(line.slice(instruction.length + 1)) as string[];
}

/**
 * Build the agent exactly as its Dockerfile does (same esbuild arguments, cwd = the context root, which
 * the Dockerfile's WORKDIR mirrors) with the monorepo's esbuild instead of /usr/bin/esbuild and `outDir`
 * instead of /app. Returns the command to start it, as the Dockerfile's CMD says.
 */
export async function buildLikeDockerfile(repoDir: string, outDir: string): Promise<string[]> {
  const args = await dockerfileExec(repoDir, "RUN");
  const cmd = await dockerfileExec(repoDir, "CMD");
  const main = join(outDir, "main.mjs");
  const esbuildArgs = args.slice(1).map((a) => (a === "--outfile=/app/main.mjs" ? `--outfile=${main}` : a));
  await mkdir(outDir, { recursive: true });
  await run(ESBUILD, [...esbuildArgs, "--log-level=warning"], { cwd: repoDir });
  return [process.execPath, ...cmd.slice(1).map((a) => (a === "/app/main.mjs" ? main : a))];
}

export interface RunningAgent {
  url: string;
  output: () => string;
  stop(): Promise<void>;
}

/** Start the built agent as a child process; resolves once it listens. */
export async function startAgent(command: string[], env: Record<string, string>): Promise<RunningAgent> {
  const port = await freePort();
  const [bin, ...args] = command as [string, ...string[]];
  const child = spawn(bin, args, { env: { PATH: process.env.PATH ?? "/usr/bin", ...env, PORT: String(port) }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const deadline = Date.now() + 10_000;
  while (!out.includes("listening on")) {
    if (child.exitCode !== null) throw new Error(`agent exited with ${child.exitCode}:\n${out}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`agent did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    output: () => out,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

export async function chat(url: string, message: string, session = "s1"): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${url}/v1/chat`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ session, message }) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

export async function readFailures(file: string): Promise<unknown[]> {
  try {
    return (await readFile(file, "utf8"))
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as unknown);
  } catch {
    return [];
  }
}

/** The evidence file the rewriter hands a coding agent. */
export async function writeEvidence(dir: string, failures: FailureEvent[], extra: Record<string, unknown> = {}): Promise<string> {
  const file = join(dir, `evidence-${Math.random().toString(36).slice(2)}.json`);
  const evidence = {
    batchId: "b-demo-1",
    agent: "demo",
    attempt: 1,
    fingerprint: "demo:calculator:ToolInputError",
    failures,
    previous: [],
    prompt: "The agent answers 500 to these requests. Change its source so that they succeed.",
    ...extra,
  };
  await writeFile(file, JSON.stringify(evidence, null, 2));
  return file;
}

/**
 * Replay one failure the way the replayer does, minus the container: restore its state snapshot
 * into a fresh directory, start `command` with the failure's env and a replay-failure file, send the
 * same request, and report what happened.
 */
export async function replay(
  command: string[],
  event: FailureEvent,
  work: string,
): Promise<{ status: number; body: string; reported: unknown[]; output: string }> {
  const dir = await mkdtemp(join(work, "replay-"));
  const stateDir = join(dir, "state");
  await mkdir(stateDir);
  if (event.snapshot?.inlineBase64) {
    await writeFile(join(dir, "snapshot.tar"), Buffer.from(event.snapshot.inlineBase64, "base64"));
    await run("tar", ["-xf", join(dir, "snapshot.tar"), "-C", stateDir]);
  }
  const failureFile = join(dir, "failures.jsonl");
  const agent = await startAgent(command, {
    ...event.env,
    STATE_DIR: stateDir,
    MOSS_AGENT_VERSION: event.version,
    MOSS_REPLAY_FAILURE_FILE: failureFile,
    AGENT_NAME: event.agent,
  });
  try {
    const headers = Object.fromEntries(Object.entries(event.request!.headers).filter(([k]) => !["host", "content-length", "connection"].includes(k)));
    const res = await fetch(`${agent.url}${event.request!.path}`, {
      method: event.request!.method,
      headers,
      ...(event.request!.body !== undefined ? { body: event.request!.body } : {}),
    });
    const body = await res.text();
    await agent.stop();
    return { status: res.status, body, reported: await readFailures(failureFile), output: agent.output() };
  } finally {
    await agent.stop();
  }
}

export const tempDir = (prefix: string) => mkdtemp(join(tmpdir(), prefix));
