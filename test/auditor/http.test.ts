import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBlobStore, type BlobStore } from "@moss/blob";
import { rawRoute, type HandlerContext } from "@moss/bus";
import {
  deadLetterSubject,
  failureSubject,
  Messages,
  type BlobRef,
  type DeadLetter,
  type FailureEventInput,
  type MessageDef,
} from "@moss/contracts";
import type { FastifyInstance } from "fastify";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { AuditLog } from "@moss/auditor";
import { record } from "@moss/auditor";
import type { BatchTimeline } from "@moss/contracts";
import { buildApp } from "@moss/auditor";

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const BASE = "0123456789abcdef0123456789abcdef01234567";
const COMMIT = "fedcba9876543210fedcba9876543210fedcba98";
const AGENT = "shop";
const DIFF = [
  "diff --git a/src/handler.ts b/src/handler.ts",
  "--- a/src/handler.ts",
  "+++ b/src/handler.ts",
  "@@ -1,3 +1,3 @@",
  "-  const qty = body.items.length;",
  "+  const qty = body.items?.length ?? 0;",
  "",
].join("\n");

let dir: string;
let log: AuditLog;
let blob: BlobStore;
let app: FastifyInstance;
/** Per-stream sequence, as JetStream assigns it. */
const seqs = new Map<string, number>();

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "moss-auditor-http-"));
  log = new AuditLog(join(dir, "audit", "audit.jsonl"));
  blob = createBlobStore({ kind: "fs", dir: join(dir, "blobs") });
  await blob.init();
  app = buildApp({ log, blob });
  seqs.clear();
  // Only Date is faked: record times become deterministic, fastify's timers keep running.
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(new Date("2025-06-01T12:00:00.000Z"));
});

afterEach(async () => {
  vi.useRealTimers();
  await app.close();
  log.close();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Delivers one message the way the auditor's consumer does: the raw payload, validity from the message's schema
 * (as `rawRoute` computes it), and the handler the service wires. Returns the stream sequence used.
 */
async function deliver(def: MessageDef, payload: unknown, opts: { subject?: string; at?: string; streamSeq?: number; deliveryCount?: number; traceId?: string } = {}): Promise<number> {
  if (opts.at) vi.setSystemTime(new Date(opts.at));
  const streamSeq = opts.streamSeq ?? (seqs.get(def.stream) ?? 0) + 1;
  if (!opts.streamSeq) seqs.set(def.stream, streamSeq);
  const ctx: HandlerContext = {
    subject: opts.subject ?? def.subject,
    deliveryCount: opts.deliveryCount ?? 1,
    streamSeq,
    headers: { traceparent: `00-${opts.traceId ?? TRACE_ID}-00f067aa0ba902b7-01` },
    working() {},
    text: typeof payload === "string" ? payload : JSON.stringify(payload),
  };
  await rawRoute(def, (p, c) => record(log, def.name, def.stream, p, c)).handle(payload, ctx);
  return streamSeq;
}

function failure(id: string, occurredAt: string, path: string, message: string): FailureEventInput {
  return {
    id,
    agent: AGENT,
    version: BASE,
    occurredAt,
    route: "checkout",
    request: { method: "POST", path, headers: { "content-type": "application/json" }, body: '{"items":null}' },
    response: { status: 500, body: "internal error" },
    error: { type: "TypeError", message, stack: `TypeError: ${message}\n    at checkout (src/handler.ts:2:28)` },
  };
}

interface Story {
  batchId: string;
  failures: FailureEventInput[];
  diff: BlobRef;
  readySeq: number;
}

/** A batch's whole life, as the five services publish it: three failures → batch → candidate → replay → promotion. */
async function promotedBatch(batchId = "b-20250601-1"): Promise<Story> {
  // occurredAt out of order on purpose: the timeline must sort them.
  const failures = [
    failure("f-aaa", "2025-06-01T11:59:20.000Z", "/v1/checkout", "Cannot read properties of null (reading 'length')"),
    failure("f-bbb", "2025-06-01T11:59:05.000Z", "/v1/checkout?x=1", "Cannot read properties of null (reading 'length')"),
    failure("f-ccc", "2025-06-01T11:59:40.000Z", "/v1/checkout", "Cannot read properties of null (reading 'length')"),
  ];
  const refs = [];
  for (const [i, f] of failures.entries()) {
    await deliver(Messages.failure, f, { subject: failureSubject(AGENT), at: `2025-06-01T11:59:5${i}.000Z` });
    refs.push({ id: f.id, event: await blob.put(JSON.stringify(f), { contentType: "application/json" }) });
  }
  const batchBase = { batchId, agent: AGENT, fingerprint: "TypeError@checkout", fingerprintKey: "aaaaaaaaaaaaaaaaaaaa", baseVersion: BASE, failures: refs, count: 3 };
  const readySeq = await deliver(Messages.batchReady, { ...batchBase, attempt: 1 }, { at: "2025-06-01T12:00:00.000Z" });
  const diff = await blob.put(DIFF, { contentType: "text/x-diff" });
  const image = `moss/${AGENT}:${COMMIT.slice(0, 12)}`;
  await deliver(
    Messages.candidateReady,
    { ...batchBase, attempt: 1, commit: COMMIT, branch: `moss/${batchId}/1`, image, diff, filesChanged: ["src/handler.ts"] },
    { at: "2025-06-01T12:01:00.000Z" },
  );
  await deliver(
    Messages.replayCompleted,
    {
      ...batchBase,
      attempt: 1,
      commit: COMMIT,
      image,
      diff,
      passed: true,
      results: failures.map((f, i) => ({ failureId: f.id, passed: true, reason: "answered 200 and reported no failure", status: 200, durationMs: 40 + i })),
    },
    { at: "2025-06-01T12:02:00.000Z" },
  );
  await deliver(
    Messages.promotion,
    {
      batchId,
      agent: AGENT,
      attempt: 1,
      commit: COMMIT,
      image,
      previousImage: `moss/${AGENT}:${BASE.slice(0, 12)}`,
      outcome: "promoted",
      reason: "healthy for 5000 ms",
      probes: { ok: 10, failed: 0 },
      approvedBy: "auto",
    },
    { at: "2025-06-01T12:03:00.000Z" },
  );
  return { batchId, failures, diff, readySeq };
}

async function getJson<T>(url: string): Promise<{ status: number; body: T }> {
  const res = await app.inject({ method: "GET", url });
  return { status: res.statusCode, body: res.json() as T };
}

describe("auditor HTTP API over recorded messages", () => {
  it("GET /v1/batches/:id tells a promoted batch's whole story", async () => {
    const story = await promotedBatch();
    const { status, body: t } = await getJson<BatchTimeline & { attempts: Array<{ diffText?: string }> }>(`/v1/batches/${story.batchId}`);
    expect(status).toBe(200);
    // The fixture is what the services really publish: every message passed its schema.
    expect(log.readAll().map((r) => r.kind)).toEqual(["failure.v1", "failure.v1", "failure.v1", "batch.ready.v1", "candidate.ready.v1", "replay.completed.v1", "promotion.outcome.v1"]);

    expect(t).toMatchObject({ batchId: story.batchId, agent: AGENT, fingerprint: "TypeError@checkout", count: 3, verdict: "promoted", traceId: TRACE_ID });
    expect(t.failures.map((f) => f.id)).toEqual(["f-aaa", "f-bbb", "f-ccc"]);
    expect(t.failures[1]).toEqual({
      id: "f-bbb",
      occurredAt: "2025-06-01T11:59:05.000Z",
      route: "checkout",
      request: { method: "POST", path: "/v1/checkout?x=1", headers: { "content-type": "application/json" }, body: '{"items":null}' },
      error: story.failures[1]!.error,
      version: BASE,
    });

    expect(t.attempts).toHaveLength(1);
    const a = t.attempts[0]!;
    expect(a).toMatchObject({ attempt: 1, commit: COMMIT, filesChanged: ["src/handler.ts"], verdict: "replay-passed", diff: { sha256: story.diff.sha256 } });
    expect(a.diffText).toBe(DIFF);
    expect(a.replay?.map((r) => [r.failureId, r.passed])).toEqual([
      ["f-aaa", true],
      ["f-bbb", true],
      ["f-ccc", true],
    ]);

    expect(t.promotion).toMatchObject({ outcome: "promoted", approvedBy: "auto", probes: { ok: 10, failed: 0 } });

    // The story reads in time order: the failures (by when they happened), then each pipeline step.
    expect(t.timeline.map((e) => e.kind)).toEqual(["failure", "failure", "failure", "batch", "candidate", "replay", "promotion"]);
    expect(t.timeline.slice(0, 3).map((e) => e.at)).toEqual(["2025-06-01T11:59:05.000Z", "2025-06-01T11:59:20.000Z", "2025-06-01T11:59:40.000Z"]);
    const times = t.timeline.map((e) => Date.parse(e.at));
    expect(times).toEqual([...times].sort((x, y) => x - y));
    expect(t.timeline[0]!.summary).toBe("POST /v1/checkout?x=1 → TypeError: Cannot read properties of null (reading 'length')");
    expect(t.timeline[3]!.summary).toBe("batch closed with 3 failure(s); fingerprint TypeError@checkout");
    expect(t.timeline[5]!.summary).toBe("attempt 1: replay passed (3/3 fixed)");
    expect(t.timeline[6]!.summary).toContain("promoted");
    expect(t.timeline[6]!.at).toBe("2025-06-01T12:03:00.000Z");
  });

  it("shows a failed attempt, the retry and the verdict while a batch is still being worked on", async () => {
    const story = await retriedBatch();
    expect(log.readAll().filter((r) => r.kind.endsWith("(invalid)"))).toEqual([]);
    const { body: t } = await getJson<BatchTimeline>(`/v1/batches/${story}`);
    expect(t.traceId).toBe("a".repeat(32));
    expect(t.verdict).toBe("awaiting-approval");
    expect(t.attempts.map((a) => [a.attempt, a.verdict])).toEqual([
      [1, "build-failed"],
      [2, "replay-passed"],
    ]);
    expect(t.attempts[0]!.reason).toBe("tsc: src/handler.ts(2,28): error TS2339");
    expect(t.timeline.map((e) => e.kind)).toEqual(["failure", "batch", "candidate-failed", "retry", "candidate", "replay", "verdict"]);
  });

  it("an operator's approval or rejection shows who decided and why", async () => {
    const id = await retriedBatch();
    await deliver(Messages.approval, { batchId: id, decision: "approve", by: "ana", reason: "diff is minimal" }, { at: "2025-06-02T09:10:00.000Z" });
    await deliver(Messages.approval, { batchId: id, decision: "reject", by: "bo" }, { at: "2025-06-02T09:11:00.000Z" });
    const { body: t } = await getJson<BatchTimeline>(`/v1/batches/${id}`);
    expect(t.timeline.slice(-2)).toEqual([
      // Delivered without a Moss-From stamp: the kind's one publisher, and the operator its token named.
      { at: "2025-06-02T09:10:00.000Z", kind: "approval", summary: "approve by ana: diff is minimal", who: "operator-api for operator ana" },
      { at: "2025-06-02T09:11:00.000Z", kind: "approval", summary: "reject by bo", who: "operator-api for operator bo" },
    ]);
  });

  it("an operator's reset of the batch's circuit breaker shows who reset it and what it was", async () => {
    const id = await retriedBatch();
    const reset = { agent: AGENT, fingerprint: "TypeError@checkout", breaker: `${AGENT}.aaaaaaaaaaaaaaaaaaaa`, batchId: id, by: "ana", was: { consecutiveRejections: 3, needsHuman: true }, at: "2025-06-02T09:20:00.000Z" };
    await deliver(Messages.breakerReset, reset, { at: "2025-06-02T09:20:00.000Z" });
    expect(log.readAll().at(-1)).toMatchObject({ kind: "breaker.reset.v1", batchId: id, data: reset });
    const { body: t } = await getJson<BatchTimeline>(`/v1/batches/${id}`);
    expect(t.timeline.at(-1)).toEqual({
      at: "2025-06-02T09:20:00.000Z",
      kind: "breaker-reset",
      summary: "circuit breaker of the fingerprint reset by ana (it was 3 rejection(s) in a row, needs-human)",
      who: "operator-api for operator ana",
    });
  });

  it("GET /v1/batches lists every batch, newest first, with its verdict", async () => {
    const story = await promotedBatch("b-old");
    const later = await retriedBatch("b-new");
    const { status, body } = await getJson<{ batches: Array<{ batchId: string; agent?: string; count?: number; verdict: string; lastAt: string }> }>("/v1/batches");
    expect(status).toBe(200);
    expect(body.batches).toEqual([
      { batchId: later, agent: AGENT, count: 1, verdict: "awaiting-approval", lastAt: "2025-06-02T09:06:00.000Z" },
      { batchId: story.batchId, agent: AGENT, count: 3, verdict: "promoted", lastAt: "2025-06-01T12:03:00.000Z" },
    ]);
  });

  it("an unknown batch is a 404 that says how to find the right id", async () => {
    await promotedBatch();
    const { status, body } = await getJson<{ error: string; message: string }>("/v1/batches/b-nope");
    expect(status).toBe(404);
    expect(body.error).toBe("MOSS_E_BATCH_NOT_FOUND");
    expect(body.message).toContain("b-nope");
    expect(body.message).toContain("moss batches");
  });

  it("a redelivered message changes nothing", async () => {
    const story = await promotedBatch();
    const before = await getJson<BatchTimeline>(`/v1/batches/${story.batchId}`);
    const n = log.readAll().length;
    await deliver(Messages.batchReady, log.readAll().find((r) => r.kind === "batch.ready.v1")!.data, { streamSeq: story.readySeq, deliveryCount: 2, at: "2025-06-01T12:30:00.000Z" });
    expect(log.readAll()).toHaveLength(n);
    expect((await getJson<BatchTimeline>(`/v1/batches/${story.batchId}`)).body).toEqual(before.body);
  });

  it("GET /v1/failures/:id/cassette answers a failure's recorded calls, inline or from the blob store, and says why when there are none", async () => {
    const call = { method: "POST", url: "https://api.openai.com/v1/chat/completions", headers: { authorization: "[redacted]" } };
    const inline = { schema: "moss.cassette.v1", failureId: "f-cas1", calls: [call], truncated: false };
    await deliver(Messages.failure, { ...failure("f-cas1", "2025-06-01T11:00:00.000Z", "/v1/chat", "boom"), cassette: { inline } }, { subject: failureSubject(AGENT) });
    const stored = await blob.put(JSON.stringify({ ...inline, failureId: "f-cas2", calls: [call, call] }), { contentType: "application/json" });
    await deliver(Messages.failure, { ...failure("f-cas2", "2025-06-01T11:00:01.000Z", "/v1/chat", "boom"), cassette: { blob: stored } }, { subject: failureSubject(AGENT) });
    await deliver(Messages.failure, failure("f-none", "2025-06-01T11:00:02.000Z", "/v1/chat", "boom"), { subject: failureSubject(AGENT) });
    expect(await getJson("/v1/failures/f-cas1/cassette")).toEqual({ status: 200, body: inline });
    const two = await getJson<{ failureId: string; calls: unknown[] }>("/v1/failures/f-cas2/cassette");
    expect(two.status).toBe(200);
    expect(two.body.calls).toHaveLength(2);
    const none = await getJson<{ error: string; message: string }>("/v1/failures/f-none/cassette");
    expect(none).toMatchObject({ status: 404, body: { error: "MOSS_E_NO_CASSETTE", message: expect.stringContaining("without a cassette") } });
    expect(await getJson("/v1/failures/nope/cassette")).toMatchObject({ status: 404, body: { error: "MOSS_E_FAILURE_NOT_FOUND" } });
  });

  it("GET /v1/audit/verify reports the chain intact with every record counted", async () => {
    await promotedBatch();
    const { status, body } = await getJson<{ ok: boolean; records: number }>("/v1/audit/verify");
    expect(status).toBe(200);
    expect(body).toEqual({ ok: true, records: 7, checkpoints: 0, unsigned: 0 });
    expect((await getJson<{ records: number }>("/health")).body).toEqual({ ok: true, records: 7 });
  });

  it("records an invalid payload as '<kind> (invalid)' without spoiling the batch view", async () => {
    const story = await promotedBatch();
    const bad = { batchId: story.batchId, agent: AGENT, attempt: 2, commit: "not-a-sha" };
    await deliver(Messages.candidateReady, bad, { at: "2025-06-01T12:04:00.000Z" });

    const last = log.readAll().at(-1)!;
    expect(last).toMatchObject({ kind: "candidate.ready.v1 (invalid)", batchId: story.batchId, stream: "MOSS_PIPELINE", subject: "moss.candidate.ready.v1", data: bad, traceId: TRACE_ID });
    const { status, body: t } = await getJson<BatchTimeline>(`/v1/batches/${story.batchId}`);
    expect(status).toBe(200);
    expect(t.attempts.map((a) => a.attempt)).toEqual([1]);
    expect(t.verdict).toBe("promoted");
    expect((await getJson<{ ok: boolean; records: number }>("/v1/audit/verify")).body).toEqual({ ok: true, records: 8, checkpoints: 0, unsigned: 0 });
  });

  it("records a payload that is not even JSON", async () => {
    await deliver(Messages.approval, "approve b-1 please", { at: "2025-06-01T12:04:00.000Z" });
    expect(log.readAll().at(-1)).toMatchObject({ kind: "approval.v1 (invalid)", data: "approve b-1 please" });
    expect(log.readAll().at(-1)!.batchId).toBeUndefined();
  });

  it("GET /v1/dead-letters lists the dead letters and nothing else", async () => {
    await promotedBatch();
    const dl: DeadLetter = {
      subject: "moss.candidate.ready.v1",
      stream: "MOSS_PIPELINE",
      consumer: "replayer",
      streamSeq: 42,
      reason: "image moss/shop:abc not found",
      code: "MOSS_E_IMAGE_MISSING",
      payloadBase64: Buffer.from('{"batchId":"b-x"}').toString("base64"),
      truncated: false,
      headers: { "Nats-Msg-Id": ["candidate-b-x-1"] },
      at: "2025-06-01T12:05:00.000Z",
    };
    await deliver(Messages.deadLetter, dl, { subject: deadLetterSubject("MOSS_PIPELINE", "replayer"), at: "2025-06-01T12:05:01.000Z" });

    const { status, body } = await getJson<{ deadLetters: Array<Record<string, unknown>> }>("/v1/dead-letters");
    expect(status).toBe(200);
    expect(body.deadLetters).toEqual([dl]);
  });

  it("the lists page: dead letters and batches come a page at a time, with a cursor to the next", async () => {
    for (let i = 1; i <= 3; i++) {
      const dl = { subject: "moss.approval.v1", stream: "MOSS_PIPELINE", consumer: "promoter", streamSeq: 100 + i, reason: `r${i}`, code: "MOSS_E_INVALID_MESSAGE", payloadBase64: "", truncated: false, headers: {}, at: `2025-06-01T12:0${i}:00.000Z` };
      await deliver(Messages.deadLetter, dl, { subject: deadLetterSubject("MOSS_PIPELINE", "promoter") });
    }
    const first = (await getJson<{ deadLetters: Array<{ reason: string }>; next?: string }>("/v1/dead-letters?limit=2")).body;
    expect(first.deadLetters.map((d) => d.reason)).toEqual(["r1", "r2"]);
    const second = (await getJson<{ deadLetters: Array<{ reason: string }>; next?: string }>(`/v1/dead-letters?limit=2&after=${first.next}`)).body;
    expect(second).toEqual({ deadLetters: [expect.objectContaining({ reason: "r3" })] });

    await promotedBatch();
    await deliver(Messages.approval, { batchId: "b-other", decision: "reject", by: "bob", reason: "" }, { at: "2025-06-03T00:00:00.000Z" });
    const page1 = (await getJson<{ batches: Array<{ batchId: string }>; next?: string }>("/v1/batches?limit=1")).body;
    expect(page1.batches.map((b) => b.batchId)).toEqual(["b-other"]);
    const page2 = (await getJson<{ batches: Array<{ batchId: string }>; next?: string }>(`/v1/batches?limit=1&before=${encodeURIComponent(page1.next!)}`)).body;
    expect(page2.batches).toHaveLength(1);
    expect(page2.batches[0]!.batchId).not.toBe("b-other");
  });

  it("GET /v1/dead-letters is empty when nothing was dead-lettered", async () => {
    await promotedBatch();
    expect((await getJson<{ deadLetters: unknown[] }>("/v1/dead-letters")).body).toEqual({ deadLetters: [] });
  });

  it("survives a restart: a new app over the reopened log tells the same story", async () => {
    const story = await promotedBatch();
    const before = (await getJson<BatchTimeline>(`/v1/batches/${story.batchId}`)).body;
    log.close();
    log = new AuditLog(join(dir, "audit", "audit.jsonl"));
    await app.close();
    app = buildApp({ log, blob });
    expect((await getJson<BatchTimeline>(`/v1/batches/${story.batchId}`)).body).toEqual(before);
  });

  // Timeline times are compared as instants: agents may stamp `occurredAt` without fractional seconds ("…:00Z"), and
  // as strings '.' sorts before 'Z', which put a failure at 12:00:00 after a batch closed at 12:00:00.300.
  it("orders a failure stamped without fractional seconds before a step in the same second", async () => {
    const f = failure("f-go", "2025-06-01T12:00:00Z", "/v1/checkout", "boom");
    await deliver(Messages.failure, f, { subject: failureSubject(AGENT), at: "2025-06-01T12:00:00.100Z" });
    const ref = { id: f.id, event: await blob.put(JSON.stringify(f)) };
    await deliver(Messages.batchReady, { batchId: "b-go", agent: AGENT, fingerprint: "fp", fingerprintKey: "cccccccccccccccccccc", baseVersion: BASE, failures: [ref], count: 1 }, { at: "2025-06-01T12:00:00.300Z" });
    const { body: t } = await getJson<BatchTimeline>("/v1/batches/b-go");
    expect(t.timeline.map((e) => e.kind)).toEqual(["failure", "batch"]);
  });

  // An invalid failure.v1 is recorded but not indexed by its id, or it would replace the valid event in byFailure and
  // every batch view that renders it would answer 500.
  it("an invalid failure.v1 reusing a batched failure's id does not break the batch views", async () => {
    const story = await promotedBatch();
    await deliver(Messages.failure, { id: "f-aaa", agent: AGENT, note: "re-sent without a request" }, { subject: failureSubject(AGENT), at: "2025-06-01T12:10:00.000Z" });
    expect(log.readAll().at(-1)?.kind).toBe("failure.v1 (invalid)");
    const { status, body: t } = await getJson<BatchTimeline>(`/v1/batches/${story.batchId}`);
    expect(status).toBe(200);
    expect(t.failures.find((f) => f.id === "f-aaa")?.request?.path).toBe("/v1/checkout");
    expect((await app.inject({ method: "GET", url: "/v1/batches" })).statusCode).toBe(200);
  });
});

/** A second batch on a later day: one failure, a build failure, a retry, a passing replay, awaiting approval. */
async function retriedBatch(batchId = "b-20250602-7"): Promise<string> {
  const f = failure(`f-${batchId}`, "2025-06-02T09:00:00.000Z", "/v1/cart", "cart is undefined");
  await deliver(Messages.failure, f, { subject: failureSubject(AGENT), at: "2025-06-02T09:00:00.500Z" });
  const refs = [{ id: f.id, event: await blob.put(JSON.stringify(f)) }];
  const batchBase = { batchId, agent: AGENT, fingerprint: "TypeError@cart", fingerprintKey: "bbbbbbbbbbbbbbbbbbbb", baseVersion: BASE, failures: refs, count: 1 };
  await deliver(Messages.batchReady, batchBase, { at: "2025-06-02T09:01:00.000Z", traceId: "a".repeat(32) });
  await deliver(Messages.candidateFailed, { ...batchBase, attempt: 1, verdict: "build-failed", reason: "tsc: src/handler.ts(2,28): error TS2339" }, { at: "2025-06-02T09:02:00.000Z" });
  const evidence = [{ attempt: 1, verdict: "build-failed", reason: "tsc failed" }];
  await deliver(Messages.batchRetry, { ...batchBase, attempt: 2, previous: evidence }, { at: "2025-06-02T09:03:00.000Z" });
  const diff = await blob.put("diff --git a/x b/x\n");
  const image = `moss/${AGENT}:${COMMIT.slice(0, 12)}`;
  await deliver(Messages.candidateReady, { ...batchBase, attempt: 2, previous: evidence, commit: COMMIT, branch: "b", image, diff, filesChanged: ["src/cart.ts"] }, { at: "2025-06-02T09:04:00.000Z" });
  await deliver(
    Messages.replayCompleted,
    { ...batchBase, attempt: 2, commit: COMMIT, image, diff, passed: true, results: [{ failureId: f.id, passed: true, reason: "200", durationMs: 12 }] },
    { at: "2025-06-02T09:05:00.000Z" },
  );
  await deliver(Messages.batchVerdict, { batchId, agent: AGENT, attempt: 2, commit: COMMIT, image, verdict: "awaiting-approval", reason: "replay passed; run moss approve" }, { at: "2025-06-02T09:06:00.000Z" });
  return batchId;
}
