import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { hostname } from "node:os";
import { fileURLToPath } from "node:url";
import { createBus, ensureCredentials, identities, loadCredential, natsServerConfig, type Bus, type BusCredential } from "@moss/bus";
import type { LoadedConfig } from "@moss/config";
import { ADMIN, Buckets, ServiceStatus } from "@moss/contracts";
import { relayedPorts, startHostRelay } from "@moss/lifecycle";
import { ensureOperator } from "@moss/operator-api";
import { createRuntime } from "@moss/runtime";
import { createLogger } from "@moss/telemetry";

/** The services, in start order: the five stages' and the operator API. */
export const SERVICES = ["auditor", "curator", "rewriter", "replayer", "promoter", "operator-api", "gateway"] as const;
export type ServiceName = (typeof SERVICES)[number];

export interface Stack {
  natsUrl: string;
  /** True when this stack started nats-server itself (and will stop it). */
  ownsNats: boolean;
  children: Map<string, ChildProcess>;
  /** SIGTERM to every service (ordered shutdown inside each), then nats-server. */
  stop(): Promise<void>;
}

/** First wait before a service that died is started again; doubled each time, up to MAX_BACKOFF_MS. */
const FIRST_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 30_000;
/** A service that ran this long before dying starts again with the first backoff. */
const STABLE_MS = 60_000;

export interface StackOptions {
  config: Readonly<LoadedConfig>;
  /** Path of the config file the services load (MOSS_CONFIG). */
  configFile: string;
  /** Extra env for the services (e.g. OTEL_BSP_SCHEDULE_DELAY in tests). */
  env?: Record<string, string>;
  /** Where service log lines go (prefixed with the service name). */
  onLog?: (service: string, line: string) => void;
  /** Which services to start (default all five); tests and benches start one or two. */
  services?: readonly ServiceName[];
  /** Processes per service (default 1); the second one of the curator is named "curator#2". */
  replicas?: number;
  /** What the supervisor says (a service died, is back...). Default: onLog("moss", line). */
  onEvent?: (line: string) => void;
  /** Who becomes the first operator when nobody may act yet. Default $USER, else "operator". */
  operator?: string;
}

/**
 * A 32 MiB young generation for the services that take failure storms message by message (fewer scavenges). Not for
 * the auditor: it would grow its resident memory by a young generation's worth as the log grows, for no throughput
 * that matters there.
 */
const YOUNG_GENERATION: Partial<Record<ServiceName, string[]>> = {
  curator: ["--max-semi-space-size=32"],
  rewriter: ["--max-semi-space-size=32"],
  replayer: ["--max-semi-space-size=32"],
  promoter: ["--max-semi-space-size=32"],
};

const servicesDir = fileURLToPath(new URL("../../services/", import.meta.url));
const tsxLoader = import.meta.resolve("tsx");

/**
 * `moss up`: nats-server (started here if nothing answers at the configured loopback URL, with the config and the
 * credentials written from the grants), streams, consumers and buckets provisioned as admin, then the services as
 * child processes, each connecting as its own identity. Resolves once every service said it started.
 */
export async function startStack(opts: StackOptions): Promise<Stack> {
  const cfg = opts.config;
  const url = new URL(cfg.nats.url.split(",")[0]!);
  const port = Number(url.port || 4222);
  const children = new Map<string, ChildProcess>();
  const say = opts.onEvent ?? ((line: string) => opts.onLog?.("moss", line));
  // Moss's data (keys, credentials, blobs, repositories, worktrees) is its own: no other user, the sandboxed coding
  // agent included, may enter it.
  mkdirSync(cfg.paths.dataDir, { recursive: true, mode: 0o700 });
  chmodSync(cfg.paths.dataDir, 0o700);
  const auth = cfg.nats.auth === "nkey";
  // Every identity has a credential before anything connects; existing ones are kept.
  const keys = auth ? ensureCredentials(cfg.paths.natsCredentials, identities(Object.keys(cfg.agents))) : new Map<string, string>();
  const admin: BusCredential | undefined = auth ? loadCredential(cfg.paths.natsCredentials, ADMIN) : undefined;
  // nats-server names an identity by its public key: its log lines say which identity that is.
  const named = [...keys].map(([id, key]) => [key, id] as const);
  const natsLog = (line: string) => {
    for (const [key, id] of named) if (line.includes(key)) line = line.replace(key, `${key} (${id})`);
    opts.onLog?.("nats", line);
  };
  let nats: ChildProcess | undefined;
  if (!(await reachable(url.hostname, port))) {
    if (!["127.0.0.1", "localhost", "::1"].includes(url.hostname)) {
      throw new Error(`NATS at ${cfg.nats.url} is not reachable, and Moss only starts a local nats-server for a loopback URL. Start NATS there or point MOSS_NATS_URL at a running one.`);
    }
    mkdirSync(cfg.paths.natsStore, { recursive: true });
    // Through a shell that stops nats-server when its stdin (this process) goes away, however this process ends.
    // (A background list's stdin would be /dev/null: the pipe is handed to it as fd 3.)
    const watched = 'exec 3<&0; nats-server "$@" </dev/null & pid=$!; trap \'kill $pid; wait $pid\' TERM INT; (cat <&3 >/dev/null; kill $pid 2>/dev/null) & wait $pid';
    let serverArgs = ["-js", "-a", url.hostname, "-p", String(port), "-sd", cfg.paths.natsStore];
    if (auth) {
      // Rewritten at every start from the grants: a new agent, or a grant that changed, counts at once.
      writeFileSync(cfg.paths.natsConfig, natsServerConfig({ host: url.hostname, port, storeDir: cfg.paths.natsStore, users: keys }), { mode: 0o600 });
      chmodSync(cfg.paths.natsConfig, 0o600);
      serverArgs = ["-c", cfg.paths.natsConfig];
    }
    nats = await startProcess("nats", "/bin/sh", ["-c", watched, "nats-server", ...serverArgs], {}, /Server is ready/, (_n, line) => natsLog(line));
    children.set("nats", nats);
  } else if (auth) {
    say(`using the nats-server already at ${cfg.nats.url}${auth ? `; its users must be the ones in ${cfg.paths.natsCredentials} (\`moss credentials\` prints them)` : ""}`);
  }
  let stopping = false;
  let relay: { close(): Promise<void> } | undefined;
  const timers = new Set<NodeJS.Timeout>();
  /** moss up's own bus (admin): it provisions, then reports the services. Connected before any service starts. */
  let status: Bus | undefined;
  const report = async (name: string, s: Omit<ServiceStatus, "name" | "host">) => {
    if (!status) return;
    try {
      const kv = await status.kv(Buckets.services);
      await kv.put(name.replace("#", "_"), JSON.stringify(ServiceStatus.parse({ name, host: hostname(), ...s })));
    } catch {
      // What a service does is said on the terminal too; the bucket is for `moss status`.
    }
  };
  const stop = async () => {
    stopping = true;
    for (const t of timers) clearTimeout(t);
    const order = [...children.entries()].filter(([n]) => n !== "nats").reverse();
    await Promise.all(order.map(async ([name, c]) => {
      await terminate(c, 20_000);
      await report(name, { state: "stopped", restarts: 0, since: new Date().toISOString() });
    }));
    await status?.close().catch(() => undefined);
    await relay?.close();
    if (nats) await terminate(nats, 5_000);
  };

  /** Starts a service; when it dies (not stopped by us), starts it again with backoff, and says so. */
  const run = async (s: ServiceName, name: string) => {
    const args = [...serviceNodeArgs(), ...(YOUNG_GENERATION[s] ?? []), "--import", tsxLoader, `${servicesDir}${s}/src/main.ts`];
    const env = { ...opts.env, MOSS_CONFIG: opts.configFile, MOSS_SUPERVISED: "1" };
    let restarts = 0;
    let backoff = FIRST_BACKOFF_MS;
    const watch = (child: ChildProcess, startedAt: number) => {
      child.once("exit", (code, signal) => {
        if (stopping) return;
        if (Date.now() - startedAt >= STABLE_MS) backoff = FIRST_BACKOFF_MS;
        const lastExit = { code, signal, at: new Date().toISOString() };
        say(`${name} died (${signal ?? `exit ${code}`}); starting it again in ${backoff} ms`);
        void report(name, { state: "restarting", restarts, lastExit, since: lastExit.at });
        const again = async () => {
          if (stopping) return;
          try {
            const next = await startProcess(name, process.execPath, args, env, /"msg":"started"/, opts.onLog);
            restarts++;
            backoff = FIRST_BACKOFF_MS;
            children.set(name, next);
            say(`${name} is running again (pid ${next.pid}, restart ${restarts})`);
            void report(name, { state: "running", pid: next.pid, restarts, lastExit, since: new Date().toISOString() });
            watch(next, Date.now());
          } catch (err) {
            backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
            say(`${name} did not start again (${(err as Error).message.split("\n")[0]}); next try in ${backoff} ms`);
            const t = setTimeout(() => void again(), backoff);
            timers.add(t);
          }
        };
        const t = setTimeout(() => void again(), backoff);
        timers.add(t);
        backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
      });
    };
    const child = await startProcess(name, process.execPath, args, env, /"msg":"started"/, opts.onLog);
    children.set(name, child);
    void report(name, { state: "running", pid: child.pid, restarts: 0, since: new Date().toISOString() });
    watch(child, Date.now());
  };

  try {
    // Streams, consumers and buckets exist before any service starts: services may only read theirs.
    // What the bus says goes where moss up's own lines go.
    const logger = createLogger("moss-up", { write: (line) => opts.onLog?.("moss", line) });
    status = await createBus({ url: cfg.nats.url, name: "moss-up", credential: admin, logger, replicas: cfg.nats.replicas });
    await status.provision();
    const asked = opts.services ?? SERVICES;
    if (asked.includes("operator-api")) {
      const who = opts.operator ?? process.env["USER"] ?? "operator";
      if (ensureOperator(cfg.paths.operators, cfg.paths.operatorToken, who).created) say(`${who} is the first operator (token in ${cfg.paths.operatorToken}; more with \`moss operator add NAME\`)`);
    }
    // Agents behind the gateway run on the live network: the loopback services their env names are relayed to it.
    const ports = asked.includes("gateway") ? relayedPorts(cfg) : [];
    if (ports.length) {
      const net = await createRuntime().liveNetwork();
      relay = await startHostRelay(net.hostIp, ports);
      say(`live network ${net.name}: ports ${ports.join(", ")} of this host's loopback relayed to its agents as moss-host (${net.hostIp})`);
    }
    // All at once: nothing waits on another service. One gateway per host: it owns the agents' ports.
    const names = asked.flatMap((s) => Array.from({ length: s === "gateway" ? 1 : (opts.replicas ?? 1) }, (_, i) => ({ s, name: i === 0 ? s : `${s}#${i + 1}` })));
    const started = await Promise.allSettled(names.map(({ s, name }) => run(s, name)));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
  } catch (err) {
    await stop();
    throw err;
  }
  return { natsUrl: cfg.nats.url, ownsNats: Boolean(nats), children, stop };
}

/**
 * Extra node flags for every service, from `MOSS_SERVICE_NODE_ARGS` (space-separated), e.g.
 * `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile a storm: NODE_OPTIONS refuses the profiling flags.
 */
function serviceNodeArgs(): string[] {
  return (process.env.MOSS_SERVICE_NODE_ARGS ?? "").split(/\s+/).filter(Boolean);
}

async function startProcess(
  name: string,
  cmd: string,
  args: string[],
  env: Record<string, string>,
  ready: RegExp,
  onLog?: (service: string, line: string) => void,
): Promise<ChildProcess> {
  // stdin is a pipe nobody writes to: when this process ends, however it ends, the child sees it close.
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
  let tail = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start within 30 s; last output:\n${tail}`)), 30_000);
    const onLine = (line: string) => {
      tail = (tail + line + "\n").slice(-4_000);
      onLog?.(name, line);
      if (ready.test(line)) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    for (const stream of [child.stdout!, child.stderr!]) {
      let buf = "";
      stream.on("data", (d: Buffer) => {
        buf += d.toString();
        let i: number;
        while ((i = buf.indexOf("\n")) >= 0) {
          onLine(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      });
    }
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${name} (${cmd}): ${err.message}${name === "nats" ? ". Install nats-server >= 2.10 (npm run setup does it on Debian/Ubuntu)." : ""}`));
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      const hint = name === "nats" && code === 127 ? " (nats-server is not installed: npm run setup does it on Debian/Ubuntu)" : "";
      reject(new Error(`${name} exited with ${code} while starting${hint}; last output:\n${tail}`));
    });
  });
}

async function terminate(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
  child.stdin?.destroy();
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

/** Whether something accepts TCP connections at host:port. */
export function reachable(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
  });
}
