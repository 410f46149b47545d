/**
 * Reading the gateways' counters (`moss_gateway_stats`): what a version served in a window, summed over every gateway
 * replica, from two readings. A gateway that restarted counts again from zero (its `since` changed): its new counters
 * are the window. A gateway that stopped writing is left out once its record is older than `staleMs`.
 */
import { kvValues, type KV } from "@moss/bus";
import { GatewayStats, LATENCY_BOUNDS_MS, type VersionStats } from "@moss/contracts";

export type StatsReading = ReadonlyMap<string, GatewayStats>;

/** One reading of every gateway's counters for an agent. */
export async function readGatewayStats(kv: KV, agent: string, staleMs = 5_000): Promise<StatsReading> {
  const out = new Map<string, GatewayStats>();
  const now = Date.now();
  for (const { value } of await kvValues(kv, GatewayStats, `${agent}.>`)) {
    if (value.agent === agent && now - Date.parse(value.at) <= staleMs) out.set(value.gateway, value);
  }
  return out;
}

export interface LiveWindow {
  /** Requests that arrived. */
  requests: number;
  /** Requests that ended (answered, or failed): what the error rate and the latency are of. */
  completed: number;
  /** 5xx answers and requests never answered. */
  errors: number;
  /** errors / completed. */
  errorRate: number;
  inflight: number;
  latency: number[];
}

/** What `version` served between two readings, over every gateway (`from` undefined: since each gateway started). */
export function liveWindow(from: StatsReading | undefined, to: StatsReading, version: string): LiveWindow {
  const w: LiveWindow = { requests: 0, completed: 0, errors: 0, errorRate: 0, inflight: 0, latency: new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0) };
  for (const [gw, rec] of to) {
    const b = rec.versions[version];
    if (!b) continue;
    const prev = from?.get(gw);
    const a: VersionStats | undefined = prev && prev.since === rec.since ? prev.versions[version] : undefined;
    w.requests += b.requests - (a?.requests ?? 0);
    w.errors += b.errors5xx + b.connErrors - (a ? a.errors5xx + a.connErrors : 0);
    w.inflight += b.inflight;
    b.latency.forEach((n, i) => (w.latency[i]! += n - (a?.latency[i] ?? 0)));
  }
  w.completed = w.latency.reduce((n, c) => n + c, 0);
  w.errorRate = w.completed > 0 ? Math.min(1, w.errors / w.completed) : 0;
  return w;
}

/** Adds window `b` to `a` (in place) and returns `a`. */
export function addWindow(a: LiveWindow, b: LiveWindow): LiveWindow {
  a.requests += b.requests;
  a.completed += b.completed;
  a.errors += b.errors;
  a.errorRate = a.completed > 0 ? Math.min(1, a.errors / a.completed) : 0;
  a.inflight = b.inflight;
  b.latency.forEach((n, i) => (a.latency[i]! += n));
  return a;
}

/**
 * The q-quantile of a latency histogram, as the upper bound of the bucket it falls in (ms); undefined with no
 * requests. The last bucket has no bound: it reads as twice the highest.
 */
export function quantileMs(latency: readonly number[], q: number): number | undefined {
  const total = latency.reduce((n, c) => n + c, 0);
  if (total === 0) return undefined;
  const rank = Math.ceil(q * total);
  let acc = 0;
  for (let i = 0; i < latency.length; i++) {
    acc += latency[i]!;
    if (acc >= rank) return LATENCY_BOUNDS_MS[i] ?? LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1]! * 2;
  }
  return undefined;
}

/**
 * Waits until `version` has nothing in flight at any gateway, or `ms` passed. The gateways' counters are a stats
 * interval late: a request that started just before a route change shows up there, so it waits two intervals first.
 */
export async function waitDrained(read: () => Promise<StatsReading>, version: string, ms: number, intervalMs: number, sleep = (t: number) => new Promise<void>((r) => setTimeout(r, t))): Promise<boolean> {
  const end = Date.now() + ms;
  await sleep(intervalMs * 2);
  while (Date.now() < end) {
    if (liveWindow(undefined, await read(), version).inflight === 0) return true;
    await sleep(intervalMs);
  }
  return false;
}
