// The gateway over a real nats-server, in front of real HTTP servers: routes from KV, swaps and rollbacks under
// constant load with no failed request, retries of a request a stopped version refused, counters per version.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { liveWindow, quantileMs, readGatewayStats, routeStore } from "@moss/batch";
import type { KV } from "@moss/bus";
import { pick, startGateway, type RunningGateway } from "@moss/gateway";
import { Route } from "@moss/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../cli/src/stack";
import { silent, sleep, startEnv, type Env } from "../helpers/env";
import { load } from "../helpers/promotion";

const V1 = "1111111111111111111111111111111111111111";
const V2 = "2222222222222222222222222222222222222222";

/** An upstream that answers `{version}` after `delayMs`, with `status`; both can change while it runs. */
async function upstream(version: string, o: { status?: number; delayMs?: number } = {}) {
  const state = { status: o.status ?? 200, delayMs: o.delayMs ?? 0, served: 0 };
  const server: Server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      setTimeout(() => {
        state.served++;
        res.writeHead(state.status, { "content-type": "application/json" });
        res.end(JSON.stringify({ version, echo: body, path: req.url, seenVersion: req.headers["x-moss-version"] }));
      }, state.delayMs);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    state,
    url: `http://127.0.0.1:${port}`,
    port,
    target: (weight = 100) => ({ version, image: `moss/a:${version.slice(0, 12)}`, container: `c-${version.slice(0, 6)}`, upstream: `http://127.0.0.1:${port}`, weight }),
    stop: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

describe("the gateway (agents' traffic) over a real nats-server", () => {
  let env: Env;
  let routesKv: KV;
  let statsKv: KV;
  let gw: RunningGateway;
  let port: number;
  const agent = "chat-bot";
  beforeAll(async () => {
    env = await startEnv("gateway-test");
    routesKv = await env.bucket("routes");
    statsKv = await env.bucket("stats");
    port = await freePort();
    gw = await startGateway({ agents: [{ name: agent, port }], host: "127.0.0.1", statsIntervalMs: 50, upstreamTimeoutMs: 5_000, maxBodyBytes: 1024, routes: routesKv, stats: statsKv, log: silent, id: "gw1" });
  });
  afterAll(async () => {
    await gw?.close();
    await env?.stop();
  });
  const url = () => `http://127.0.0.1:${port}/v1/chat?x=1`;
  const routes = () => routeStore(routesKv);
  const waitRoute = async (version: string) => {
    for (let i = 0; i < 100 && gw.proxies.get(agent)!.currentRoute()?.targets[0]?.version !== version; i++) await sleep(10);
  };

  it("says plainly that no version is routed yet (503), and forwards path, body and headers once one is", async () => {
    const none = await fetch(url());
    expect(none.status).toBe(503);
    expect(await none.json()).toEqual({ code: "MOSS_E_NO_ROUTE", error: expect.stringContaining("moss deploy chat-bot") });
    const u1 = await upstream(V1);
    try {
      await routes().point(agent, u1.target(), "test");
      await waitRoute(V1);
      const res = await fetch(url(), { method: "POST", body: "hello" });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ version: V1, echo: "hello", path: "/v1/chat?x=1", seenVersion: V1 });
      // A body over gateway.maxBodyBytes is refused, and said so.
      const big = await fetch(url(), { method: "POST", body: "x".repeat(2048) }).catch((e: Error) => e);
      if (!(big instanceof Error)) expect(big.status).toBe(413);
    } finally {
      await u1.stop();
    }
  });

  it("swaps and rolls back under constant load with no failed request, the old version finishing what it had", async () => {
    const u1 = await upstream(V1, { delayMs: 20 });
    const u2 = await upstream(V2, { delayMs: 5 });
    try {
      await routes().point(agent, u1.target(), "v1");
      await waitRoute(V1);
      const l = load(url(), 4);
      await sleep(300);
      await routes().point(agent, u2.target(), "swap");
      await sleep(300);
      // The old version stops once drained: nothing was in flight on it.
      const s = await readGatewayStats(statsKv, agent);
      expect(liveWindow(undefined, s, V1).inflight).toBe(0);
      await u1.stop();
      await sleep(200);
      // Rollback to a version that is not listening yet: refused connections are retried by the route as it is then.
      const u1b = await upstream(V1);
      await routes().point(agent, { ...u1b.target() }, "rollback");
      await sleep(300);
      const seen = await l.stop();
      await u1b.stop();
      expect(seen.failed).toEqual([]);
      // Every request came back 200 from an upstream.
      expect(seen.byStatus.get(200)).toBe(seen.answered);
      expect([...seen.byStatus.keys()]).toEqual([200]);
      expect(seen.byVersion.get(V1)).toBeGreaterThan(5);
      expect(seen.byVersion.get(V2)).toBeGreaterThan(5);
    } finally {
      await u1.stop().catch(() => undefined);
      await u2.stop();
    }
  });

  it("retries a request a stopped upstream refused, on the route as it is by then; with nowhere to go it is a 502 that says which version", async () => {
    const dead = await freePort();
    await routes().point(agent, { version: V2, image: "x", container: "gone", upstream: `http://127.0.0.1:${dead}` }, "dead");
    await waitRoute(V2);
    const res = await fetch(url());
    expect(res.status).toBe(502);
    expect(((await res.json()) as { error: string }).error).toMatch(/version 222222222222 did not answer: ECONNREFUSED/);
  });

  it("counts requests, 5xx, connection failures and latency per version, and writes them for the promoter", async () => {
    const u = await upstream(V1, { status: 500, delayMs: 30 });
    try {
      await routes().point(agent, u.target(), "errors");
      await waitRoute(V1);
      await gw.flush();
      const before = await readGatewayStats(statsKv, agent);
      for (let i = 0; i < 10; i++) await fetch(url());
      u.state.status = 200;
      for (let i = 0; i < 10; i++) await fetch(url());
      await gw.flush();
      const after = await readGatewayStats(statsKv, agent);
      expect([...after.keys()]).toEqual(["gw1"]);
      const w = liveWindow(before, after, V1);
      expect(w).toMatchObject({ requests: 20, errors: 10, errorRate: 0.5, inflight: 0 });
      expect(quantileMs(w.latency, 0.5)).toBeGreaterThanOrEqual(50);
      expect(quantileMs(w.latency, 0.5)).toBeLessThanOrEqual(100);
      // A connection failure counts as an error of the version it was sent to.
      const v2before = liveWindow(undefined, after, V2).errors;
      await routes().point(agent, { version: V2, image: "x", container: "gone", upstream: `http://127.0.0.1:${await freePort()}` }, "dead");
      await waitRoute(V2);
      await fetch(url());
      await gw.flush();
      expect(liveWindow(undefined, await readGatewayStats(statsKv, agent), V2).errors).toBe(v2before + 1);
    } finally {
      await u.stop();
    }
  });

  it("keeps serving on the route it has when a bad route is written", async () => {
    const u = await upstream(V1);
    try {
      await routes().point(agent, u.target(), "good");
      await waitRoute(V1);
      await routesKv.put(agent, JSON.stringify({ agent, targets: [] }));
      await sleep(100);
      expect((await fetch(url())).status).toBe(200);
    } finally {
      await u.stop();
    }
  });

  it("splits new sessions by weight, and keeps one session on one version", () => {
    const route = Route.parse({ agent, targets: [{ version: V1, image: "a", container: "a", upstream: "http://a:1", weight: 90 }, { version: V2, image: "b", container: "b", upstream: "http://b:1", weight: 10 }], stickyHeader: "x-session", reason: "canary", updatedAt: new Date().toISOString() });
    const counts = { [V1]: 0, [V2]: 0 };
    for (let i = 0; i < 2_000; i++) counts[pick(route, `session-${i}`).version as typeof V1]++;
    expect(counts[V2]).toBeGreaterThan(120);
    expect(counts[V2]).toBeLessThan(300);
    for (let i = 0; i < 20; i++) expect(pick(route, "s-42").version).toBe(pick(route, "s-42").version);
    expect(() => Route.parse({ ...route, targets: [{ ...route.targets[0]!, weight: 50 }] })).toThrow(/sum to 100/);
  });
});
