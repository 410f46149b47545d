// Promotion behind the gateway, with real containers on the live network, the real gateway and the promoter's own
// procedure, under constant load: a good candidate goes live with no failed request; one whose /health stays healthy
// while its answers fail, and one that gets slow, are rolled back on the live numbers, in seconds, with no request
// failing for the swap or the rollback itself.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { batchStore, breakerStore, deploymentStore, readGatewayStats, routeStore } from "@moss/batch";
import type { KV } from "@moss/bus";
import { parseConfig, resolveAgent } from "@moss/config";
import { BatchRecord, type PromotionOutcome } from "@moss/contracts";
import { startGateway, type RunningGateway } from "@moss/gateway";
import { promote, type PromotionDeps } from "@moss/promoter";
import { createRuntime, httpProbe, type ServedVersion } from "@moss/runtime";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../cli/src/stack";
import { batchRecord, seed, silent, sleep, startEnv, type Env } from "../helpers/env";

const AGENT = "shop";
const prefix = `mp${randomBytes(3).toString("hex")}`;
const runtime = createRuntime({ namePrefix: prefix });

/**
 * The agent: /health is always 200 at once. MODE=good answers 200; MODE=fails-later answers 500 once it has been up
 * 1.5 s (a health check sees nothing wrong); MODE=slow takes 1.5 s per answer; MODE=unready never passes /health.
 */
const SERVER = `
const http = require("node:http");
const mode = process.env.MODE || "good";
const t0 = Date.now();
http.createServer((req, res) => {
  if (req.url === "/health") { if (mode === "unready") res.writeHead(503); return res.end(mode); }
  req.resume();
  req.on("end", () => {
    if (mode === "fails-later" && Date.now() - t0 > 1500) { res.writeHead(500, { "content-type": "application/json" }); return res.end('{"error":"boom"}'); }
    setTimeout(() => { res.writeHead(200, { "content-type": "application/json" }); res.end(JSON.stringify({ version: process.env.MOSS_AGENT_VERSION, mode })); }, mode === "slow" ? 1500 : 2);
  });
}).listen(Number(process.env.PORT));
`;

/** One image; each "version" is a commit sha whose container runs it in one MODE. */
const VERSIONS = { v1: "a1".repeat(20), good: "b2".repeat(20), failsLater: "c3".repeat(20), slow: "d4".repeat(20), v1again: "e5".repeat(20) };
const MODE: Record<string, string> = { [VERSIONS.v1]: "good", [VERSIONS.good]: "good", [VERSIONS.failsLater]: "fails-later", [VERSIONS.slow]: "slow", [VERSIONS.v1again]: "good" };

/** Requests back to back through the gateway; a failure is anything but an answer from the agent itself. */
function load(url: string, clients = 3) {
  let running = true;
  const seen = { answered: 0, byStatus: new Map<number, number>(), byVersion: new Map<string, number>(), failed: [] as string[], firstError: 0, lastError: 0 };
  const loops = Array.from({ length: clients }, async () => {
    while (running) {
      try {
        const res = await fetch(url, { method: "POST", body: "{}", signal: AbortSignal.timeout(10_000) });
        const body = (await res.json()) as { version?: string; code?: string; error?: string };
        seen.byStatus.set(res.status, (seen.byStatus.get(res.status) ?? 0) + 1);
        // The gateway's own answers (no route, upstream did not answer) carry a MOSS_E_ code: those are failed requests.
        if (body.code?.startsWith("MOSS_E_")) seen.failed.push(`${res.status} ${body.error}`);
        else {
          seen.answered++;
          if (body.version) seen.byVersion.set(body.version, (seen.byVersion.get(body.version) ?? 0) + 1);
          if (res.status >= 500) {
            seen.firstError ||= Date.now();
            seen.lastError = Date.now();
          }
        }
      } catch (err) {
        seen.failed.push(String((err as Error).cause ?? err));
      }
    }
  });
  return {
    seen,
    async stop() {
      running = false;
      await Promise.all(loops);
      return seen;
    },
  };
}

describe("promotion behind the gateway (real containers, real gateway, constant load)", { timeout: 120_000 }, () => {
  let env: Env;
  let repo: string;
  let image: string;
  let gw: RunningGateway;
  let port: number;
  let routesKv: KV;
  let statsKv: KV;
  let batchesKv: KV;
  let deployments: ReturnType<typeof deploymentStore>;
  let v1: ServedVersion;
  const outcomes: PromotionOutcome[] = [];
  const config = parseConfig({ agents: { [AGENT]: { repo: "/nonexistent" } } });

  beforeAll(async () => {
    env = await startEnv("promotion-e2e");
    repo = mkdtempSync(join(tmpdir(), "moss-promo-agent-"));
    writeFileSync(join(repo, "server.js"), SERVER);
    writeFileSync(join(repo, "Dockerfile"), 'FROM moss/node-base:latest\nCOPY server.js /app/server.js\nCMD ["node", "/app/server.js"]\n');
    const git = (...a: string[]) => execFileSync("git", ["-C", repo, ...a], { encoding: "utf8" }).trim();
    git("init", "-q");
    git("add", ".");
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "agent");
    image = (await runtime.buildImage({ repoDir: repo, commit: git("rev-parse", "HEAD"), tag: `moss-test/${prefix}:1`, labels: { "moss.test": prefix } })).image;
    routesKv = await env.bucket("routes");
    statsKv = await env.bucket("stats");
    batchesKv = await env.bucket("batches");
    deployments = deploymentStore(await env.bucket("deployments"));
    port = await freePort();
    gw = await startGateway({ agents: [{ name: AGENT, port }], host: "127.0.0.1", statsIntervalMs: 100, upstreamTimeoutMs: 10_000, maxBodyBytes: 1 << 20, routes: routesKv, stats: statsKv, log: silent, id: "gw" });
    // v1 is live, as `moss deploy` leaves it.
    v1 = await runtime.serveVersion({ agent: AGENT, image, version: VERSIONS.v1, env: { MODE: "good", MOSS_AGENT_VERSION: VERSIONS.v1 }, port: 8080 });
    for (let i = 0; i < 50 && !(await httpProbe(`${v1.upstream}/health`, 500)()).healthy; i++) await sleep(100);
    await routeStore(routesKv).point(AGENT, { version: v1.version, image: v1.image, container: v1.container, upstream: v1.upstream }, "deploy");
    await deployments.record(AGENT, () => ({ agent: AGENT, image, version: VERSIONS.v1, container: v1.container, updatedAt: new Date().toISOString() }));
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
    await runtime.removeAgent(AGENT).catch(() => undefined);
    execFileSync("sh", ["-c", `docker network rm ${prefix}-live >/dev/null 2>&1; docker rmi -f $(docker images -q --filter label=moss.test=${prefix}) >/dev/null 2>&1 || true`]);
    await env?.stop();
    rmSync(repo, { recursive: true, force: true });
  });

  let n = 0;
  function deps(): PromotionDeps {
    return {
      batches: batchStore(batchesKv),
      breakers: breakerStore(batchesKv),
      deployments,
      runtime,
      agent: (name) => resolveAgent(config, name),
      probe: async () => ({ healthy: false, detail: "behind the gateway the promoter probes each version's own address" }),
      liveEnv: (_a, version) => ({ MODE: MODE[version]!, MOSS_AGENT_VERSION: version }),
      stateDir: () => undefined,
      bake: { bakeMs: 4_000, probeIntervalMs: 250, maxFailedProbes: 2, startupMs: 10_000, drainMs: 5_000, keepVersions: 3 },
      serve: () => ({ mode: "gateway", port: 8080, healthPath: "/health" }),
      routes: routeStore(routesKv),
      liveStats: (agent) => readGatewayStats(statsKv, agent),
      statsIntervalMs: 100,
      probeUrl: (url) => httpProbe(url, 1_000)(),
      analysis: config.promoter.analysis,
      publish: async (_def, m) => void outcomes.push(m as PromotionOutcome),
      log: silent,
    };
  }
  async function batchFor(commit: string): Promise<BatchRecord> {
    const rec = batchRecord({
      batchId: `pb${++n}`,
      agent: AGENT,
      failures: [{ id: "f1", event: { sha256: "1".repeat(64), size: 1 } }],
      state: "awaiting-approval",
      attempt: 1,
      candidate: { attempt: 1, commit, image, diff: { sha256: "d".repeat(64), size: 1 } },
    });
    await seed(batchesKv, rec);
    return rec;
  }
  const live = async () => (await routeStore(routesKv).get(AGENT))!.targets;
  const url = () => `http://127.0.0.1:${port}/v1/order`;

  it("promotes a good candidate with zero failed requests, and stops the previous version but keeps it", async () => {
    const l = load(url());
    await sleep(500);
    await promote(await batchFor(VERSIONS.good), "tester", deps());
    await sleep(300);
    const seen = await l.stop();
    expect(outcomes.at(-1)).toMatchObject({ outcome: "promoted", live: { candidate: { errorRate: 0 } } });
    expect(outcomes.at(-1)!.live!.candidate.requests).toBeGreaterThan(20);
    expect(seen.failed).toEqual([]);
    expect(seen.byStatus.get(200)).toBe(seen.answered);
    expect(seen.byVersion.get(VERSIONS.v1)).toBeGreaterThan(5);
    expect(seen.byVersion.get(VERSIONS.good)).toBeGreaterThan(20);
    expect((await live()).map((t) => t.version)).toEqual([VERSIONS.good]);
    const old = await runtime.versionStatus(v1.container);
    expect(old).toMatchObject({ running: false });
    expect((await deployments.get(AGENT))?.previous?.container).toBe(v1.container);
  });

  it("rolls back a candidate whose /health stays healthy while its answers fail, on the live error rate, in seconds", async () => {
    const l = load(url());
    await sleep(300);
    const t0 = Date.now();
    await promote(await batchFor(VERSIONS.failsLater), "tester", deps());
    const seen = await l.stop();
    const o = outcomes.at(-1)!;
    expect(o.outcome).toBe("rolled-back");
    expect(o.live?.check).toMatch(/live traffic: error rate \d+\.\d % \(\d+ of \d+ requests\) is over the limit of 5\.0 %/);
    expect(o.reason).toMatch(/^rolled back to /);
    // Every request got an answer from an agent; the 500s are the bad version's own, and they stopped within 3 s.
    expect(seen.failed).toEqual([]);
    expect(seen.lastError - seen.firstError).toBeLessThan(3_000);
    expect(seen.lastError).toBeGreaterThan(t0);
    expect((await live()).map((t) => t.version)).toEqual([VERSIONS.good]);
    const bad = (await runtime.servedVersions(AGENT)).find((v) => v.version === VERSIONS.failsLater);
    expect(bad).toMatchObject({ running: false });
  });

  it("rolls back a candidate that got slow while its /health stayed fast, on p95 latency", async () => {
    const l = load(url(), 4);
    await sleep(300);
    await promote(await batchFor(VERSIONS.slow), "tester", deps());
    const seen = await l.stop();
    const o = outcomes.at(-1)!;
    expect(o.outcome).toBe("rolled-back");
    expect(o.live?.check).toMatch(/p95 latency ≥ (1500|2000) ms is over \d+ ms/);
    // The slow version's requests in flight finished on it before it stopped: none failed.
    expect(seen.failed).toEqual([]);
    expect((await live()).map((t) => t.version)).toEqual([VERSIONS.good]);
  });

  it("never sends traffic to a candidate that does not pass its readiness probe", async () => {
    const l = load(url(), 2);
    const d = deps();
    d.liveEnv = (_a, version) => ({ MODE: "unready", MOSS_AGENT_VERSION: version });
    d.bake = { ...d.bake, startupMs: 1_500 };
    await promote(await batchFor(VERSIONS.v1again), "tester", d);
    const seen = await l.stop();
    expect(outcomes.at(-1)).toMatchObject({ outcome: "rolled-back", reason: expect.stringMatching(/never passed its readiness probe .* it took no traffic/) });
    expect(seen.byVersion.get(VERSIONS.v1again)).toBeUndefined();
    expect(seen.failed).toEqual([]);
    expect((await live()).map((t) => t.version)).toEqual([VERSIONS.good]);
  });
});
