// The one NATS harness of the tests: a real nats-server with JetStream on a free loopback port and a temp store.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadCredential, type Bus } from "@moss/bus";
import type { LoadedConfig } from "@moss/config";
import { inboxPrefix, type MessageDef } from "@moss/contracts";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, nkeyAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import type { z } from "zod";

export interface NatsServer {
  url: string;
  port: number;
  storeDir: string;
  proc: ChildProcess;
  /**
   * Stops the server: killed at once (SIGKILL, as a crash would), or with `graceful` let shut down cleanly (SIGTERM,
   * SIGKILL after 5 s). The store is removed unless `keepStore` (a server started again on it keeps its streams).
   */
  stop(opts?: { keepStore?: boolean; graceful?: boolean }): Promise<void>;
}

/** A TCP port that was free a moment ago on loopback. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts `nats-server -js` (on `port` and `storeDir` when given: a restart), or with `configFile` (e.g. what
 * `natsServerConfig` writes, for that `port`); resolves once JetStream is ready.
 */
export async function startNats(opts: { port?: number; storeDir?: string; configFile?: string } = {}): Promise<NatsServer> {
  const port = opts.port ?? (await freePort());
  const storeDir = opts.storeDir ?? mkdtempSync(join(tmpdir(), "moss-nats-"));
  // A config file says where to listen and store itself (it must name this port).
  const args = opts.configFile ? ["-c", opts.configFile] : ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", storeDir];
  const proc = spawn("nats-server", args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`nats-server did not start on ${port} within 10 s: ${stderr}`));
    }, 10_000);
    // "Server is ready" is printed once the port listens and JetStream is up.
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
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    proc,
    async stop(o = {}) {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill(o.graceful ? "SIGTERM" : "SIGKILL");
        const t = o.graceful ? setTimeout(() => proc.kill("SIGKILL"), 5_000) : undefined;
        await exited;
        clearTimeout(t);
      }
      if (!o.keepStore) rmSync(storeDir, { recursive: true, force: true });
    },
  };
}

/** A JetStream cluster of nats-servers on loopback: each node its own store, routes to the others. */
export interface NatsCluster {
  /** Every node's client URL, comma separated (what `nats.url` takes). */
  url: string;
  nodes: NatsServer[];
  stop(): Promise<void>;
}

/** Starts `n` clustered nats-servers (JetStream on each) and resolves once each is ready. */
export async function startNatsCluster(n = 3): Promise<NatsCluster> {
  const ports = await Promise.all(Array.from({ length: n }, () => freePort()));
  const routes = await Promise.all(Array.from({ length: n }, () => freePort()));
  const dir = mkdtempSync(join(tmpdir(), "moss-nats-cluster-"));
  const nodes: NatsServer[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const storeDir = join(dir, `n${i + 1}`);
      const file = join(dir, `n${i + 1}.conf`);
      writeFileSync(
        file,
        [
          `server_name: n${i + 1}`,
          `listen: "127.0.0.1:${ports[i]}"`,
          `jetstream { store_dir: ${JSON.stringify(storeDir)} }`,
          `cluster { name: moss, listen: "127.0.0.1:${routes[i]}", routes: [${routes.filter((_, j) => j !== i).map((r) => `"nats-route://127.0.0.1:${r}"`).join(", ")}] }`,
        ].join("\n"),
      );
      nodes.push(await startNats({ port: ports[i], storeDir, configFile: file }));
    }
  } catch (err) {
    for (const node of nodes) await node.stop().catch(() => undefined);
    throw err;
  }
  // JetStream answers once the cluster has elected its meta leader, a moment after the nodes are up.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const nc = await connect({ servers: nodes.map((x) => x.url) });
    try {
      await (await jetstreamManager(nc, { timeout: 2_000 })).getAccountInfo();
      break;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`the NATS cluster's JetStream did not come up within 30 s: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 250));
    } finally {
      await nc.close();
    }
  }
  return {
    url: nodes.map((x) => x.url).join(","),
    nodes,
    async stop() {
      for (const node of nodes) await node.stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
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

/**
 * A raw NATS connection as one identity of a Moss config (its nkey seed, its inbox prefix), with every asynchronous
 * permission error it is told collected in `denied` — how an attacker holding that credential would connect.
 */
export async function connectAs(config: Readonly<LoadedConfig>, identity: string): Promise<{ nc: NatsConnection; denied: string[] }> {
  const { seed } = loadCredential(config.paths.natsCredentials, identity);
  const nc = await connect({ servers: config.nats.url, name: `test-as-${identity}`, authenticator: nkeyAuthenticator(seed), inboxPrefix: inboxPrefix(identity) });
  const denied: string[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === "error") denied.push(String((s as { error?: Error }).error?.message ?? s));
  })();
  return { nc, denied };
}

/** The messages of a kind stored on its stream so far (up to `max`), parsed by its schema: what the auditor will see. */
export async function storedMessages<S extends z.ZodType>(bus: Bus, def: MessageDef<S>, max = 100): Promise<Array<z.output<S>>> {
  const c = await bus.js.consumers.get(def.stream, { filter_subjects: [def.subject] });
  const out: Array<z.output<S>> = [];
  for await (const m of await c.fetch({ max_messages: max, expires: 1_000 })) out.push(def.schema.parse(m.json()));
  return out;
}
