import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describeInput,
  AllMessages,
  compiled,
  Consumers,
  deadLetterSubject,
  failureSubject,
  successSubject,
  FailureEvent,
  messageForSubject,
  Messages,
  StreamDefs,
  Streams,
  subjectMatches,
  toJsonSchemas,
  type MessageName,
} from "@moss/contracts";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const run = promisify(execFile);

/** Whether some concrete subject matches both patterns (NATS `*` = one token, `>` = one or more). */
function overlap(a: string, b: string): boolean {
  const x = a.split(".");
  const y = b.split(".");
  for (let i = 0; ; i++) {
    if (x[i] === ">") return y.length > i;
    if (y[i] === ">") return x.length > i;
    if (i >= x.length || i >= y.length) return x.length === y.length;
    if (x[i] !== "*" && y[i] !== "*" && x[i] !== y[i]) return false;
  }
}

/** Whether every subject `inner` matches is also matched by `outer`. */
function covers(outer: string, inner: string): boolean {
  const o = outer.split(".");
  const n = inner.split(".");
  for (let i = 0; i < o.length; i++) {
    if (o[i] === ">") return n.length > i;
    if (i >= n.length || n[i] === ">") return false;
    if (o[i] !== "*" && (n[i] === "*" || o[i] !== n[i])) return false;
  }
  return o.length === n.length;
}

/** Concrete subjects a publisher really uses, one per message. */
const concrete: Record<MessageName, string> = {
  failure: failureSubject("shop"),
  success: successSubject("shop"),
  batchReady: Messages.batchReady.subject,
  batchRetry: Messages.batchRetry.subject,
  candidateReady: Messages.candidateReady.subject,
  candidateFailed: Messages.candidateFailed.subject,
  replayTrial: Messages.replayTrial.subject,
  replayCompleted: Messages.replayCompleted.subject,
  batchVerdict: Messages.batchVerdict.subject,
  approval: Messages.approval.subject,
  promotion: Messages.promotion.subject,
  regression: Messages.regression.subject,
  breakerReset: Messages.breakerReset.subject,
  regressionCase: Messages.regressionCase.subject,
  auditCheckpoint: Messages.auditCheckpoint.subject,
  rollback: Messages.rollback.subject,
  rollbackDone: Messages.rollbackDone.subject,
  timeTravel: Messages.timeTravel.subject,
  timeTravelReady: Messages.timeTravelReady.subject,
  timeTravelDone: Messages.timeTravelDone.subject,
  bisect: Messages.bisect.subject,
  review: Messages.review.subject,
  reviewDone: Messages.reviewDone.subject,
  deadLetter: deadLetterSubject(Streams.PIPELINE, "replayer"),
};

describe("subjectMatches", () => {
  it.each([
    ["moss.failure.*", "moss.failure.shop", true],
    ["moss.failure.*", "moss.failure", false],
    ["moss.failure.*", "moss.failure.shop.extra", false],
    ["moss.dlq.>", "moss.dlq.MOSS_PIPELINE.replayer", true],
    ["moss.dlq.>", "moss.dlq.x", true],
    ["moss.dlq.>", "moss.dlq", false],
    ["moss.*.ready.v1", "moss.batch.ready.v1", true],
    ["moss.batch.ready.v1", "moss.batch.ready.v1", true],
    ["moss.batch.ready.v1", "moss.batch.ready.v2", false],
    ["moss.batch.ready.v1", "moss.batch.ready", false],
    ["moss.batch.ready", "moss.batch.ready.v1", false],
    [">", "anything.at.all", true],
    ["*", "one", true],
    ["*", "one.two", false],
  ] as const)("%s vs %s → %s", (pattern, subject, expected) => {
    expect(subjectMatches(pattern, subject)).toBe(expected);
  });

  it("messageForSubject finds the definition behind a concrete subject", () => {
    expect(messageForSubject("moss.failure.shop")).toBe(Messages.failure);
    expect(messageForSubject("moss.dlq.MOSS_FAILURES.curator")).toBe(Messages.deadLetter);
    expect(messageForSubject(Messages.promotion.subject)).toBe(Messages.promotion);
    expect(messageForSubject("moss.batch.ready.v2")).toBeUndefined();
    expect(messageForSubject("moss.failure.shop.extra")).toBeUndefined();
  });

  it("the test's own pattern helpers agree with subjectMatches on concrete subjects", () => {
    expect(overlap("moss.batch.>", "moss.*.ready.v1")).toBe(true);
    expect(overlap("moss.batch.>", "moss.candidate.>")).toBe(false);
    expect(overlap("moss.failure.*", "moss.failure.*.x")).toBe(false);
    expect(covers("moss.batch.>", "moss.batch.ready.v1")).toBe(true);
    expect(covers("moss.*.*", "moss.>")).toBe(false);
    expect(covers("moss.failure.x", "moss.failure.*")).toBe(false);
  });
});

describe("topology", () => {
  it("every message is stored by exactly one stream, the one it names", () => {
    for (const m of AllMessages) {
      const holders = StreamDefs.filter((s) => s.subjects.some((p) => covers(p, m.subject)));
      expect(holders.map((s) => s.name), m.name).toEqual([m.stream]);
    }
    // The subjects publishers really use land in the same stream.
    for (const [key, subject] of Object.entries(concrete)) {
      const m = Messages[key as MessageName];
      expect(subjectMatches(m.subject, subject), `${key}: ${subject}`).toBe(true);
      const holders = StreamDefs.filter((s) => s.subjects.some((p) => subjectMatches(p, subject)));
      expect(holders.map((s) => s.name), subject).toEqual([m.stream]);
    }
  });

  it("message names and subjects are unique and versioned", () => {
    expect(new Set(AllMessages.map((m) => m.name)).size).toBe(AllMessages.length);
    expect(new Set(AllMessages.map((m) => m.subject)).size).toBe(AllMessages.length);
    for (const m of AllMessages) expect(m.name, m.name).toMatch(/\.v\d+$/);
    // No two messages can be confused for each other on the wire.
    for (const a of AllMessages) for (const b of AllMessages) if (a !== b) expect(overlap(a.subject, b.subject), `${a.name} / ${b.name}`).toBe(false);
  });

  it("no two streams overlap (NATS refuses to create them) and every stream is named once", () => {
    expect(new Set(StreamDefs.map((s) => s.name))).toEqual(new Set(Object.values(Streams)));
    expect(StreamDefs).toHaveLength(Object.values(Streams).length);
    for (const [i, a] of StreamDefs.entries())
      for (const b of StreamDefs.slice(i + 1))
        for (const p of a.subjects) for (const q of b.subjects) expect(overlap(p, q), `${a.name} ${p} / ${b.name} ${q}`).toBe(false);
  });

  it("every consumer filters only subjects of its own stream", () => {
    for (const [key, c] of Object.entries(Consumers)) {
      const stream = StreamDefs.find((s) => s.name === c.stream);
      expect(stream, key).toBeDefined();
      expect(c.filterSubjects.length, key).toBeGreaterThan(0);
      for (const f of c.filterSubjects) expect(stream!.subjects.some((p) => covers(p, f)), `${key}: ${f}`).toBe(true);
      expect(c.maxDeliver).toBeGreaterThan(1);
      expect(c.ackWaitMs).toBeGreaterThan(0);
    }
    expect(new Set(Object.values(Consumers).map((c) => c.durable)).size).toBe(Object.keys(Consumers).length);
  });

  it("the auditor's consumers see every message there is, but the work queue's (its outcome is replay.completed) and the sampled successes (kept in the regression set; what a candidate did to them is in replay.completed)", () => {
    const auditor = [Consumers.auditorFailures, Consumers.auditorPipeline, Consumers.auditorDlq];
    // A work-queue stream shares each message with one consumer only: the trials are the replayers' to take.
    const workQueues = new Set(StreamDefs.filter((d) => d.retention === "workqueue").map((d) => d.name));
    expect([...workQueues]).toEqual([Streams.TRIALS]);
    const unaudited = new Set([...workQueues, Streams.SUCCESSES]);
    for (const m of AllMessages) {
      if (unaudited.has(m.stream)) {
        expect(auditor.filter((c) => c.stream === m.stream), m.name).toEqual([]);
        continue;
      }
      const seenBy = auditor.filter((c) => c.stream === m.stream && c.filterSubjects.some((f) => covers(f, m.subject)));
      expect(seenBy, m.name).toHaveLength(1);
    }
  });
});

const minimalFailure = {
  id: "f-01HZX",
  agent: "shop",
  version: "0123abc",
  occurredAt: "2025-06-01T12:00:00.000Z",
  request: { path: "/v1/checkout" },
  error: { type: "TypeError", message: "x is undefined" },
};

describe("FailureEvent", () => {
  it("is an HTTP request or a command invocation, exactly one of the two, and says so", () => {
    const { request: _r, ...noRequest } = minimalFailure as typeof minimalFailure & { request: unknown };
    const cmd = FailureEvent.parse({ ...noRequest, invocation: { args: ["summarize", "a b.txt"], stdin: "x" } });
    expect(cmd.invocation).toEqual({ args: ["summarize", "a b.txt"], stdin: "x" });
    expect(describeInput(cmd)).toBe('run summarize "a b.txt"');
    expect(describeInput(FailureEvent.parse(minimalFailure))).toBe("POST /v1/checkout");
    for (const bad of [noRequest, { ...minimalFailure, invocation: { args: [] } }]) {
      const r = FailureEvent.safeParse(bad);
      expect(r.success).toBe(false);
      expect(r.error!.issues.map((i) => i.message)).toContain("a failure needs exactly one of `request` (an HTTP agent) or `invocation` (a command agent)");
    }
  });

  it("accepts a minimal event and fills in the defaults", () => {
    const ev = FailureEvent.parse(minimalFailure);
    expect(ev).toEqual({
      ...minimalFailure,
      schema: "moss.failure.v1",
      request: { path: "/v1/checkout", method: "POST", headers: {} },
      logs: [],
      env: {},
      timeoutMs: 10_000,
      tags: {},
    });
  });

  it("accepts a snapshot given by blob reference or inline, but not both and not neither", () => {
    const blob = { sha256: "a".repeat(64), size: 10240 };
    expect(FailureEvent.safeParse({ ...minimalFailure, snapshot: { path: "/data", blob } }).success).toBe(true);
    expect(FailureEvent.safeParse({ ...minimalFailure, snapshot: { path: "/data", inlineBase64: "aGk=" } }).success).toBe(true);
    const both = FailureEvent.safeParse({ ...minimalFailure, snapshot: { path: "/data", blob, inlineBase64: "aGk=" } });
    expect(both.success).toBe(false);
    expect(both.error?.issues[0]).toMatchObject({ path: ["snapshot"], message: "snapshot needs exactly one of `blob` or `inlineBase64`" });
    expect(FailureEvent.safeParse({ ...minimalFailure, snapshot: { path: "/data" } }).success).toBe(false);
  });

  it.each([
    ["an agent name with capitals", { agent: "Shop" }, "agent"],
    ["an agent name with a dot (it is a subject token)", { agent: "shop.eu" }, "agent"],
    ["an id with a space", { id: "f 1" }, "id"],
    ["a version that is not a git sha", { version: "v1.2.3" }, "version"],
    ["a time that is not ISO", { occurredAt: "yesterday" }, "occurredAt"],
    ["a relative request path", { request: { path: "v1/checkout" } }, "request.path"],
    ["another schema", { schema: "moss.failure.v2" }, "schema"],
  ])("rejects %s", (_, patch, path) => {
    const res = FailureEvent.safeParse({ ...minimalFailure, ...patch });
    expect(res.success).toBe(false);
    expect(res.error?.issues.map((i) => i.path.join("."))).toContain(path);
  });
});

/** One valid (input-side, defaults omitted) payload per message. */
const sha = "b".repeat(64);
const ref = { sha256: sha, size: 1 };
const base = { batchId: "b-1", agent: "shop", fingerprint: "fp", fingerprintKey: "aaaaaaaaaaaaaaaaaaaa", baseVersion: "0123abc", failures: [{ id: "f-1", event: ref }], count: 1 };
const samples: Record<string, unknown> = {
  "failure.v1": minimalFailure,
  "success.v1": { id: "s1", agent: "shop", version: "0123abcd", occurredAt: "2025-01-01T00:00:00.000Z", request: { path: "/v1/chat" }, response: { status: 200, body: "{}" } },
  "batch.ready.v1": base,
  "batch.retry.v1": { ...base, attempt: 2, previous: [{ attempt: 1, verdict: "build-failed", reason: "tsc" }] },
  "candidate.ready.v1": { ...base, attempt: 1, commit: "0123abcd", branch: "moss/b-1/1", image: "moss/shop:0123abcd", diff: ref, filesChanged: ["a.ts"] },
  "candidate.failed.v1": { ...base, attempt: 1, verdict: "no-change", reason: "the coding agent changed nothing" },
  "replay.trial.v1": { batchId: "b-1", agent: "shop", attempt: 1, candidate: ref, failureId: "f-1", trial: 1, of: 3 },
  "replay.completed.v1": { ...base, attempt: 1, commit: "0123abcd", image: "i", diff: ref, passed: true, results: [{ failureId: "f-1", passed: true, reason: "200", durationMs: 5 }] },
  "batch.verdict.v1": { batchId: "b-1", agent: "shop", attempt: 1, verdict: "exhausted", reason: "3 attempts" },
  "approval.v1": { batchId: "b-1", decision: "approve", by: "ana" },
  "promotion.outcome.v1": { batchId: "b-1", agent: "shop", attempt: 1, commit: "0123abcd", image: "i", outcome: "rolled-back", reason: "2 probes failed", probes: { ok: 1, failed: 2 }, approvedBy: "ana" },
  "regression.v1": { agent: "shop", fingerprint: "fp", batchId: "b-1", version: "0123abcd", failureId: "f-9", at: "2025-06-01T12:00:00.000Z" },
  "breaker.reset.v1": { agent: "shop", fingerprint: "fp", breaker: "shop.aaaaaaaaaaaaaaaaaaaa", batchId: "b-1", by: "ana", was: { consecutiveRejections: 3, needsHuman: true }, at: "2025-06-01T12:00:00.000Z" },
  "audit.checkpoint.v1": { seq: 1000, data: '{"seq":1000,"from":1,"hash":"ab"}', signature: "-----BEGIN SSH SIGNATURE-----" },
  "regression.case.v1": { agent: "shop", caseId: "s-1", action: "pinned", by: "ana", at: "2025-06-01T12:00:00.000Z" },
  "rollback.v1": { id: "rb-1", agent: "shop", to: "0123abcd", by: "ana", reason: "pager", at: "2025-06-01T12:00:00.000Z" },
  "rollback.done.v1": { requestId: "rb-1", agent: "shop", outcome: "rolled-back", from: { version: "0123abcd", image: "i2" }, to: { version: "89abcdef", image: "i1" }, by: "ana", reason: "rolled back by ana: pager" },
  "time-travel.request.v1": { id: "tt-1", agent: "shop", version: "moss/b1/2", cases: [{ kind: "failure", id: "f1", event: { sha256: "a".repeat(64), size: 10 }, batchId: "b1" }], by: "ana", at: "2025-06-01T12:00:00.000Z" },
  "time-travel.ready.v1": { id: "tt-1", agent: "shop", version: "live", cases: [{ kind: "regression", id: "s1", event: { sha256: "a".repeat(64), size: 10 } }], by: "ana", at: "2025-06-01T12:00:00.000Z", commit: "0123abcd", image: "moss/shop:0123abcd", built: true, buildMs: 4200 },
  "bisect.request.v1": { id: "bi-1", agent: "shop", failure: { kind: "failure", id: "f1", event: { sha256: "a".repeat(64), size: 10 }, batchId: "b1" }, good: "v1.0", bad: "live", fixed: true, by: "ana", at: "2025-06-01T12:00:00.000Z" },
  "review.request.v1": { id: "rv-1", kind: "mark-reviewed", agent: "shop", version: "0123abcd", by: "ana", at: "2025-06-01T12:00:00.000Z" },
  "review.done.v1": { requestId: "rv-1", kind: "diff", agent: "shop", version: "live", commit: "0123abcd", by: "ana", summary: "2 Moss commits, 1 file, 1 change in routing", at: "2025-06-01T12:00:00.000Z" },
  "time-travel.done.v1": { requestId: "tt-1", agent: "shop", version: "live", commit: "0123abcd", image: "moss/shop:0123abcd", built: false, results: [{ failureId: "f1", passed: false, verdict: "fail", reason: "answered 500", durationMs: 40, timedOut: false }], regressions: [], at: "2025-06-01T12:00:01.000Z" },
  "dlq.v1": { subject: "moss.batch.ready.v1", stream: "MOSS_PIPELINE", consumer: "rewriter", streamSeq: 3, reason: "bad", code: "MOSS_E_X", payloadBase64: "e30=", at: "2025-06-01T12:00:00Z" },
};

describe("compiled fast path (z.compile)", () => {
  /** A full failure event: every optional part present, so mutations reach every field. */
  const fullFailure = {
    ...minimalFailure,
    schema: "moss.failure.v1",
    route: "checkout",
    request: { method: "POST", path: "/v1/checkout?x=1", headers: { "content-type": "application/json" }, body: '{"sku":1}' },
    response: { status: 500, body: "oops" },
    error: { type: "TypeError", message: "x is undefined", stack: "TypeError: x\n    at f (/app/a.ts:1:2)", frames: [{ file: "/app/a.ts", function: "f", line: 1 }] },
    logs: ["a", "b"],
    env: { TZ: "UTC" },
    timeoutMs: 5_000,
    snapshot: { path: "/state", blob: { sha256: sha, size: 10, contentType: "application/x-tar" } },
    expect: { statusMin: 200, statusMax: 299 },
    fingerprint: "own",
    tags: { tool: "calc" },
  };
  /** Values that probe types, bounds, integer and safe-integer checks, formats, and UTF-16 vs code-point lengths. */
  const probes: unknown[] = [undefined, null, true, 0, -1, 1.5, 2 ** 60, Number.NaN, "", "x", "/", "a".repeat(201), "\u{1F600}".repeat(101), [], [1], {}, { a: 1 }, "2025-06-01T12:00:00Z", "2025-13-01T12:00:00Z"];

  /** Every copy of `v` with one leaf (or one whole subtree) replaced by one probe, plus an unknown extra key per object. */
  function* mutations(v: unknown, path: string[] = []): Generator<{ path: string; value: unknown }> {
    const set = (root: unknown, at: string[], to: unknown): unknown => {
      if (at.length === 0) return to;
      const [k, ...rest] = at as [string, ...string[]];
      const copy: Record<string, unknown> | unknown[] = Array.isArray(root) ? [...root] : { ...(root as Record<string, unknown>) };
      (copy as Record<string, unknown>)[k] = set((root as Record<string, unknown>)[k], rest, to);
      if (to === undefined && rest.length === 0 && !Array.isArray(copy)) delete (copy as Record<string, unknown>)[k];
      return copy;
    };
    const walk = function* (node: unknown, at: string[]): Generator<string[]> {
      yield at;
      if (node && typeof node === "object") for (const k of Object.keys(node)) yield* walk((node as Record<string, unknown>)[k], [...at, k]);
    };
    for (const at of walk(v, path)) {
      for (const p of probes) yield { path: at.join(".") || "(root)", value: set(v, at, p) };
      const node = at.reduce<unknown>((n, k) => (n as Record<string, unknown>)[k], v);
      if (node && typeof node === "object" && !Array.isArray(node)) yield { path: `${at.join(".")}+extra`, value: set(v, at, { ...node, extraKey: 1 }) };
    }
  }

  const outcome = (r: { success: boolean; data?: unknown; error?: { issues: Array<{ code: string; path: PropertyKey[]; message: string }> } }) =>
    r.success ? { ok: r.data } : { issues: r.error!.issues.map((i) => ({ code: i.code, path: i.path.map(String), message: i.message })) };

  it("agrees with the runtime parser on every message sample and on each structural mutation of it", () => {
    let cases = 0;
    for (const m of AllMessages) {
      const fast = compiled(m.schema);
      const inputs = m.name === "failure.v1" ? [samples[m.name], fullFailure] : [samples[m.name]];
      for (const input of inputs) {
        for (const { path, value } of mutations(input)) {
          cases++;
          expect(outcome(fast.safeParse(value)), `${m.name} with ${path} mutated`).toEqual(outcome(m.schema.safeParse(value)));
        }
      }
    }
    expect(cases).toBeGreaterThan(1_000);
  });

  it("is the same compiled schema each time, and a rejection carries the runtime's exact issues", () => {
    expect(compiled(FailureEvent)).toBe(compiled(FailureEvent));
    const bad = { ...minimalFailure, occurredAt: "yesterday", request: { path: "no-slash" } };
    expect(compiled(FailureEvent).safeParse(bad).error?.issues).toEqual(FailureEvent.safeParse(bad).error?.issues);
  });
});

describe("JSON Schema export", () => {
  const schemas = toJsonSchemas();

  it("has one draft-7 schema per message, named and tagged with its subject", () => {
    expect(Object.keys(schemas).sort()).toEqual(AllMessages.map((m) => m.name).sort());
    for (const m of AllMessages) {
      expect(schemas[m.name], m.name).toMatchObject({
        $schema: "http://json-schema.org/draft-07/schema#",
        $id: `https://moss.dev/schemas/${m.name}.json`,
        title: m.name,
        "x-moss-subject": m.subject,
        type: "object",
      });
    }
  });

  it("describes the input side: defaulted fields are optional, required ones are required", () => {
    const f = schemas["failure.v1"] as { required: string[]; properties: Record<string, { default?: unknown }>; oneOf: unknown[] };
    expect([...f.required].sort()).toEqual(["agent", "error", "id", "occurredAt", "version"]);
    expect(f.oneOf).toEqual([{ required: ["request"], properties: { request: {} } }, { required: ["invocation"], properties: { invocation: {} } }]);
    expect(f.properties["timeoutMs"]?.default).toBe(10_000);
  });

  it("the sample payloads used below are valid per the zod schemas", () => {
    for (const m of AllMessages) {
      expect(samples[m.name], `add a sample payload for ${m.name} to this test`).toBeDefined();
      expect(m.schema.safeParse(samples[m.name]).success, m.name).toBe(true);
    }
  });

  const ajvResolvable = (() => {
    try {
      createRequire(join(ROOT, "package.json")).resolve("ajv");
      return true;
    } catch {
      return false;
    }
  })();

  /** Ajv as another-language agent would use it: draft-7, standard formats, the x-moss-subject annotation allowed. */
  async function ajvFor(opts: { tolerateUnknownFormats: boolean }) {
    const { default: Ajv } = await import("ajv");
    const ajv = new Ajv({ allErrors: true, strict: true });
    ajv.addKeyword("x-moss-subject");
    // date-time is checked by the pattern zod emits next to it; only the format name must be known.
    ajv.addFormat("date-time", true);
    if (opts.tolerateUnknownFormats) ajv.addFormat("starts_with", true);
    return ajv;
  }

  it.skipIf(!ajvResolvable)("a standard validator (ajv, already in node_modules via fastify) agrees with zod on every sample", async () => {
    const ajv = await ajvFor({ tolerateUnknownFormats: true });
    for (const m of AllMessages) {
      const validate = ajv.compile(schemas[m.name] as object);
      expect(validate(samples[m.name]), `${m.name}: ${ajv.errorsText(validate.errors)}`).toBe(true);
    }
    const failure = ajv.compile(schemas["failure.v1"] as object);
    expect(failure({ ...minimalFailure, agent: "Shop" })).toBe(false);
    expect(failure({ ...minimalFailure, request: { path: "v1" } })).toBe(false);
    expect(failure({ ...minimalFailure, occurredAt: "2025-06-01 12:00" })).toBe(false);
    const { error: _e, ...noError } = minimalFailure;
    expect(failure(noError)).toBe(false);
    expect(failure.errors?.[0]).toMatchObject({ keyword: "required", params: { missingProperty: "error" } });
  });

  // zod emits `"format": "starts_with"` for `.startsWith("/")`; the export drops formats draft-7 does not define
  // (the `pattern` next to it says the same), or Ajv in strict mode refuses to compile failure.v1.json.
  it.skipIf(!ajvResolvable)("every exported schema compiles in a strict standard validator without extra formats", async () => {
    const ajv = await ajvFor({ tolerateUnknownFormats: false });
    for (const m of AllMessages) expect(() => ajv.compile(schemas[m.name] as object), m.name).not.toThrow();
  });

  let out: string | undefined;
  afterAll(() => {
    if (out) rmSync(out, { recursive: true, force: true });
  });

  it("the export script writes one file per message", async () => {
    out = mkdtempSync(join(tmpdir(), "moss-schemas-"));
    const { stdout } = await run(process.execPath, ["--import", "tsx", "libs/contracts/scripts/export-json-schema.ts", out], { cwd: ROOT });
    expect(readdirSync(out).sort()).toEqual(AllMessages.map((m) => `${m.name}.json`).sort());
    expect(stdout.trim().split("\n")).toEqual(AllMessages.map((m) => `wrote ${join(out!, `${m.name}.json`)}`));
    for (const m of AllMessages) expect(JSON.parse(readFileSync(join(out, `${m.name}.json`), "utf8")), m.name).toEqual(schemas[m.name]);
  });

  // What agents in other languages read from the repo must be what the code validates today. When this fails,
  // run `npm run schemas` and commit libs/contracts/schemas/ together with the contract change.
  it("the committed libs/contracts/schemas/ are current", () => {
    const dir = join(ROOT, "libs", "contracts", "schemas");
    expect(readdirSync(dir).filter((f) => f.endsWith(".json")).sort(), "run npm run schemas").toEqual(AllMessages.map((m) => `${m.name}.json`).sort());
    for (const m of AllMessages) {
      const committed = readFileSync(join(dir, `${m.name}.json`), "utf8");
      expect(committed, `libs/contracts/schemas/${m.name}.json is stale; run npm run schemas`).toBe(JSON.stringify(schemas[m.name], null, 2) + "\n");
    }
  });
});
