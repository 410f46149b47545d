// The curator's filing engine (ingestChunk / tick) against a real KV, with a recording publisher.
import { batchStore, breakerStore, resetBreaker } from "@moss/batch";
import { kvGet, kvKeys, type ChunkItem, type KV } from "@moss/bus";
import { BatchRecord, Messages, type BatchReady, type BatchVerdict, type FailureEvent, type Regression } from "@moss/contracts";
import { CuratorState, OVERFLOW_KEY, createFingerprinter, ingestChunk, overflowFingerprint, tick, type CuratorDeps } from "@moss/curator";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { failure, nodeStack, silent, startEnv, VERSION, CANDIDATE, type Env } from "../helpers/env";
import { recordingPublish } from "../helpers/publish";

describe("curator filing engine with a real KV", () => {
  let env: Env;
  beforeAll(async () => {
    env = await startEnv("curator-test");
  });
  afterAll(async () => {
    await env?.stop();
  });

  interface Harness {
    deps: CuratorDeps;
    ready: BatchReady[];
    verdicts: BatchVerdict[];
    regressions: Regression[];
    clock: { t: number };
    seq: { n: number };
    /** Wraps events as stream messages with fresh sequence numbers. */
    chunk(evs: FailureEvent[]): Array<ChunkItem<FailureEvent>>;
    record(batchId: string): Promise<BatchRecord>;
    all(): Promise<BatchRecord[]>;
    state(): Promise<CuratorState>;
    breakers: KV;
    /** The raw batches bucket, to put a batch in a state the pipeline would have moved it to. */
    batches: KV;
    sent: ReturnType<typeof recordingPublish>;
  }

  async function harness(policy: Partial<ReturnType<CuratorDeps["policyFor"]>> = {}): Promise<Harness> {
    const batches = await env.bucket("batches");
    const breakers = await env.bucket("fingerprints");
    const stateKv = await env.bucket("curator");
    const sent = recordingPublish();
    const h = {
      ready: sent.of(Messages.batchReady) as BatchReady[],
      verdicts: sent.of(Messages.batchVerdict) as BatchVerdict[],
      regressions: sent.of(Messages.regression) as Regression[],
      clock: { t: Date.parse("2026-01-01T00:00:00.000Z") },
      seq: { n: 0 },
      breakers,
      batches,
      sent,
    };
    const deps: CuratorDeps = {
      blob: env.blob,
      state: stateKv,
      batches: batchStore(batches),
      breakers: breakerStore(breakers),
      policyFor: () => ({ batchSize: 3, batchWindowMs: 10_000, maxSamples: 20, maxRewrites: 100, rateWindowMs: 60_000, maxOpenFingerprints: 100, ...policy }),
      fingerprint: createFingerprinter(),
      ackFloor: () => 0,
      publish: sent.publish,
      log: silent,
      now: () => h.clock.t,
    };
    const record = async (id: string) => (await kvGet(batches, id, BatchRecord))!.value;
    return {
      ...h,
      deps,
      chunk: (evs) => evs.map((msg) => ({ msg, subject: `moss.failure.${msg.agent}`, streamSeq: ++h.seq.n, deliveryCount: 1, headers: {} })),
      record,
      async all() {
        const out: BatchRecord[] = [];
        for (const k of await kvKeys(batches)) out.push(await record(k));
        return out;
      },
      state: async () => (await kvGet(stateKv, "agent.demo", CuratorState))!.value,
    };
  }

  const ev = (id: string, over: Partial<Parameters<typeof failure>[0]> = {}) => failure({ id, agent: "demo", ...over });

  it("closes exactly one batch at batchSize, announces it once, and records fingerprint key and version", async () => {
    const h = await harness({ batchSize: 3 });
    await ingestChunk(h.chunk([ev("a1"), ev("a2")]), h.deps);
    expect(h.ready).toHaveLength(0);
    await ingestChunk(h.chunk([ev("a3")]), h.deps);
    expect(h.ready).toHaveLength(1);
    expect(h.ready[0]!.count).toBe(3);
    expect(h.ready[0]!.failures.map((f) => f.id)).toEqual(["a1", "a2", "a3"]);
    const rec = await h.record(h.ready[0]!.batchId);
    expect(rec.state).toBe("ready");
    expect(rec.fingerprintVersion).toBe("fp2");
    expect(rec.fingerprintKey).toMatch(/^[0-9a-f]{20}$/);
    // Every sample's event is in the blob store.
    for (const f of rec.failures) expect(await env.blob.stat(f.event.sha256)).toBeDefined();
  });

  it("a redelivered chunk changes nothing, even for failures not kept as samples", async () => {
    const h = await harness({ batchSize: 100, maxSamples: 1 });
    const c = h.chunk([ev("r1"), ev("r2"), ev("r3")]);
    await ingestChunk(c, h.deps);
    await ingestChunk(c, h.deps);
    await ingestChunk([c[2]!], h.deps);
    const s = await h.state();
    expect(Object.values(s.open)[0]!.count).toBe(3);
  });

  it("attaches later failures of a fingerprint in the pipeline to its batch instead of opening another", async () => {
    const h = await harness({ batchSize: 2 });
    await ingestChunk(h.chunk(Array.from({ length: 10 }, (_, i) => ev(`s${i}`))), h.deps);
    expect(h.ready).toHaveLength(1);
    expect(await h.all()).toHaveLength(1);
    await tick("demo", h.deps);
    expect((await h.record(h.ready[0]!.batchId)).attached).toBe(8);
  });

  it("keeps at most maxSamples, preferring different requests", async () => {
    const h = await harness({ batchSize: 100, maxSamples: 3 });
    const same = (i: number) => ev(`d${i}`, { request: { method: "POST", path: "/v1/chat", headers: {}, body: "same" } });
    const other = (i: number) => ev(`o${i}`, { request: { method: "POST", path: "/v1/chat", headers: {}, body: `different ${i}` } });
    await ingestChunk(h.chunk([same(1), same(2), same(3), other(1), other(2)]), h.deps);
    const ob = Object.values((await h.state()).open)[0]!;
    expect(ob.count).toBe(5);
    expect(ob.samples.map((s) => s.id).sort()).toEqual(["d1", "o1", "o2"]);
  });

  it("failures that do not group go to one overflow batch past maxOpenFingerprints, and the counts stay exact", async () => {
    const h = await harness({ batchSize: 1_000, maxOpenFingerprints: 5, batchWindowMs: 10_000 });
    // 50 failures, each of its own error type: 50 fingerprints that never group.
    const distinct = (i: number, id = `u${i}`) => ev(id, { error: { type: `UnknownCity${i}Error`, message: `no such city`, stack: undefined } });
    await ingestChunk(h.chunk(Array.from({ length: 50 }, (_, i) => distinct(i))), h.deps);
    let s = await h.state();
    expect(Object.keys(s.open)).toHaveLength(6);
    const overflow = s.open[OVERFLOW_KEY]!;
    expect(overflow.fingerprint).toBe(overflowFingerprint(5));
    expect(overflow.count).toBe(45);
    expect(Object.values(s.open).reduce((n, b) => n + b.count, 0)).toBe(50);
    // At the cap, a fingerprint that already has a batch still joins it; a new one keeps overflowing.
    await ingestChunk(h.chunk([distinct(0, "again0"), distinct(99)]), h.deps);
    s = await h.state();
    expect(Object.values(s.open).find((b) => b.fingerprint.startsWith("UnknownCity0Error"))!.count).toBe(2);
    expect(s.open[OVERFLOW_KEY]!.count).toBe(46);
    // The overflow batch is a batch like any other: it closes, is announced, and later overflow attaches to it.
    h.clock.t += 10_000;
    await tick("demo", h.deps);
    const announced = h.ready.find((r) => r.fingerprint === overflowFingerprint(5))!;
    expect(announced.count).toBe(46);
    expect((await h.record(announced.batchId)).fingerprintKey).toBe(OVERFLOW_KEY);
    // With nothing waiting any more, a new fingerprint gets a batch of its own again.
    await ingestChunk(h.chunk([distinct(200)]), h.deps);
    s = await h.state();
    expect(Object.values(s.open).map((b) => b.fingerprint.split(" | ")[0])).toEqual(["UnknownCity200Error"]);
  });

  it("forgets fingerprints whose batch ended (but not promoted ones) once an agent has more than maxOpenFingerprints", async () => {
    const h = await harness({ batchSize: 1, maxOpenFingerprints: 2 });
    const of = (name: string, id: string) => ev(id, { route: name });
    // One chunk each: every batch is announced (out of the outbox) before the next fingerprint comes.
    for (const [i, r] of ["rejected", "exhausted", "promoted", "ready"].entries()) await ingestChunk(h.chunk([of(r, `e${i}`)]), h.deps);
    expect(h.ready).toHaveLength(4);
    const byRoute = new Map(await Promise.all(h.ready.map(async (r) => [(await h.record(r.batchId)).failures[0]!.id, r.batchId] as const)));
    const set = async (id: string, state: string) => {
      const rec = await h.record(byRoute.get(id)!);
      await h.batches.put(rec.batchId, JSON.stringify({ ...rec, state, ...(state === "promoted" ? { candidate: { attempt: 1, commit: CANDIDATE, image: "moss/demo:x", diff: rec.failures[0]!.event } } : {}) }));
    };
    // e1 takes one more failure while in the pipeline: the count must survive its entry being forgotten.
    await ingestChunk(h.chunk([of("exhausted", "e1b")]), h.deps);
    await set("e0", "rejected");
    await set("e1", "exhausted");
    await set("e2", "promoted");
    await tick("demo", h.deps);
    const routes = async () => (await Promise.all(Object.values((await h.state()).active).map(async (a) => (await h.record(a.batchId)).failures[0]!.id))).sort();
    expect(await routes()).toEqual(["e2", "e3"]);
    expect((await h.record(byRoute.get("e1")!)).attached).toBe(1);
    // At most once a minute: a batch that ends now stays listed until the next look.
    await ingestChunk(h.chunk([of("later", "e4")]), h.deps);
    byRoute.set("e4", h.ready.at(-1)!.batchId);
    await set("e3", "rejected");
    await tick("demo", h.deps);
    expect(await routes()).toEqual(["e2", "e3", "e4"]);
    h.clock.t += 60_000;
    await tick("demo", h.deps);
    expect(await routes()).toEqual(["e2", "e4"]);
    // A forgotten fingerprint failing again opens a new batch, exactly as if its entry had been retired then.
    await ingestChunk(h.chunk([of("rejected", "e0-again")]), h.deps);
    expect(h.ready.at(-1)!.failures.map((f) => f.id)).toEqual(["e0-again"]);
  });

  it("says what to change when an agent's state would outgrow one KV entry", async () => {
    const h = await harness({ batchSize: 1_000, maxOpenFingerprints: 1_000 });
    h.deps.maxStateBytes = 20_000;
    const distinct = (i: number) => ev(`big${i}`, { error: { type: `Distinct${i}Error`, message: "x", stack: undefined } });
    const err = await ingestChunk(h.chunk(Array.from({ length: 100 }, (_, i) => distinct(i))), h.deps).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/the curator state of agent demo would be \d+ bytes, over the 20000-byte limit of one KV entry .*lower curator.maxOpenFingerprints \(now 1000\) or curator.maxSamples \(now 20\)/);
  });

  it("closes a batch when its window passes, not before", async () => {
    const h = await harness({ batchSize: 100, batchWindowMs: 10_000 });
    await ingestChunk(h.chunk([ev("w1")]), h.deps);
    h.clock.t += 9_000;
    await tick("demo", h.deps);
    expect(h.ready).toHaveLength(0);
    h.clock.t += 1_000;
    await tick("demo", h.deps);
    expect(h.ready).toHaveLength(1);
    expect(h.ready[0]!.count).toBe(1);
  });

  it("loses and duplicates nothing when chunks race (one CAS per chunk)", async () => {
    const h = await harness({ batchSize: 1_000 });
    const chunks = Array.from({ length: 10 }, (_, c) => h.chunk(Array.from({ length: 20 }, (_, i) => ev(`x${c}-${i}`))));
    await Promise.all(chunks.map((c) => ingestChunk(c, h.deps)));
    expect(Object.values((await h.state()).open)[0]!.count).toBe(200);
  });

  it("groups by root cause: the same bug at another line and another id groups, another function does not", async () => {
    const h = await harness({ batchSize: 100 });
    await ingestChunk(
      h.chunk([
        ev("g1", { error: { type: "TypeError", message: "Cannot read properties of undefined (reading 'content') for id 41", stack: nodeStack({ line: 42 }) } }),
        ev("g2", { error: { type: "TypeError", message: "Cannot read properties of undefined (reading 'content') for id 97", stack: nodeStack({ line: 57 }) } }),
        ev("g3", { error: { type: "TypeError", message: "Cannot read properties of undefined (reading 'content') for id 97", stack: nodeStack({ fn: "summarize" }) } }),
      ]),
      h.deps,
    );
    expect(Object.values((await h.state()).open).map((o) => o.count).sort()).toEqual([1, 2]);
  });

  it("moves an inline snapshot into the blob store", async () => {
    const h = await harness({ batchSize: 1 });
    const tar = Buffer.from("pretend this is a tar");
    await ingestChunk(h.chunk([ev("snap1", { snapshot: { path: "/data", inlineBase64: tar.toString("base64") } })]), h.deps);
    const stored = JSON.parse((await env.blob.get(h.ready[0]!.failures[0]!.event.sha256)).toString()) as FailureEvent;
    expect(stored.snapshot?.inlineBase64).toBeUndefined();
    expect((await env.blob.get(stored.snapshot!.blob!.sha256)).equals(tar)).toBe(true);
  });

  it("moves an inline cassette and an inline after-failure snapshot into the blob store too", async () => {
    const h = await harness({ batchSize: 1 });
    const after = Buffer.from("the state the failure left");
    const cassette = { schema: "moss.cassette.v1" as const, failureId: "cas1", calls: [{ method: "GET", url: "https://api.example/v1/x", headers: {} }], truncated: false };
    await ingestChunk(h.chunk([ev("cas1", { cassette: { inline: cassette }, afterSnapshot: { path: "/data", inlineBase64: after.toString("base64") } })]), h.deps);
    const stored = JSON.parse((await env.blob.get(h.ready[0]!.failures[0]!.event.sha256)).toString()) as FailureEvent;
    expect(stored.cassette?.inline).toBeUndefined();
    expect(stored.cassette?.blob?.contentType).toBe("application/json");
    expect(JSON.parse((await env.blob.get(stored.cassette!.blob!.sha256)).toString())).toMatchObject({ failureId: "cas1", calls: [{ url: "https://api.example/v1/x" }] });
    expect((await env.blob.get(stored.afterSnapshot!.blob!.sha256)).equals(after)).toBe(true);
  });

  it("announces again after a crash between closing the batch and publishing it", async () => {
    const h = await harness({ batchSize: 1 });
    h.sent.fail(Messages.batchReady, new Error("nats hiccup"));
    const c = h.chunk([ev("crash1")]);
    await expect(ingestChunk(c, h.deps)).rejects.toThrow("nats hiccup");
    h.sent.heal(Messages.batchReady);
    await ingestChunk(c, h.deps); // the redelivery
    expect(h.ready.map((r) => r.failures[0]!.id)).toEqual(["crash1"]);
    expect(Object.keys((await h.state()).closing)).toHaveLength(0);
  });

  it("queues batches beyond the agent's rewrite rate limit and releases them when the window allows", async () => {
    const h = await harness({ batchSize: 1, maxRewrites: 1, rateWindowMs: 60_000 });
    await ingestChunk(h.chunk([ev("q1", { route: "a" }), ev("q2", { route: "b" })]), h.deps);
    expect(h.ready).toHaveLength(1);
    expect(h.verdicts.map((v) => v.verdict)).toEqual(["queued"]);
    const queued = h.verdicts[0]!.batchId;
    expect((await h.record(queued)).state).toBe("queued");
    h.clock.t += 30_000;
    await tick("demo", h.deps);
    expect(h.ready).toHaveLength(1);
    h.clock.t += 31_000;
    await tick("demo", h.deps);
    expect(h.ready.map((r) => r.batchId)).toContain(queued);
    expect((await h.record(queued)).state).toBe("ready");
  });

  it("a fingerprint whose breaker is open closes into needs-human and is never announced", async () => {
    const h = await harness({ batchSize: 1 });
    const fp = h.deps.fingerprint(ev("probe"));
    await h.breakers.put(`demo.${fp.key}`, JSON.stringify({ agent: "demo", fingerprint: fp.fingerprint, consecutiveRejections: 3, needsHuman: true, counted: [], updatedAt: new Date().toISOString() }));
    await ingestChunk(h.chunk([ev("h1")]), h.deps);
    expect(h.ready).toHaveLength(0);
    expect(h.verdicts[0]!.verdict).toBe("needs-human");
    expect((await h.record(h.verdicts[0]!.batchId)).state).toBe("needs-human");
  });

  it("while a fingerprint waits for a human, its failures attach to that batch and open no other; a reset ends the wait", async () => {
    const h = await harness({ batchSize: 2 });
    const fp = h.deps.fingerprint(ev("probe"));
    await h.breakers.put(`demo.${fp.key}`, JSON.stringify({ agent: "demo", fingerprint: fp.fingerprint, consecutiveRejections: 3, needsHuman: true, counted: [], updatedAt: new Date().toISOString() }));
    await ingestChunk(h.chunk([ev("w1"), ev("w2")]), h.deps);
    const waiting = h.verdicts[0]!.batchId;
    expect(h.verdicts.map((v) => v.verdict)).toEqual(["needs-human"]);
    // Thirty more failures of the same root cause, in several chunks and ticks: one batch still, all of them counted.
    for (let c = 0; c < 3; c++) {
      await ingestChunk(h.chunk(Array.from({ length: 10 }, (_, i) => ev(`w-${c}-${i}`))), h.deps);
      await tick("demo", h.deps);
    }
    expect(await h.all()).toHaveLength(1);
    expect(h.verdicts).toHaveLength(1);
    expect(h.ready).toHaveLength(0);
    expect(await h.record(waiting)).toMatchObject({ state: "needs-human", count: 2, attached: 30 });
    // An operator looked and reset the breaker: the waiting batch ends, and the next failure is rewritten again.
    const reset = await resetBreaker({ breakers: breakerStore(h.breakers), batches: h.deps.batches }, { agent: "demo", fingerprintKey: fp.key }, "ana");
    expect(reset).toMatchObject({ released: [waiting], was: { needsHuman: true } });
    expect((await h.record(waiting)).state).toBe("released");
    await ingestChunk(h.chunk([ev("after1"), ev("after2")]), h.deps);
    expect(h.ready).toHaveLength(1);
    expect(h.ready[0]!.batchId).not.toBe(waiting);
    expect(h.ready[0]!.failures.map((f) => f.id)).toEqual(["after1", "after2"]);
  });

  it("after a promotion: old-version stragglers attach, the promoted version failing again is a regression", async () => {
    const h = await harness({ batchSize: 1 });
    await ingestChunk(h.chunk([ev("p1")]), h.deps);
    const id = h.ready[0]!.batchId;
    const rec = await h.record(id);
    await h.batches.put(id, JSON.stringify({ ...rec, state: "promoted", candidate: { attempt: 1, commit: CANDIDATE, image: "moss/demo:x", diff: rec.failures[0]!.event } }));
    await ingestChunk(h.chunk([ev("p2", { version: VERSION })]), h.deps);
    expect(h.regressions).toHaveLength(0);
    expect(await h.all()).toHaveLength(1);
    await ingestChunk(h.chunk([ev("p3", { version: CANDIDATE })]), h.deps);
    expect(h.regressions).toEqual([expect.objectContaining({ batchId: id, version: CANDIDATE, failureId: "p3" })]);
    expect(await h.all()).toHaveLength(2); // the fix did not hold: a new batch
  });

  it("while the candidate bakes: the same failure on the candidate's version is attached and signalled, so the promoter rolls back", async () => {
    const h = await harness({ batchSize: 1 });
    await ingestChunk(h.chunk([ev("q1")]), h.deps);
    const id = h.ready[0]!.batchId;
    const rec = await h.record(id);
    await h.batches.put(id, JSON.stringify({ ...rec, state: "promoting", promotion: { approvedBy: "ana" }, candidate: { attempt: 1, commit: CANDIDATE, image: "moss/demo:x", diff: rec.failures[0]!.event } }));
    await ingestChunk(h.chunk([ev("q2", { version: VERSION })]), h.deps);
    expect(h.regressions).toHaveLength(0);
    await ingestChunk(h.chunk([ev("q3", { version: CANDIDATE })]), h.deps);
    expect(h.regressions).toEqual([expect.objectContaining({ batchId: id, version: CANDIDATE, failureId: "q3" })]);
    // Still one batch: the failures are its evidence while it is in the pipeline.
    expect(await h.all()).toHaveLength(1);
  });

  it("a candidate under judgement that fails another way: evidence for its batch, never a batch rewritten on a version no one runs", async () => {
    const h = await harness({ batchSize: 1 });
    await ingestChunk(h.chunk([ev("r1")]), h.deps);
    const id = h.ready[0]!.batchId;
    const rec = await h.record(id);
    const other = { type: "Error", message: "session slots exhausted", stack: "Error: session slots exhausted\n    at handle (/app/src/server.ts:61:11)" };
    await h.batches.put(id, JSON.stringify({ ...rec, state: "promoting", promotion: { approvedBy: "ana" }, candidate: { attempt: 1, commit: CANDIDATE, image: "moss/demo:x", diff: rec.failures[0]!.event } }));
    await ingestChunk(h.chunk([ev("r2", { version: CANDIDATE, error: other }), ev("r3", { version: CANDIDATE, error: other })]), h.deps);
    expect(await h.all()).toHaveLength(1);
    expect(h.regressions).toHaveLength(0); // another fingerprint: not a recurrence (the gateway's live numbers judge it)
    expect((await h.state()).active[Object.keys((await h.state()).active)[0]!]).toMatchObject({ batchId: id, attached: 2 });
    // Rolled back: its stragglers, of either fingerprint, still attach to it.
    await h.batches.put(id, JSON.stringify({ ...(await h.record(id)), state: "rolled-back" }));
    await ingestChunk(h.chunk([ev("r4", { version: CANDIDATE, error: other }), ev("r5", { version: CANDIDATE })]), h.deps);
    expect(await h.all()).toHaveLength(1);
    // The live version failing the other way is a new root cause on a version that runs: a batch of its own.
    await ingestChunk(h.chunk([ev("r6", { version: VERSION, error: other })]), h.deps);
    expect(await h.all()).toHaveLength(2);
    expect(h.ready.at(-1)).toMatchObject({ failures: [expect.objectContaining({ id: "r6" })] });
  });
});
