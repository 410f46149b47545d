/**
 * A promotion harness with real containers on the live network, the real gateway over a real nats-server, and the
 * promoter's own procedure: one small agent image whose behaviour each version picks by MODE, a load generator that
 * tells the gateway's failures from the agent's own answers, and the promoter's deps wired to real stores.
 * Used by test/e2e/promotion.test.ts and bench/promotion.ts.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { batchStore, breakerStore, deploymentStore, readGatewayStats, routeStore } from "@moss/batch";
import type { KV } from "@moss/bus";
import { parseConfig, resolveAgent } from "@moss/config";
import { BatchRecord, type BlobRef, type PromotionOutcome, type RouteTarget } from "@moss/contracts";
import { startGateway, type RunningGateway } from "@moss/gateway";
import type { PromotionDeps } from "@moss/promoter";
import { createRuntime, httpProbe, type Runtime, type ServedVersion } from "@moss/runtime";
import { freePort } from "../../cli/src/stack";
import { batchRecord, seed, silent, sleep, startEnv, type Env } from "./env";

/**
 * The agent: /health is 200 at once (MODE=unready: 503). MODE=good answers 200 at once; MODE=fails-later answers 500
 * once it has been up 1.5 s (a health check sees nothing wrong); MODE=slow takes 1.5 s per answer.
 */
const SERVER = `
const http = require("node:http");
const fs = require("node:fs");
const mode = process.env.MODE || "good";
const t0 = Date.now();
// With a state directory: a version in MODE=migrates rewrites the state in a new format when it starts.
const stateFile = process.env.STATE_DIR ? process.env.STATE_DIR + "/s.json" : "";
if (stateFile && mode === "migrates") fs.writeFileSync(stateFile, '{"format":2}');
else if (stateFile && !fs.existsSync(stateFile)) fs.writeFileSync(stateFile, '{"format":1}');
const state = () => { try { return stateFile ? JSON.parse(fs.readFileSync(stateFile, "utf8")) : undefined; } catch (e) { return "unreadable: " + e.code; } };
http.createServer((req, res) => {
  if (req.url === "/health") { if (mode === "unready") res.writeHead(503); return res.end(mode); }
  req.resume();
  req.on("end", () => {
    if ((mode === "fails-later" || mode === "migrates") && Date.now() - t0 > 1500) { res.writeHead(500, { "content-type": "application/json" }); return res.end('{"error":"boom"}'); }
    const answer = () => { res.writeHead(200, { "content-type": "application/json" }); res.end(JSON.stringify({ version: process.env.MOSS_AGENT_VERSION, mode, state: state() })); };
    if (mode === "slow") setTimeout(answer, 1500); else answer();
  });
}).listen(Number(process.env.PORT));
`;

const DEFAULT_AGENT = "shop";
export const AGENT = DEFAULT_AGENT;
/** Versions are commit shas; each one's container runs the one image in its MODE. */
export const VERSIONS = { v1: "a1".repeat(20), good: "b2".repeat(20), failsLater: "c3".repeat(20), slow: "d4".repeat(20), unready: "e5".repeat(20), good2: "f6".repeat(20), good3: "a7".repeat(20), good4: "b8".repeat(20), good5: "c9".repeat(20), canary: "d0".repeat(20), canaryBad: "e1".repeat(20), migrates: "f2".repeat(20), killed: "a3".repeat(20), rejected: "b4".repeat(20) };
export const MODE: Record<string, string> = { [VERSIONS.v1]: "good", [VERSIONS.good]: "good", [VERSIONS.failsLater]: "fails-later", [VERSIONS.slow]: "slow", [VERSIONS.unready]: "unready", [VERSIONS.good2]: "good", [VERSIONS.good3]: "good", [VERSIONS.good4]: "good", [VERSIONS.good5]: "good", [VERSIONS.canary]: "good", [VERSIONS.canaryBad]: "fails-later", [VERSIONS.migrates]: "migrates", [VERSIONS.killed]: "good", [VERSIONS.rejected]: "good" };

export interface LoadSeen {
  answered: number;
  byStatus: Map<number, number>;
  byVersion: Map<string, number>;
  /** The gateway's own errors (a MOSS_E_ code) and requests that got no answer: requests that failed. */
  failed: string[];
  /** When each version (by the gateway's `x-moss-version`) last answered. */
  lastAt: Map<string, number>;
  /** When the agent first and last answered 5xx (0: never). */
  firstError: number;
  lastError: number;
  /** Latencies of the answers, ms. */
  latencies: number[];
}

/** Requests back to back from `clients` clients until stopped; `headers(i)` for client i's requests (a session). */
export function load(url: string, clients = 3, headers: (client: number) => Record<string, string> = () => ({})): { seen: LoadSeen; stop(): Promise<LoadSeen> } {
  let running = true;
  const seen: LoadSeen = { answered: 0, byStatus: new Map(), byVersion: new Map(), lastAt: new Map(), failed: [], firstError: 0, lastError: 0, latencies: [] };
  const loops = Array.from({ length: clients }, async (_, client) => {
    while (running) {
      const t0 = performance.now();
      try {
        const res = await fetch(url, { method: "POST", body: "{}", headers: headers(client), signal: AbortSignal.timeout(10_000) });
        const body = (await res.json()) as { version?: string; code?: string; error?: string };
        seen.byStatus.set(res.status, (seen.byStatus.get(res.status) ?? 0) + 1);
        if (body.code?.startsWith("MOSS_E_")) seen.failed.push(`${res.status} ${body.error}`);
        else {
          seen.answered++;
          seen.latencies.push(performance.now() - t0);
          const version = res.headers.get("x-moss-version") ?? body.version;
          if (version) {
            seen.byVersion.set(version, (seen.byVersion.get(version) ?? 0) + 1);
            seen.lastAt.set(version, Date.now());
          }
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

export interface PromotionHarness {
  agent: string;
  env: Env;
  runtime: Runtime;
  gw: RunningGateway;
  /** The agent's address at the gateway. */
  url: string;
  routesKv: KV;
  statsKv: KV;
  leasesKv: KV;
  batchesKv: KV;
  image: string;
  deployments: ReturnType<typeof deploymentStore>;
  /** v1, live as `moss deploy` leaves it. */
  v1: ServedVersion;
  outcomes: PromotionOutcome[];
  deps(bake?: Partial<PromotionDeps["bake"]>): PromotionDeps;
  /** What another process needs to act on this harness's agent (promote-child.ts). */
  child: ChildSpec;
  /** A batch awaiting approval (or in `state`) whose candidate is `commit`. */
  batchFor(commit: string, over?: Partial<BatchRecord>): Promise<BatchRecord>;
  live(): Promise<RouteTarget[]>;
  close(): Promise<void>;
}

/** The bake the harness promotes with unless a test says otherwise. */
export const BAKE: PromotionDeps["bake"] = { bakeMs: 4_000, probeIntervalMs: 250, maxFailedProbes: 2, startupMs: 10_000, drainMs: 5_000, keepVersions: 3 };

export interface ChildSpec {
  natsUrl: string;
  prefix: string;
  agent: string;
  buckets: { routes: string; stats: string; batches: string; leases: string; deployments: string };
  statsIntervalMs: number;
}


/** The promoter's deps over real stores and the real runtime, for one agent of the test image. */
export function promotionDeps(p: {
  agent: string;
  runtime: Runtime;
  stateDir?: string;
  statsIntervalMs: number;
  kv: { batches: KV; deployments: ReturnType<typeof deploymentStore>; routes: KV; stats: KV };
  blob?: { put(b: Uint8Array): Promise<BlobRef>; get(sha: string): Promise<Buffer> };
  publish: PromotionDeps["publish"];
}): PromotionDeps {
  const config = parseConfig({ agents: { [p.agent]: { repo: "/nonexistent" } } });
  const stateEnv: Record<string, string> = p.stateDir ? { STATE_DIR: p.stateDir } : {};
  return {
    batches: batchStore(p.kv.batches),
    breakers: breakerStore(p.kv.batches),
    deployments: p.kv.deployments,
    runtime: p.runtime,
    agent: (name) => resolveAgent(config, name),
    probe: async () => ({ healthy: false, detail: "behind the gateway the promoter probes each version's own address" }),
    liveEnv: (_a, version) => ({ MODE: MODE[version] ?? "good", MOSS_AGENT_VERSION: version, ...stateEnv }),
    stateDir: () => p.stateDir,
    ...(p.blob ? { stateBlobs: { put: (tar: Buffer) => p.blob!.put(tar), get: (ref: BlobRef) => p.blob!.get(ref.sha256) } } : {}),
    bake: BAKE,
    serve: () => ({ mode: "gateway", port: 8080, healthPath: "/health" }),
    routes: routeStore(p.kv.routes),
    liveStats: (agent) => readGatewayStats(p.kv.stats, agent),
    statsIntervalMs: p.statsIntervalMs,
    probeUrl: (url) => httpProbe(url, 1_000)(),
    analysis: config.promoter.analysis,
    publish: p.publish,
    log: silent,
  };
}

export async function startPromotionHarness(o: { statsIntervalMs?: number; agent?: string; stateDir?: string } = {}): Promise<PromotionHarness> {
  const AGENT = o.agent ?? DEFAULT_AGENT;
  const stateEnv: Record<string, string> = o.stateDir ? { STATE_DIR: o.stateDir } : {};
  const prefix = `mp${randomBytes(3).toString("hex")}`;
  const runtime = createRuntime({ namePrefix: prefix });
  const statsIntervalMs = o.statsIntervalMs ?? 100;
  const env = await startEnv("promotion");
  const repo = mkdtempSync(join(tmpdir(), "moss-promo-agent-"));
  writeFileSync(join(repo, "server.js"), SERVER);
  writeFileSync(join(repo, "Dockerfile"), 'FROM moss/node-base:latest\nCOPY server.js /app/server.js\nCMD ["node", "/app/server.js"]\n');
  const git = (...a: string[]) => execFileSync("git", ["-C", repo, ...a], { encoding: "utf8" }).trim();
  git("init", "-q");
  git("add", ".");
  git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "agent");
  const { image } = await runtime.buildImage({ repoDir: repo, commit: git("rev-parse", "HEAD"), tag: `moss-test/${prefix}:1`, labels: { "moss.test": prefix } });
  // Named by the prefix, so another process (a promoter to kill: promote-child.ts) opens the same ones.
  const buckets = { routes: `routes_${prefix}`, stats: `stats_${prefix}`, batches: `batches_${prefix}`, leases: `leases_${prefix}`, deployments: `deployments_${prefix}` };
  const routesKv = await env.bus.kv(buckets.routes);
  const statsKv = await env.bus.kv(buckets.stats);
  const batchesKv = await env.bus.kv(buckets.batches);
  const leasesKv = await env.bus.kv(buckets.leases);
  const deployments = deploymentStore(await env.bus.kv(buckets.deployments));
  const port = await freePort();
  const gw = await startGateway({ agents: [{ name: AGENT, port }], host: "127.0.0.1", statsIntervalMs, upstreamTimeoutMs: 10_000, maxBodyBytes: 1 << 20, routes: routesKv, stats: statsKv, log: silent, id: "gw" });
  const v1 = await runtime.serveVersion({ agent: AGENT, image, version: VERSIONS.v1, env: { MODE: "good", MOSS_AGENT_VERSION: VERSIONS.v1, ...stateEnv }, port: 8080, ...(o.stateDir ? { stateDir: o.stateDir } : {}) });
  for (let i = 0; i < 50 && !(await httpProbe(`${v1.upstream}/health`, 500)()).healthy; i++) await sleep(100);
  await routeStore(routesKv).point(AGENT, { version: v1.version, image: v1.image, container: v1.container, upstream: v1.upstream }, "deploy");
  const at = new Date().toISOString();
  await deployments.record(AGENT, () => ({ agent: AGENT, image, version: VERSIONS.v1, container: v1.container, updatedAt: at, lastGood: [{ version: VERSIONS.v1, image, container: v1.container, at }] }));
  const outcomes: PromotionOutcome[] = [];
  let n = 0;
  return {
    agent: AGENT,
    env,
    runtime,
    gw,
    url: `http://127.0.0.1:${port}/v1/order`,
    routesKv,
    statsKv,
    leasesKv,
    batchesKv,
    image,
    deployments,
    v1,
    outcomes,
    deps: (bake) => ({
      ...promotionDeps({ agent: AGENT, runtime, stateDir: o.stateDir, statsIntervalMs, kv: { batches: batchesKv, deployments, routes: routesKv, stats: statsKv }, blob: env.blob, publish: async (_def, m) => void outcomes.push(m as PromotionOutcome) }),
      bake: { ...BAKE, ...bake },
    }),
    child: { natsUrl: env.nats.url, prefix, agent: AGENT, buckets, statsIntervalMs },
    async batchFor(commit, over) {
      const rec = batchRecord({
        batchId: `pb${++n}`,
        agent: AGENT,
        failures: [{ id: "f1", event: { sha256: "1".repeat(64), size: 1 } }],
        state: "awaiting-approval",
        attempt: 1,
        candidate: { attempt: 1, commit, image, diff: { sha256: "d".repeat(64), size: 1 } },
        ...over,
      });
      await seed(batchesKv, rec);
      return rec;
    },
    live: async () => (await routeStore(routesKv).get(AGENT))!.targets,
    async close() {
      await gw.close();
      await runtime.removeAgent(AGENT, { state: true }).catch(() => undefined);
      execFileSync("sh", ["-c", `docker network rm ${prefix}-live >/dev/null 2>&1; docker rmi -f $(docker images -q --filter label=moss.test=${prefix}) >/dev/null 2>&1 || true`]);
      await env.stop();
      rmSync(repo, { recursive: true, force: true });
    },
  };
}
