import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { fileURLToPath } from "node:url";
import type { LoadedConfig } from "@moss/config";

/** The five services, in start order. */
export const SERVICES = ["auditor", "curator", "rewriter", "replayer", "promoter"] as const;
export type ServiceName = (typeof SERVICES)[number];

export interface Stack {
  natsUrl: string;
  /** True when this stack started nats-server itself (and will stop it). */
  ownsNats: boolean;
  children: Map<string, ChildProcess>;
  /** SIGTERM to every service (ordered shutdown inside each), then nats-server. */
  stop(): Promise<void>;
}

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
 * `moss up`: nats-server (started here if nothing answers at the configured loopback URL) and the five services
 * as child processes, each with its own durable consumers. Resolves once every service said it started.
 */
export async function startStack(opts: StackOptions): Promise<Stack> {
  const url = new URL(opts.config.nats.url.split(",")[0]!);
  const port = Number(url.port || 4222);
  const children = new Map<string, ChildProcess>();
  let nats: ChildProcess | undefined;
  if (!(await reachable(url.hostname, port))) {
    if (!["127.0.0.1", "localhost", "::1"].includes(url.hostname)) {
      throw new Error(`NATS at ${opts.config.nats.url} is not reachable, and Moss only starts a local nats-server for a loopback URL. Start NATS there or point MOSS_NATS_URL at a running one.`);
    }
    mkdirSync(opts.config.paths.natsStore, { recursive: true });
    nats = await startProcess("nats", "nats-server", ["-js", "-a", url.hostname, "-p", String(port), "-sd", opts.config.paths.natsStore], {}, /Server is ready/, opts.onLog);
    children.set("nats", nats);
  }
  const stop = async () => {
    const order = [...children.entries()].filter(([n]) => n !== "nats").reverse();
    await Promise.all(order.map(([, c]) => terminate(c, 20_000)));
    if (nats) await terminate(nats, 5_000);
  };
  try {
    // All at once: each provisions the streams it needs idempotently, and nothing waits on another service.
    const names = (opts.services ?? SERVICES).flatMap((s) => Array.from({ length: opts.replicas ?? 1 }, (_, i) => ({ s, name: i === 0 ? s : `${s}#${i + 1}` })));
    const started = await Promise.allSettled(
      names.map(async ({ s, name }) => {
        const args = [...serviceNodeArgs(), ...(YOUNG_GENERATION[s] ?? []), "--import", tsxLoader, `${servicesDir}${s}/src/main.ts`];
        children.set(name, await startProcess(name, process.execPath, args, { ...opts.env, MOSS_CONFIG: opts.configFile }, /"msg":"started"/, opts.onLog));
      }),
    );
    const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
  } catch (err) {
    await stop();
    throw err;
  }
  return { natsUrl: opts.config.nats.url, ownsNats: Boolean(nats), children, stop };
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
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
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
      reject(new Error(`cannot start ${name} (${cmd}): ${err.message}${cmd === "nats-server" ? ". Install nats-server >= 2.10 (npm run setup does it on Debian/Ubuntu)." : ""}`));
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} while starting; last output:\n${tail}`));
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
