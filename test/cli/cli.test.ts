import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBlobStore } from "@moss/blob";
import type { FastifyInstance } from "fastify";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { main } from "@moss/cli";
import type { BatchTimelineInput as TimelineView } from "@moss/contracts";
import { renderTimeline } from "@moss/cli";
import { AuditLog } from "@moss/auditor";
import { buildApp } from "@moss/auditor";
import { openStores } from "@moss/batch";
import { askQuery, createBus, serveQuery, type Bus } from "@moss/bus";
import { freePort } from "@moss/cli";
import { Queries } from "@moss/contracts";
import { addOperator, buildApp as buildOperatorApi, jaegerSpans } from "@moss/operator-api";
import { runMoss } from "../helpers/moss";
import { startNats, type NatsServer } from "../helpers/nats";


const moss = (args: string[], env: Record<string, string> = {}) => runMoss(args, { cwd: dir, env });


let dir: string;
let log: AuditLog;
let auditor: FastifyInstance;
let app: FastifyInstance;
let nats: NatsServer;
let bus: Bus;
let served: { stop(): void };
let apiPort: number;
let jaeger: Server;
let deadPort: number;
/** A config whose operator API is at `port`, with the operator's token where `moss up` leaves it (under dataDir). */
const configFor = (port: number): string => {
  const file = join(dir, `moss-${port}.json`);
  writeFileSync(file, JSON.stringify({ dataDir: dir, operatorApi: { host: "127.0.0.1", port } }));
  return file;
};

const BASE = "0123456789abcdef0123456789abcdef01234567";
const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
/** A stand-in for Jaeger's query API: the batch's trace, as Jaeger answers it (times in µs). */
function jaegerStandIn(): Promise<Server> {
  const t0 = 1_748_779_140_000_000;
  const trace = {
    traceID: TRACE,
    spans: [
      { traceID: TRACE, spanID: "a1", operationName: "curator failure.v1", startTime: t0, duration: 12_000, processID: "p1", references: [] },
      { traceID: TRACE, spanID: "b2", operationName: "rewriter batch.ready.v1", startTime: t0 + 60_000_000, duration: 45_000_000, processID: "p2", references: [{ refType: "CHILD_OF", traceID: TRACE, spanID: "a1" }] },
      { traceID: TRACE, spanID: "c3", operationName: "replayer candidate.ready.v1", startTime: t0 + 106_000_000, duration: 9_000_000, processID: "p3", references: [{ refType: "CHILD_OF", traceID: TRACE, spanID: "b2" }] },
    ],
    processes: { p1: { serviceName: "curator" }, p2: { serviceName: "rewriter" }, p3: { serviceName: "replayer" } },
  };
  const server = createServer((req, res) => {
    const found = req.url === `/api/traces/${TRACE}`;
    res.writeHead(found ? 200 : 404, { "content-type": "application/json" });
    res.end(JSON.stringify(found ? { data: [trace] } : { data: null, errors: [{ code: 404, msg: "trace not found" }] }));
  });
  return new Promise((r) => server.listen(0, "127.0.0.1", () => r(server)));
}
const COMMIT = "fedcba9876543210fedcba9876543210fedcba98";

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "moss-cli-"));
  // A real auditor API over a small recorded story, for the commands that read it.
  log = new AuditLog(join(dir, "audit.jsonl"));
  const blob = createBlobStore({ kind: "fs", dir: join(dir, "blobs") });
  await blob.init();
  const diff = await blob.put("--- a/src/handler.ts\n+++ b/src/handler.ts\n-  items.length\n+  items?.length ?? 0\n");
  const batchBase = { batchId: "b-cli", agent: "shop", fingerprint: "TypeError@checkout", baseVersion: BASE, count: 1 };
  const failure = {
    id: "f-cli",
    agent: "shop",
    version: BASE,
    occurredAt: "2025-06-01T11:59:00.000Z",
    request: { method: "POST", path: "/v1/checkout", body: '{"items":null}' },
    error: { type: "TypeError", message: "Cannot read properties of null (reading 'length')" },
  };
  const steps: Array<[string, string, unknown]> = [
    ["MOSS_FAILURES", "failure.v1", failure],
    ["MOSS_PIPELINE", "batch.ready.v1", { ...batchBase, failures: [{ id: "f-cli", event: diff }], attempt: 1 }],
    ["MOSS_PIPELINE", "candidate.ready.v1", { ...batchBase, attempt: 1, commit: COMMIT, branch: "b", image: "moss/shop:fedcba987654", diff, filesChanged: ["src/handler.ts"] }],
    [
      "MOSS_PIPELINE",
      "replay.completed.v1",
      { ...batchBase, attempt: 1, commit: COMMIT, image: "moss/shop:fedcba987654", diff, passed: true, results: [{ failureId: "f-cli", passed: true, reason: "answered 200", durationMs: 31 }] },
    ],
    ["MOSS_PIPELINE", "promotion.outcome.v1", { batchId: "b-cli", agent: "shop", attempt: 1, commit: COMMIT, image: "moss/shop:fedcba987654", outcome: "promoted", reason: "healthy", probes: { ok: 5, failed: 0 }, approvedBy: "ana" }],
  ];
  for (const [i, [stream, kind, data]] of steps.entries()) {
    const p = data as { batchId?: string; id?: string };
    log.append({ stream, streamSeq: i + 1, subject: `moss.${kind}`, kind, batchId: p.batchId, failureId: kind === "failure.v1" ? p.id : undefined, traceId: TRACE, data }, new Date(Date.UTC(2025, 5, 1, 12, i)));
  }
  // The real path: the CLI asks the operator API (with the operator's token), which asks the auditor over the bus.
  auditor = buildApp({ log, blob });
  nats = await startNats();
  bus = await createBus({ url: nats.url, name: "cli-test" });
  await bus.provision();
  served = serveQuery(bus.nc, Queries.audit, async (req) => {
    const r = await auditor.inject({ method: req.method, url: req.url });
    return { status: r.statusCode, contentType: String(r.headers["content-type"]), body: r.rawPayload };
  }, { blobs: blob, log: { debug() {}, info() {}, warn() {}, error() {}, child() { return this; } } as never });
  const stores = await openStores(bus);
  await stores.batches.create({ batchId: "b-cli", agent: "shop", fingerprint: "TypeError@checkout", baseVersion: BASE, state: "promoted", failures: [{ id: "f-cli", event: diff }], count: 1, attached: 0, fingerprintVersion: "fp1", openedAt: "2025-06-01T11:59:00.000Z", deadline: "2025-06-01T12:00:00.000Z", trace: {}, attempt: 1, updatedAt: "2025-06-01T12:04:00.000Z" });
  const operatorsFile = join(dir, "credentials", "operators.json");
  writeFileSync(join(dir, "credentials", "operator.token"), addOperator(operatorsFile, "ana"));
  jaeger = await jaegerStandIn();
  const spans = jaegerSpans(`http://127.0.0.1:${(jaeger.address() as { port: number }).port}`);
  app = buildOperatorApi({ stores, publish: async () => ({}) as never, operatorsFile, spans, audit: (url) => askQuery(bus.nc, Queries.audit, { method: "GET", url }, { blob: (sha) => blob.get(sha) }) });
  await app.listen({ host: "127.0.0.1", port: 0 });
  apiPort = (app.server.address() as { port: number }).port;
  deadPort = await freePort();
});

afterAll(async () => {
  served?.stop();
  jaeger?.close();
  await app?.close();
  await bus?.close();
  await nats?.stop();
  log?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("moss (the command)", () => {
  it.concurrent("with no arguments prints usage on stdout and exits 2", async ({ expect }) => {
    const r = await moss([]);
    expect(r.code).toBe(2);
    expect(r.stdout).toContain("Usage: moss <command> [options]");
    expect(r.stdout).toContain("show BATCH");
    expect(r.stderr).toBe("");
  });

  it.concurrent("--help prints usage and exits 0", async ({ expect }) => {
    const r = await moss(["--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Usage: moss <command> [options]");
  });

  it.concurrent("an unknown command exits 2 with the usage on stderr", async ({ expect }) => {
    const r = await moss(["frobnicate"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command 'frobnicate'");
    expect(r.stderr).toContain("Usage: moss <command> [options]");
    expect(r.stdout).toBe("");
  });

  it.concurrent("show without a batch says how to call it and exits 1", async ({ expect }) => {
    const r = await moss(["show"]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe("moss: usage: moss show BATCH");
  });

  it.concurrent("up with an invalid config names the field and exits 1 without starting anything", async ({ expect }) => {
    const file = join(dir, "invalid.json");
    writeFileSync(file, JSON.stringify({ dataDir: "data", curator: { batchSize: 0 }, auditor: { port: 7420 } }));
    const r = await moss(["up"], { MOSS_CONFIG: file });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`invalid Moss config in ${file}`);
    expect(r.stderr).toContain("curator.batchSize");
    expect(r.stderr).toContain("(got 0)");
    expect(r.stdout).not.toContain("moss is up");
  });

  it.concurrent("show when no operator API answers says so and what to check", async ({ expect }) => {
    const r = await moss(["show", "b-x"], { MOSS_CONFIG: configFor(deadPort) });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot reach the operator API at http://127.0.0.1:${deadPort}/v1/batches/b-x`);
    expect(r.stderr).toContain("moss up");
  });

});

/**
 * The commands that read the auditor, against a real auditor API on a loopback port. They run `main()` in-process
 * (same code path as the binary, minus the error printing the spawned tests above cover) to keep the file fast.
 */
describe("moss show / batches against a running auditor", () => {
  let out: string[];
  beforeEach(() => {
    out = [];
    vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => void out.push(a.join(" ")));
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("show BATCH renders the timeline", async () => {
    expect(await main(["show", "b-cli", "--config", configFor(apiPort)])).toBe(0);
    const text = out.join("\n");
    expect(text).toContain("Batch b-cli  agent shop  verdict PROMOTED");
    expect(text).toContain("f-cli  POST /v1/checkout");
    expect(text).toContain("replay PASS f-cli (31 ms): answered 200");
    expect(text).toContain("    +  items?.length ?? 0");
  });

  it("show --json prints the auditor's JSON; --no-diff drops the diff from the text", async () => {
    expect(await main(["show", "b-cli", "--json", "--config", configFor(apiPort)])).toBe(0);
    const t = JSON.parse(out.join("\n")) as TimelineView;
    expect(t).toMatchObject({ batchId: "b-cli", verdict: "promoted" });
    expect(t.attempts[0]?.diffText).toContain("items?.length");
    out.length = 0;
    expect(await main(["show", "b-cli", "--no-diff", "--config", configFor(apiPort)])).toBe(0);
    expect(out.join("\n")).toContain("replay PASS f-cli");
    expect(out.join("\n")).not.toContain("items?.length");
  });

  it("show of an unknown batch relays the auditor's advice", async () => {
    await expect(main(["show", "b-nope", "--config", configFor(apiPort)])).rejects.toThrow("no audit records for batch b-nope; list batches with `moss batches`");
  });

  it("batches lists the batches as their records say they are now, filtered by state", async () => {
    expect(await main(["batches", "--config", configFor(apiPort)])).toBe(0);
    expect(out).toHaveLength(2);
    expect(out[0]).toMatch(/^BATCH\s+AGENT\s+STATE\s+FAILURES\s+ATTEMPT\s+UPDATED\s+FINGERPRINT$/);
    expect(out[1]).toMatch(/^b-cli\s+shop\s+promoted\s+1\s+1\s+2025-06-01T12:04:00.000Z\s+TypeError@checkout$/);
    out.length = 0;
    expect(await main(["batches", "--state", "rejected,needs-human", "--config", configFor(apiPort)])).toBe(0);
    expect(out).toEqual(["no batch matches"]);
    await expect(main(["batches", "--state", "stuck", "--config", configFor(apiPort)])).rejects.toThrow("batches: no state stuck; the states are collecting, ");
  });

  it("trace BATCH draws the batch's spans when a collector is there to read them back from", async () => {
    const r = await moss(["trace", "b-cli", "--config", configFor(apiPort)]);
    expect([r.code, r.stderr]).toEqual([0, ""]);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(new RegExp(`^Batch b-cli  trace ${TRACE}  — 1\\.9 min from 3 span\\(s\\) \\(jaeger http://127\\.0\\.0\\.1:\\d+\\)$`));
    expect(lines.slice(1).map((l) => l.trim().split(/\s{2,}/).slice(0, 2))).toEqual([
      ["curator failure.v1", "curator"],
      ["rewriter batch.ready.v1", "rewriter"],
      ["replayer candidate.ready.v1", "replayer"],
    ]);
    expect(lines[2]).toMatch(/rewriter +\+ +1\.0 min +45\.0 s +\|/);
    const json = JSON.parse((await moss(["trace", "b-cli", "--json", "--config", configFor(apiPort)])).stdout) as { from: string; rows: { durationMs: number }[] };
    expect([json.from, json.rows.map((x) => x.durationMs)]).toEqual(["spans", [12, 45_000, 9_000]]);
  });

  it("trace BATCH --audit prints the batch's stages as a waterfall from its audit records", async () => {
    const r = await moss(["trace", "b-cli", "--audit", "--config", configFor(apiPort)]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^Batch b-cli .* from the first failure, from the audit records$/);
    expect(lines.slice(1).map((l) => l.trim().split(/\s{2,}/).slice(0, 2))).toEqual([
      ["curate", "curator"],
      ["rewrite", "rewriter"],
      ["replay", "replayer"],
      ["promote + bake", "promoter"],
    ]);
    expect(lines[2]).toMatch(/rewriter +\+ +2\.0 min +1\.0 min +\| +█+ +\| +attempt 1: commit fedcba987654/);
    const json = JSON.parse((await moss(["trace", "b-cli", "--json", "--audit", "--config", configFor(apiPort)])).stdout) as { rows: { stage: string; durationMs: number }[] };
    expect(json.rows.map((x) => x.durationMs)).toEqual([120_000, 60_000, 60_000, 60_000]);
  });

  it("an unknown option is an error naming it", async () => {
    await expect(main(["batches", "--frobnicate"])).rejects.toThrow("'--frobnicate'");
  });

  it("demo --patch with a name it does not know says which ones it knows, and starts nothing", async () => {
    const r = await moss(["demo", "--patch", "rewrite-everything", "--data-dir", join(dir, "demo")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--patch rewrite-everything is not a coding agent the demo knows; use one of fix, bad, polite, overreach, fails-later, slow, breaks-echo, symbolic");
  });
});

describe("renderTimeline", () => {
  const view: TimelineView = {
    batchId: "b-7",
    agent: "shop",
    fingerprint: "TypeError@checkout",
    count: 5,
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    verdict: "rolled-back",
    failures: [
      { id: "f-1", occurredAt: "2025-06-01T11:59:00.000Z", request: { method: "POST", path: "/v1/checkout", body: "x".repeat(200) }, error: { type: "TypeError", message: "items is null" } },
      { id: "f-2", occurredAt: "2025-06-01T11:59:30.000Z", request: { method: "GET", path: "/v1/cart" }, error: { type: "RangeError", message: "bad index" } },
    ],
    attempts: [
      { attempt: 1, verdict: "build-failed", reason: "tsc exited 2" },
      {
        attempt: 2,
        commit: "fedcba98",
        image: "moss/shop:fedcba98",
        filesChanged: ["src/a.ts", "src/b.ts"],
        verdict: "replay-passed",
        diffText: "--- a/src/a.ts\n+++ b/src/a.ts\n-old\n+new\n",
        replay: [
          { failureId: "f-1", passed: true, reason: "answered 200", durationMs: 12.6 },
          { failureId: "f-2", passed: false, reason: "still 500", durationMs: 40 },
        ],
      },
    ],
    timeline: [
      { at: "2025-06-01T11:59:00.000Z", kind: "failure", summary: "POST /v1/checkout → TypeError: items is null" },
      { at: "2025-06-01T12:05:00.000Z", kind: "promotion", summary: "rolled-back moss/shop:fedcba98" },
    ],
  };

  it("shows the header, the failures, each attempt with PASS/FAIL replay lines, the diff and the timeline", () => {
    const text = renderTimeline(view);
    const lines = text.split("\n");
    expect(lines[0]).toBe("Batch b-7  agent shop  verdict ROLLED-BACK");
    expect(text).toContain("  5 failure(s)  trace 4bf92f3577b34da6a3ce929d0e0e4736");
    // Long request bodies are cut so a failure stays on one line.
    const f1 = lines.find((l) => l.includes("f-1  POST /v1/checkout"))!;
    expect(f1).toContain(`${"x".repeat(59)}…  → TypeError: items is null`);
    expect(text).toContain("f-2  GET /v1/cart   → RangeError: bad index");
    expect(text).toContain("Attempt 1: build-failed — tsc exited 2");
    expect(text).toContain("Attempt 2: replay-passed");
    expect(text).toContain("  commit fedcba98  image moss/shop:fedcba98");
    expect(text).toContain("  changed src/a.ts, src/b.ts");
    expect(text).toContain("  replay PASS f-1 (13 ms): answered 200");
    expect(text).toContain("  replay FAIL f-2 (40 ms): still 500");
    const d = lines.indexOf("  diff:");
    expect(lines.slice(d, d + 5)).toEqual(["  diff:", "    --- a/src/a.ts", "    +++ b/src/a.ts", "    -old", "    +new"]);
    expect(text.endsWith("  2025-06-01T12:05:00.000Z  promotion        rolled-back moss/shop:fedcba98")).toBe(true);
  });

  it("omits the diff with diff:false and keeps everything else", () => {
    const text = renderTimeline(view, { diff: false });
    expect(text).not.toContain("diff:");
    expect(text).not.toContain("+new");
    expect(text).toContain("replay FAIL f-2");
    expect(text).toContain("Timeline:");
  });

  it("renders a batch that has only just closed", () => {
    const text = renderTimeline({ batchId: "b-8", verdict: "in progress", failures: [], attempts: [], timeline: [] });
    expect(text.split("\n").slice(0, 3)).toEqual(["Batch b-8  agent ?  verdict IN PROGRESS", "  fingerprint ?", "  0 failure(s)"]);
  });
});
