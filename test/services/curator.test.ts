import { BatchRecord, FailureEvent, isTerminal, type BatchReady } from "@moss/contracts";
import { kvGet, type KV } from "@moss/bus";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FINGERPRINT_VERSION, fingerprintOf, topFrame } from "../../services/curator/src/handlers/fingerprint";
import { handleFailure, sweepExpired, type CuratorDeps } from "../../services/curator/src/handlers/failure";
import { failure, nodeStack, silent, startEnv, type Env } from "./helpers";

describe("fingerprint", () => {
  it("picks the top in-app frame, skipping node_modules and node: runtime frames", () => {
    const ev = failure({ id: "f1" });
    expect(topFrame(ev.error)).toBe("/app/src/chat.ts#handleChat");
    expect(fingerprintOf(ev).fingerprint).toBe(`${FINGERPRINT_VERSION}|TypeError|/app/src/chat.ts#handleChat|/v1/chat`);
  });

  it("skips legacy `internal/` frames and strips file:// from ESM frames", () => {
    const stack = [
      "Error: boom",
      "    at emit (internal/streams/readable.js:1:1)",
      "    at file:///app/dist/tools/search.js:10:2",
      "    at run (file:///app/dist/main.js:3:4)",
    ].join("\n");
    expect(topFrame({ type: "Error", message: "boom", stack })).toBe("/app/dist/tools/search.js#<anonymous>");
  });

  it("uses parsed frames when the agent sends them instead of a stack", () => {
    const ev = failure({
      id: "f1",
      error: {
        type: "TypeError",
        message: "x",
        frames: [
          { file: "/app/node_modules/lib/a.js", function: "lib", line: 1 },
          { file: "/app/src/tools.ts", function: "callTool", line: 7 },
        ],
      },
    });
    expect(topFrame(ev.error)).toBe("/app/src/tools.ts#callTool");
  });

  it("does not change when only line and column numbers move (a redeploy that shifted the code)", () => {
    const a = failure({ id: "a", error: { type: "TypeError", message: "m", stack: nodeStack({ line: 42 }) } });
    const b = failure({ id: "b", error: { type: "TypeError", message: "another message", stack: nodeStack({ line: 97 }) } });
    expect(fingerprintOf(a)).toEqual(fingerprintOf(b));
  });

  it("separates different routes, in-app functions and error types", () => {
    const base = fingerprintOf(failure({ id: "a" }));
    expect(fingerprintOf(failure({ id: "b", route: "/v1/search" })).key).not.toBe(base.key);
    expect(fingerprintOf(failure({ id: "c", error: { type: "TypeError", message: "m", stack: nodeStack({ fn: "handleTool" }) } })).key).not.toBe(base.key);
    expect(fingerprintOf(failure({ id: "d", error: { type: "RangeError", message: "m", stack: nodeStack() } })).key).not.toBe(base.key);
  });

  it("lets the agent's own fingerprint win, and the KV key is a short token-safe hash", () => {
    const a = fingerprintOf(failure({ id: "a", fingerprint: "llm-timeout" }));
    const b = fingerprintOf(failure({ id: "b", fingerprint: "llm-timeout", route: "/other", error: { type: "X", message: "y" } }));
    expect(a.fingerprint).toBe("llm-timeout");
    expect(b).toEqual(a);
    expect(a.key).toMatch(/^[a-f0-9]{20}$/);
  });

  // BUG (services/curator/src/handlers/fingerprint.ts, `frameRe`): V8 writes `at async fn (file:line:col)` for frames
  // resumed after an await, which is most in-app frames of an async agent. frameRe requires `<fn> (` right after
  // the "at", so `async handleChat (` does not match and the frame is dropped (same for `at new Tool (...)` and
  // `at Object.run [as go] (...)`). A failure thrown in a library under async in-app code then gets topFrame `-`, and
  // every such bug on the same route and error type collapses into one fingerprint.
  // Fix: allow optional `async ` / `new ` prefixes and an `[as x]` suffix, e.g.
  //   /^\s*at (?:async )?(?:new )?(?:(?<fn>[^\s(]+)(?: \[as [^\]]+\])? \()?(?<file>[^()]+?)(?::\d+){0,2}\)?\s*$/
  // and (see the next test) only accept files that look like paths, or `at async Promise.all (index 0)` becomes file
  // "index 0".
  it.skip("finds the in-app frame of an async call chain (`at async fn (...)`)", () => {
    const stack = [
      "TypeError: Cannot read properties of undefined (reading 'content')",
      "    at pick (/app/node_modules/llm-client/dist/index.js:120:17)",
      "    at async Promise.all (index 0)",
      "    at async handleChat (/app/src/chat.ts:42:13)",
      "    at async Server.<anonymous> (/app/src/server.ts:30:5)",
    ].join("\n");
    expect(topFrame({ type: "TypeError", message: "m", stack })).toBe("/app/src/chat.ts#handleChat");
    const ctor = ["Error: no key", "    at new LlmClient (/app/src/llm.ts:8:11)", "    at main (/app/src/main.ts:3:1)"].join("\n");
    expect(topFrame({ type: "Error", message: "m", stack: ctor })).toBe("/app/src/llm.ts#LlmClient");
  });

  // BUG (services/curator/src/handlers/fingerprint.ts, topFrame's in-app filter): native frames print as `at
  // JSON.parse (<anonymous>)`; `<anonymous>` is not excluded, so it is taken as the in-app frame. Every SyntaxError
  // from JSON.parse on a route fingerprints as `<anonymous>#JSON.parse`, whichever of the agent's functions called
  // it.
  // Fix: also skip files that are not paths, e.g. add `|^<anonymous>$|^native$` (or require a `/` or `\`) to the
  // filter.
  it.skip("skips native `(<anonymous>)` frames such as JSON.parse", () => {
    const stack = [
      "SyntaxError: Unexpected end of JSON input",
      "    at JSON.parse (<anonymous>)",
      "    at parseToolCall (/app/src/tools.ts:12:20)",
    ].join("\n");
    expect(topFrame({ type: "SyntaxError", message: "m", stack })).toBe("/app/src/tools.ts#parseToolCall");
  });
});

describe("handleFailure / sweepExpired with a real KV", () => {
  let env: Env;
  beforeAll(async () => {
    env = await startEnv("curator-test");
  });
  afterAll(async () => {
    await env?.stop();
  });

  interface Harness {
    deps: CuratorDeps;
    ready: Array<{ msg: BatchReady; trace: Record<string, string> }>;
    batches: KV;
    open: KV;
    record(batchId: string): Promise<BatchRecord>;
    /** Batch records in the bucket, any state. */
    all(): Promise<BatchRecord[]>;
    clock: { t: number };
  }

  async function harness(policy: Partial<CuratorDeps["policy"]> = {}, extra: Partial<CuratorDeps> = {}): Promise<Harness> {
    const batches = await env.bucket("batches");
    const open = await env.bucket("open");
    const ready: Harness["ready"] = [];
    const clock = { t: Date.parse("2025-01-01T00:00:00.000Z") };
    const deps: CuratorDeps = {
      blob: env.blob,
      batches,
      open,
      policy: { batchSize: 3, batchWindowMs: 10_000, maxSamples: 20, ...policy },
      publishReady: async (msg, trace) => void ready.push({ msg, trace }),
      log: silent,
      now: () => clock.t,
      ...extra,
    };
    const record = async (batchId: string) => {
      const r = await kvGet(batches, batchId, BatchRecord);
      if (!r) throw new Error(`no batch ${batchId}`);
      return r.value;
    };
    const all = async () => {
      const out: BatchRecord[] = [];
      for await (const k of await batches.keys()) out.push(await record(k));
      return out;
    };
    return { deps, ready, batches, open, clock, record, all };
  }

  const ids = (msg: BatchReady) => msg.failures.map((f) => f.id);

  it("closes exactly one batch at batchSize and announces it once with the count and the failure refs", async () => {
    const h = await harness({ batchSize: 3 });
    for (const id of ["f1", "f2"]) await handleFailure(failure({ id }), h.deps);
    expect(h.ready).toHaveLength(0);
    await handleFailure(failure({ id: "f3" }), h.deps);

    expect(h.ready).toHaveLength(1);
    const msg = h.ready[0]!.msg;
    expect(msg).toMatchObject({ agent: "chat-bot", count: 3, attempt: 1, baseVersion: failure({ id: "x" }).version, fingerprint: fingerprintOf(failure({ id: "x" })).fingerprint });
    expect(ids(msg)).toEqual(["f1", "f2", "f3"]);
    // Each ref points at the full event in the blob store.
    for (const ref of msg.failures) {
      const stored = FailureEvent.parse(JSON.parse((await env.blob.get(ref.event.sha256)).toString("utf8")));
      expect(stored).toEqual(failure({ id: ref.id }));
    }
    const rec = await h.record(msg.batchId);
    expect(rec.state).toBe("ready");
    expect(rec.count).toBe(3);
    expect(rec.closedAt).toBeDefined();
    // The batch carries its root trace context for later stages.
    expect(h.ready[0]!.trace).toEqual(rec.trace);
    // The fingerprint is free again.
    const openKeys: string[] = [];
    for await (const k of await h.open.keys()) openKeys.push(k);
    expect(openKeys).toEqual([]);
  });

  it("counts the same failure delivered twice once", async () => {
    const h = await harness({ batchSize: 3 });
    await handleFailure(failure({ id: "f1" }), h.deps);
    await handleFailure(failure({ id: "f1" }), h.deps);
    await handleFailure(failure({ id: "f2" }), h.deps);
    expect(h.ready).toHaveLength(0);
    const [rec] = await h.all();
    expect(rec!.count).toBe(2);
    expect(rec!.failures.map((f) => f.id)).toEqual(["f1", "f2"]);
    await handleFailure(failure({ id: "f3" }), h.deps);
    expect(h.ready.map((r) => r.msg.count)).toEqual([3]);
  });

  it("opens the next batch for failures beyond batchSize, and keeps other fingerprints apart", async () => {
    const h = await harness({ batchSize: 2 });
    for (const id of ["a1", "a2", "a3", "a4", "a5"]) await handleFailure(failure({ id }), h.deps);
    await handleFailure(failure({ id: "s1", route: "/v1/search" }), h.deps);

    expect(h.ready.map((r) => ids(r.msg))).toEqual([["a1", "a2"], ["a3", "a4"]]);
    expect(new Set(h.ready.map((r) => r.msg.batchId)).size).toBe(2);
    const collecting = (await h.all()).filter((r) => r.state === "collecting");
    expect(collecting.map((r) => r.failures.map((f) => f.id)).sort()).toEqual([["a5"], ["s1"]]);
  });

  it("caps stored samples at maxSamples while the count keeps counting", async () => {
    const h = await harness({ batchSize: 5, maxSamples: 2 });
    for (const id of ["f1", "f2", "f3", "f4", "f5"]) await handleFailure(failure({ id }), h.deps);
    expect(h.ready).toHaveLength(1);
    expect(h.ready[0]!.msg.count).toBe(5);
    expect(ids(h.ready[0]!.msg)).toEqual(["f1", "f2"]);
  });

  // BUG (services/curator/src/handlers/failure.ts, handleFailure `cur.failures.some(f => f.id === ev.id)`): the
  // "already filed" check only looks at the stored samples (`cur.failures`). Once maxSamples is reached, a
  // redelivered failure that was counted but not sampled is counted again, so count is inflated and the batch closes
  // early (here at 3 real failures instead of 4).
  // Fix: remember every filed id, not only the samples, e.g. a `seen` KV key per failure (`<openKey>.<failureId>`
  // created with CAS before counting) or a bounded id list on the record.
  it.skip("counts a redelivered failure once even when it was not kept as a sample", async () => {
    const h = await harness({ batchSize: 4, maxSamples: 2 });
    for (const id of ["f1", "f2", "f3"]) await handleFailure(failure({ id }), h.deps);
    await handleFailure(failure({ id: "f3" }), h.deps); // redelivery of a counted, unsampled failure
    expect(h.ready).toHaveLength(0);
    const [rec] = await h.all();
    expect(rec!.count).toBe(3);
  });

  it("sweepExpired closes a batch whose window passed and leaves one still in its window", async () => {
    const h = await harness({ batchSize: 10, batchWindowMs: 1_000 });
    const t0 = h.clock.t;
    await handleFailure(failure({ id: "old" }), h.deps);
    h.clock.t = t0 + 900;
    await handleFailure(failure({ id: "young", route: "/v1/search" }), h.deps);

    h.clock.t = t0 + 999;
    expect(await sweepExpired(h.deps)).toBe(0);
    expect(h.ready).toHaveLength(0);

    h.clock.t = t0 + 1_000;
    expect(await sweepExpired(h.deps)).toBe(1);
    expect(h.ready).toHaveLength(1);
    expect(ids(h.ready[0]!.msg)).toEqual(["old"]);
    expect(h.ready[0]!.msg.count).toBe(1);
    const states = Object.fromEntries((await h.all()).map((r) => [r.failures[0]!.id, r.state]));
    expect(states).toEqual({ old: "ready", young: "collecting" });

    // A second sweep does not announce it again, and a new failure of the swept fingerprint opens a new batch.
    expect(await sweepExpired(h.deps)).toBe(0);
    await handleFailure(failure({ id: "next" }), h.deps);
    const next = (await h.all()).find((r) => r.failures[0]?.id === "next")!;
    expect(next.state).toBe("collecting");
    expect(next.batchId).not.toBe(h.ready[0]!.msg.batchId);
  });

  it("loses and duplicates nothing when many failures of one fingerprint race (CAS)", async () => {
    const h = await harness({ batchSize: 10, maxSamples: 20 });
    const evs = Array.from({ length: 25 }, (_, i) => failure({ id: `r${i}` }));
    // What the bus does with an error that is not terminal: deliver the message again (see the createRecord bug below,
    // which makes this race throw a benign "wrong last sequence" today).
    const deliver = async (ev: FailureEvent) => {
      for (let i = 0; ; i++) {
        try {
          return await handleFailure(ev, h.deps);
        } catch (err) {
          if (isTerminal(err) || i > 10) throw err;
        }
      }
    };
    await Promise.all(evs.map(deliver));

    const all = await h.all();
    const filed = all.flatMap((r) => r.failures.map((f) => f.id));
    expect(filed.sort()).toEqual(evs.map((e) => e.id).sort());
    expect(all.reduce((n, r) => n + r.count, 0)).toBe(25);
    expect(all.map((r) => `${r.state}:${r.count}`).sort()).toEqual(["collecting:5", "ready:10", "ready:10"]);
    for (const r of all) expect(r.failures).toHaveLength(r.count);
    // Each full batch announced (at least once; the bus dedups repeats by batch id), nothing else.
    const announced = new Set(h.ready.map((r) => r.msg.batchId));
    expect([...announced].sort()).toEqual(all.filter((r) => r.state === "ready").map((r) => r.batchId).sort());
    for (const r of h.ready) expect(r.msg.count).toBe(10);
  });

  // BUG (services/curator/src/handlers/failure.ts, createRecord's `.catch`): the "record already written by another
  // replica" race is meant to be ignored with `.catch(err => if (!/exists/i.test(err.message)) throw err)`, but
  // @nats-io/kv's create() on an existing key rejects with "wrong last sequence: N" (JetStream code 10071), so the
  // benign race throws. Two replicas (or a concurrent consumer) opening a batch for a new fingerprint at once fail
  // one delivery, which is naked and retried after a backoff with a warning. The race test above needs a bus-style
  // retry only because of this.
  // Fix: match what kvUpdate matches, /wrong last sequence|key exists|already exists/i (or check the
  // JetStreamApiError code), in createRecord's catch.
  it.skip("files a failure when another replica writes the new batch's record first", async () => {
    const h = await harness({ batchSize: 5 });
    const real = h.batches;
    let raced = false;
    h.deps.batches = new Proxy(real, {
      get(target, prop) {
        if (prop === "create") {
          return async (k: string, v: string) => {
            // The other replica's identical record lands between our read and our create.
            if (!raced) {
              raced = true;
              await target.create(k, v);
            }
            return target.create(k, v);
          };
        }
        const v: unknown = Reflect.get(target, prop, target);
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    await handleFailure(failure({ id: "f1" }), h.deps);
    expect(raced).toBe(true);
    const [rec] = await h.all();
    expect(rec).toMatchObject({ state: "collecting", count: 1 });
  });

  it("moves an inline snapshot into the blob store", async () => {
    const h = await harness({ batchSize: 1 });
    const tar = Buffer.from([0, 1, 2, 3, 254, 255, ...Buffer.from("state.json")]);
    await handleFailure(failure({ id: "snap", snapshot: { path: "/data", inlineBase64: tar.toString("base64") } }), h.deps);
    const ref = h.ready[0]!.msg.failures[0]!;
    const stored = FailureEvent.parse(JSON.parse((await env.blob.get(ref.event.sha256)).toString("utf8")));
    expect(stored.snapshot?.inlineBase64).toBeUndefined();
    expect(stored.snapshot?.path).toBe("/data");
    expect(stored.snapshot?.blob?.size).toBe(tar.length);
    expect(await env.blob.get(stored.snapshot!.blob!.sha256)).toEqual(tar);
  });

  it("re-announces a closed batch when the failure that closed it is redelivered after a crash before the publish", async () => {
    let crash = true;
    const h = await harness({ batchSize: 2 });
    const publish = h.deps.publishReady;
    h.deps.publishReady = async (msg, trace) => {
      if (crash) throw new Error("connection lost");
      return publish(msg, trace);
    };
    await handleFailure(failure({ id: "f1" }), h.deps);
    await expect(handleFailure(failure({ id: "f2" }), h.deps)).rejects.toThrow("connection lost");
    const [closed] = await h.all();
    expect(closed!.state).toBe("ready");

    crash = false;
    await handleFailure(failure({ id: "f2" }), h.deps);
    expect(h.ready).toHaveLength(1);
    expect(h.ready[0]!.msg).toMatchObject({ batchId: closed!.batchId, count: 2 });
    expect(ids(h.ready[0]!.msg)).toEqual(["f1", "f2"]);
    // Still one batch: the redelivery did not file f2 anywhere else.
    expect(await h.all()).toHaveLength(1);
  });

  // BUG (services/curator/src/handlers/failure.ts, handleFailure/openBatchFor with announce() → clearOpenKey): once a
  // batch is announced its open key is deleted, so a redelivery of a failure it holds (the ack was lost, or the
  // process died after announce but before the ack) no longer finds that batch: openBatchFor opens a NEW batch and
  // files the same failure there. The failure is then counted in two batches and fixed twice, and the closed batch is
  // not re-announced — contrary to the doc comment ("the same failure twice is counted once").
  // Fix: record failure id → batchId (e.g. key `<agent>.<key>.<failureId>` in moss_open_batches, created before
  // filing, or a small `moss_failures` bucket with a TTL) and, on redelivery, re-announce that batch if it is closed
  // instead of filing again.
  it.skip("re-announces (and does not re-file) a failure redelivered after its batch was announced", async () => {
    const h = await harness({ batchSize: 2 });
    await handleFailure(failure({ id: "f1" }), h.deps);
    await handleFailure(failure({ id: "f2" }), h.deps);
    expect(h.ready).toHaveLength(1);
    await handleFailure(failure({ id: "f2" }), h.deps); // ack was lost: JetStream delivers it again
    expect(h.ready.map((r) => r.msg.batchId)).toEqual([h.ready[0]!.msg.batchId, h.ready[0]!.msg.batchId]);
    expect(await h.all()).toHaveLength(1);
  });
});
