import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
export { freePort } from "@moss/cli";
import { freePort } from "@moss/cli";

export interface NatsServer {
  url: string;
  port: number;
  storeDir: string;
  proc: ChildProcess;
  /** Kills the server (SIGKILL) and removes its store unless keepStore. */
  stop(opts?: { keepStore?: boolean }): Promise<void>;
}


/** A real nats-server with JetStream on a free loopback port and a temp store dir. */
export async function startNats(opts: { port?: number; storeDir?: string } = {}): Promise<NatsServer> {
  const port = opts.port ?? (await freePort());
  const storeDir = opts.storeDir ?? mkdtempSync(join(tmpdir(), "moss-nats-"));
  const proc = spawn("nats-server", ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", storeDir], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`nats-server did not start on ${port}: ${stderr}`)), 10_000);
    proc.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
      if (stderr.includes("Server is ready")) {
        clearTimeout(t);
        resolve();
      }
    });
    proc.once("exit", (code) => {
      clearTimeout(t);
      reject(new Error(`nats-server exited (${code}): ${stderr}`));
    });
    proc.once("error", reject);
  });
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    proc,
    async stop(o = {}) {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGKILL");
        await exited;
      }
      if (!o.keepStore) rmSync(storeDir, { recursive: true, force: true });
    },
  };
}

/** Polls `check` until it returns a truthy value or the timeout passes. */
export async function waitFor<T>(check: () => T | Promise<T>, timeoutMs = 10_000, what = "condition"): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
