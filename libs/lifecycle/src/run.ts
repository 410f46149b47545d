import { createBlobStore, type BlobStore } from "@moss/blob";
import { createBus, identityOf, loadCredential, type Bus, type BusCredential, type Consumption } from "@moss/bus";
import { agentIdentity, Grants, type ServiceIdentity } from "@moss/contracts";
import { knownAgent, loadConfig, type LoadedConfig } from "@moss/config";
import { createLogger, startTelemetry, type Logger, type LogLevel } from "@moss/telemetry";
import type { FastifyInstance } from "fastify";
import type { Registry } from "prom-client";
import { createOps, opsPort } from "./ops";
import { onLiveNetwork } from "./live-net";

/** What every service gets, wired in the same order everywhere. */
export interface ServiceDeps {
  config: Readonly<LoadedConfig>;
  log: Logger;
  bus: Bus;
  blob: BlobStore;
  /** The service's Prometheus registry (its ops listener's `/metrics`), for metrics of its own. */
  metrics: Registry;
}

/** What a service started: its consumers, optionally an HTTP app to listen, and its own clean-up. */
export interface ServiceParts {
  consumers: Consumption[];
  http?: { app: FastifyInstance; host: string; port: number };
  /** Runs after consumers stopped and HTTP closed, before NATS drains (timers, runtimes...). */
  onStop?: () => Promise<void>;
}

export interface RunServiceOptions {
  name: string;
  env: NodeJS.ProcessEnv;
  /** Creates consumers and HTTP from the wired dependencies. */
  start: (deps: ServiceDeps) => Promise<ServiceParts>;
  /** In-flight handlers get this long after a stop signal. Default 15 s. */
  graceMs?: number;
  /** Hard exit if shutdown takes longer than this. Default 30 s. */
  forceMs?: number;
}

/**
 * Wires a service: config → telemetry → connections → consumers → HTTP → ordered shutdown on SIGINT/SIGTERM
 * (stop pulling → close HTTP → wait for in-flight handlers → drain NATS → flush telemetry → exit).
 * Called only from a service's main.ts, the one place that touches process signals and exit.
 */
export async function runService(opts: RunServiceOptions): Promise<void> {
  const log = createLogger(opts.name, { level: (opts.env["MOSS_LOG_LEVEL"] as LogLevel | undefined) ?? "info" });
  let config: Readonly<LoadedConfig>;
  try {
    config = loadConfig(opts.env);
  } catch (err) {
    log.error((err as Error).message, { code: (err as { code?: string }).code });
    process.exit(2);
  }
  const telemetry = startTelemetry({ serviceName: opts.name, otlpEndpoint: config.telemetry.otlpEndpoint });
  const ops = createOps(opts.name);
  let bus: Bus;
  try {
    const credential = busCredential(config, opts.name);
    if (!credential) log.warn("nats.auth is none: this service connects anonymously, and any client that reaches NATS can forge verdicts, records and consent");
    bus = await createBus({ url: config.nats.url, name: opts.name, logger: log, credential, observe: ops.observe, replicas: config.nats.replicas });
    // The streams exist (admin provisions them); a service sees to the consumers of its grant only.
    await bus.provision({ consumers: Grants[identityOf(opts.name) as ServiceIdentity]?.consumers ?? [] });
  } catch (err) {
    log.error((err as Error).message, { code: (err as { code?: string }).code });
    await telemetry.shutdown();
    process.exit(1);
  }
  const blob = createBlobStore(config.blob.kind === "fs" ? { kind: "fs", dir: config.paths.blobs } : { ...config.blob });
  let parts: ServiceParts;
  try {
    await blob.init();
    parts = await opts.start({ config, log, bus, blob, metrics: ops.registry });
  } catch (err) {
    // A start that cannot complete (blob store unreachable, bad agent config...) says why and exits non-zero.
    log.error(`cannot start: ${(err as Error).message}`, { code: (err as { code?: string }).code, stack: (err as Error).stack });
    await bus.close().catch(() => undefined);
    await telemetry.shutdown().catch(() => undefined);
    process.exit(1);
  }
  if (parts.http) {
    await parts.http.app.listen({ host: parts.http.host, port: parts.http.port });
    log.info("http listening", { url: `http://${parts.http.host}:${parts.http.port}` });
  }
  ops.started(bus.nc, bus.jsm, parts.consumers);
  try {
    const url = await ops.app.listen({ host: config.ops.host, port: opsPort(config.ops, opts.name) });
    log.info("ops listening: /healthz /readyz /metrics", { url });
  } catch (err) {
    // The service runs without its ops listener rather than not at all; the port is said so it can be fixed.
    log.error("ops listener could not start: no /healthz, /readyz or /metrics (ops.port / ops.ports)", { err: (err as Error).message });
  }
  log.info("started", { nats: config.nats.url, consumers: parts.consumers.length });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("stopping", { signal });
    ops.stopping();
    setTimeout(() => {
      log.error("shutdown took too long; forcing exit");
      process.exit(1);
    }, opts.forceMs ?? 30_000).unref();
    await Promise.all(parts.consumers.map((c) => c.stop(opts.graceMs ?? 15_000)));
    if (parts.http) await parts.http.app.close();
    await parts.onStop?.();
    await bus.close();
    await ops.app.close().catch(() => undefined);
    await telemetry.shutdown();
    log.info("stopped");
    process.exit(0);
  };
  process.once("SIGINT", () => void stop("SIGINT"));
  process.once("SIGTERM", () => void stop("SIGTERM"));
  // Under `moss up` (which supervises it), stdin is a pipe from the supervisor: when the supervisor is gone, however it
  // ended, the pipe closes and the service stops instead of lingering on its ports.
  if (opts.env["MOSS_SUPERVISED"] === "1") {
    process.stdin.once("end", () => void stop("supervisor gone"));
    process.stdin.once("error", () => void stop("supervisor gone"));
    process.stdin.resume();
  }
}

/** The credential a process named `name` connects with: its identity's seed, unless nats.auth is none. */
export function busCredential(config: Readonly<LoadedConfig>, name: string): BusCredential | undefined {
  return config.nats.auth === "nkey" ? loadCredential(config.paths.natsCredentials, identityOf(name)) : undefined;
}

/**
 * The env of an agent's live container: its configured env, its port and name, and the bus with the agent's own
 * credential — which may publish its failures and nothing else. No Moss service credential ever goes in. Behind the
 * gateway, loopback URLs say `moss-host` instead (see live-net.ts).
 */
export function liveEnv(config: Readonly<LoadedConfig>, agent: string, version: string): Record<string, string> {
  const a = knownAgent(config, agent).entry;
  const env: Record<string, string> = { ...a.env, PORT: String(a.livePort), AGENT_NAME: agent, MOSS_NATS_URL: config.nats.url, MOSS_AGENT_VERSION: version };
  if (config.nats.auth === "nkey") env["MOSS_NATS_SEED"] = new TextDecoder().decode(loadCredential(config.paths.natsCredentials, agentIdentity(agent)).seed);
  // Behind the gateway the version runs on the live network: the host's loopback is `moss-host` there (relayed by moss up).
  return a.serve === "gateway" ? onLiveNetwork(env).env : env;
}
