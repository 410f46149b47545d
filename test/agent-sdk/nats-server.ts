import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
export { freePort } from "@moss/cli";
import { freePort } from "@moss/cli";


export interface NatsServer {
  port: number;
  url: string;
  storeDir: string;
  /** Stop the server (SIGTERM, then SIGKILL) — the store dir is kept so a restart keeps the streams. */
  stop(): Promise<void>;
  /** Stop and remove the store dir. */
  dispose(): Promise<void>;
}

/** Start `nats-server -js` on `port` (default: a free one) with a temp store dir; resolves once it accepts connections. */
export async function startNats(opts: { port?: number; storeDir?: string } = {}): Promise<NatsServer> {
  const port = opts.port ?? (await freePort());
  const storeDir = opts.storeDir ?? (await mkdtemp(join(tmpdir(), "moss-nats-")));
  const child = spawn("nats-server", ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", storeDir], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  await waitForPort(port, child, () => stderr);
  const stop = async () => stopChild(child, exited);
  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    storeDir,
    stop,
    dispose: async () => {
      await stop();
      await rm(storeDir, { recursive: true, force: true });
    },
  };
}

async function waitForPort(port: number, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`nats-server exited with ${child.exitCode}: ${stderr()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = tcpConnect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    // The port answers before JetStream is up; "Server is ready" is printed after both.
    if (ok && stderr().includes("Server is ready")) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGKILL");
  throw new Error(`nats-server did not start on ${port} within 10 s: ${stderr()}`);
}

async function stopChild(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(t);
}
