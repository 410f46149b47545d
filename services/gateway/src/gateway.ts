/**
 * The gateway's bus side: it follows `moss_routes` (one watch; a route change reaches every proxy at once) and writes
 * each agent's counters to `moss_gateway_stats` every `statsIntervalMs`, under this gateway's own key, so that the
 * promoter sums what every replica saw.
 */
import { hostname } from "node:os";
import { GatewayStats, Route } from "@moss/contracts";
import type { Logger } from "@moss/telemetry";
import type { KV } from "@nats-io/kv";
import { AgentProxy, type ProxyOptions } from "./proxy";

export interface GatewayOptions extends ProxyOptions {
  /** Agents served here, with the port each one's public address listens on. */
  agents: ReadonlyArray<{ name: string; port: number }>;
  host: string;
  statsIntervalMs: number;
  routes: KV;
  stats: KV;
  log: Logger;
  /** This replica's key part in `moss_gateway_stats`. Default `<host>_<pid>`. */
  id?: string;
}

export interface RunningGateway {
  readonly id: string;
  proxies: ReadonlyMap<string, AgentProxy>;
  /** Writes every agent's counters now (also done every interval). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export async function startGateway(opts: GatewayOptions): Promise<RunningGateway> {
  const id = opts.id ?? `${hostname()}_${process.pid}`.replace(/[^A-Za-z0-9_-]/g, "-");
  const since = new Date().toISOString();
  const proxies = new Map<string, AgentProxy>();
  const apply = (agent: string, value: Uint8Array | undefined, revision?: number) => {
    const p = proxies.get(agent);
    if (!p) return;
    if (!value || value.length === 0) return p.setRoute(undefined);
    let route: Route;
    try {
      route = Route.parse(JSON.parse(new TextDecoder().decode(value)));
    } catch (err) {
      // A bad route is refused; the one before it keeps serving.
      return opts.log.error("ignoring a route that is not a valid Route; the previous one keeps serving", { agent, revision, error: (err as Error).message });
    }
    const before = p.currentRoute();
    p.setRoute(route);
    if (JSON.stringify(before?.targets) !== JSON.stringify(route.targets))
      opts.log.info("route", { agent, targets: route.targets.map((t) => `${t.version.slice(0, 12)}=${t.weight}% ${t.upstream}`).join(", "), reason: route.reason });
  };
  try {
    for (const a of opts.agents) {
      const p = new AgentProxy(a.name, opts);
      proxies.set(a.name, p);
      const cur = await opts.routes.get(a.name);
      apply(a.name, cur?.operation === "PUT" ? cur.value : undefined, cur?.revision);
      await p.listen(opts.host, a.port);
      opts.log.info("serving agent", { agent: a.name, url: `http://${opts.host}:${a.port}`, route: p.currentRoute()?.targets.map((t) => t.version.slice(0, 12)).join(",") ?? "none yet" });
    }
  } catch (err) {
    await Promise.all([...proxies.values()].map((p) => p.close()));
    throw err;
  }
  const watch = await opts.routes.watch({ key: ">", include: "updates" });
  void (async () => {
    for await (const e of watch) apply(e.key, e.operation === "PUT" ? e.value : undefined, e.revision);
  })().catch((err: unknown) => opts.log.error("the route watch ended; routes no longer follow the bus", { error: (err as Error).message }));

  const written = new Map<string, { changes: number; at: number }>();
  const flush = async (force = false) => {
    const now = Date.now();
    for (const [agent, p] of proxies) {
      const last = written.get(agent);
      // Unchanged counters are written again now and then, so a reader can tell a quiet gateway from a dead one.
      if (!force && last && last.changes === p.changes && now - last.at < 2_000) continue;
      const changes = p.changes;
      const record = GatewayStats.parse({ agent, gateway: id, at: new Date(now).toISOString(), since, versions: p.snapshot() });
      await opts.stats.put(`${agent}.${id}`, JSON.stringify(record));
      written.set(agent, { changes, at: now });
    }
  };
  let writing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    writing = writing.then(() => flush()).catch((err: unknown) => opts.log.warn("could not write the gateway's counters", { error: (err as Error).message }));
  }, opts.statsIntervalMs);
  return {
    id,
    proxies,
    flush: () => (writing = writing.then(() => flush(true))),
    async close() {
      clearInterval(timer);
      watch.stop();
      await Promise.all([...proxies.values()].map((p) => p.close()));
      await writing.catch(() => undefined);
    },
  };
}
