// The batch domain: the state machine, the names, and the stores (against a real KV).
import { BatchEndedError, BatchTransitionError, FINAL_STATES, Transitions, batchStore, branchName, breakerKey, breakerStore, candidateStore, canMove, imageTag, isFinal, parseBreakerKey, resetBreaker } from "@moss/batch";
import { kvGet } from "@moss/bus";
import { isMoot } from "@moss/errors";
import { BatchState, FingerprintBreaker, RejectedCandidate } from "@moss/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CANDIDATE, batchRecord, seed, startEnv, type Env } from "../helpers/env";

describe("the state machine", () => {
  it("has a row for every state, and every edge leads to a state", () => {
    expect(Object.keys(Transitions).sort()).toEqual([...BatchState.options].sort());
    for (const to of Object.values(Transitions).flat()) expect(BatchState.options).toContain(to);
  });

  it("derives finality from the table: a state with no way out is final; waiting for a human is not", () => {
    expect(FINAL_STATES).toEqual(["promoted", "rolled-back", "rejected", "exhausted", "released"]);
    expect(isFinal("needs-human")).toBe(false);
    expect(canMove("needs-human", "released")).toBe(true);
    expect(canMove("rejected", "promoting")).toBe(false);
    // Every state but the final ones can still end somewhere final.
    const reaches = (s: BatchState, seen = new Set<BatchState>()): boolean =>
      isFinal(s) || Transitions[s].some((t) => !seen.has(t) && (seen.add(t), reaches(t, seen)));
    for (const s of BatchState.options) expect(reaches(s), s).toBe(true);
  });
});

describe("names", () => {
  it("are spelled once: breaker keys (and back), branches, image tags", () => {
    expect(breakerKey("shop", "aaaaaaaaaaaaaaaaaaaa")).toBe("shop.aaaaaaaaaaaaaaaaaaaa");
    expect(parseBreakerKey("shop.aaaaaaaaaaaaaaaaaaaa")).toEqual({ agent: "shop", fingerprintKey: "aaaaaaaaaaaaaaaaaaaa" });
    expect(parseBreakerKey("shop")).toBeUndefined();
    expect(parseBreakerKey("Shop.x.y")).toBeUndefined();
    expect(branchName("b1", 2)).toBe("moss/b1/2");
    expect(imageTag("shop", CANDIDATE)).toBe(`moss/shop:${CANDIDATE.slice(0, 12)}`);
  });
});

describe("stores", () => {
  let env: Env;
  beforeAll(async () => {
    env = await startEnv("batch-test");
  });
  afterAll(async () => {
    await env?.stop();
  });

  const FAILURES = [{ id: "f1", event: { sha256: "1".repeat(64), size: 10 } }];

  it("a batch moves only along the state machine; staying put re-applies the patch", async () => {
    const kv = await env.bucket("batches");
    const batches = batchStore(kv);
    await seed(kv, batchRecord({ batchId: "b1", failures: FAILURES, state: "ready" }));
    expect(await batches.transition("b1", "rewriting", { attempt: 1 })).toMatchObject({ moved: true, record: { state: "rewriting", attempt: 1 } });
    expect(await batches.transition("b1", "rewriting", { reason: "again" })).toMatchObject({ moved: false, record: { state: "rewriting", reason: "again" } });
    const err = await batches.transition("b1", "promoted").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BatchTransitionError);
    expect(err).toMatchObject({ code: "MOSS_E_BATCH_TRANSITION", retryable: false, message: "batch b1 is rewriting; it cannot become promoted" });
    await expect(batches.transition("nope", "ready")).rejects.toMatchObject({ code: "MOSS_E_BATCH_NOT_FOUND" });
    // A stage that comes after the batch ended (an operator rejected it meanwhile) gets a moot error: the bus drops it.
    await batches.transition("b1", "rejected", { reason: "rejected by ana: wrong fix" });
    const ended = await batches.transition("b1", "candidate").catch((e: unknown) => e);
    expect(ended).toBeInstanceOf(BatchEndedError);
    expect(ended).toMatchObject({ code: "MOSS_E_BATCH_ENDED", moot: true, message: "batch b1 ended (rejected: rejected by ana: wrong fix) before it could become candidate; this work on it is dropped" });
    expect(isMoot(ended)).toBe(true);
    expect(isMoot(err)).toBe(false);
    expect(await batches.create(batchRecord({ batchId: "b1", failures: FAILURES, state: "ready" }))).toBe(false);
    expect((await batches.get("b1"))!.state).toBe("rejected");
  });

  it("an operator can reject a batch in every state that has a record and is not final", () => {
    for (const s of BatchState.options) if (s !== "collecting" && !isFinal(s)) expect([s, canMove(s, "rejected")]).toEqual([s, true]);
  });

  it("the breaker counts consecutive rejections once each, opens at the threshold, and a promotion resets it", async () => {
    const kv = await env.bucket("fingerprints");
    const breakers = breakerStore(kv);
    const key = "demo.fpk";
    const o = (attempt: number, kind: "candidate" | "promotion" = "candidate", rejected = true) => ({ agent: "demo", fingerprint: "fp", fingerprintKey: "fpk", batchId: "b1", attempt, kind, rejected });
    await breakers.count(o(1), 3);
    await breakers.count(o(1), 3); // redelivered
    await breakers.count(o(2), 3);
    expect((await kvGet(kv, key, FingerprintBreaker))!.value).toMatchObject({ consecutiveRejections: 2, needsHuman: false });
    await breakers.count(o(3, "promotion", false), 3);
    expect((await kvGet(kv, key, FingerprintBreaker))!.value.consecutiveRejections).toBe(0);
    for (const a of [4, 5, 6]) await breakers.count(o(a), 3);
    expect((await kvGet(kv, key, FingerprintBreaker))!.value).toMatchObject({ consecutiveRejections: 3, needsHuman: true });
    expect([...(await breakers.open("demo", ["fpk", "other"]))]).toEqual(["fpk"]);
  });

  it("a reset closes the breaker, keeps what was counted, and ends the fingerprint's batches that waited for a human", async () => {
    const kv = await env.bucket("fingerprints");
    const bkv = await env.bucket("batches");
    const stores = { breakers: breakerStore(kv), batches: batchStore(bkv) };
    for (const a of [1, 2]) await stores.breakers.count({ agent: "demo", fingerprint: "fp", fingerprintKey: "fpk", batchId: "b0", attempt: a, kind: "replay", rejected: true }, 2);
    await seed(bkv, batchRecord({ batchId: "w1", agent: "demo", failures: FAILURES, state: "needs-human", fingerprintKey: "fpk" }));
    await seed(bkv, batchRecord({ batchId: "w2", agent: "demo", failures: FAILURES, state: "needs-human", fingerprintKey: "other" }));
    const r = await resetBreaker(stores, { agent: "demo", fingerprintKey: "fpk", batchId: "w1" }, "ana", new Date("2026-02-01T00:00:00.000Z"));
    expect(r).toEqual({ agent: "demo", fingerprint: "fp", breaker: "demo.fpk", batchId: "w1", by: "ana", was: { consecutiveRejections: 2, needsHuman: true }, released: ["w1"], at: "2026-02-01T00:00:00.000Z" });
    expect(await stores.breakers.get("demo", "fpk")).toMatchObject({ consecutiveRejections: 0, needsHuman: false, resetBy: "ana", counted: ["b0:1:replay", "b0:2:replay"] });
    expect(await stores.batches.get("w1")).toMatchObject({ state: "released", reason: expect.stringContaining("reset by ana") });
    expect((await stores.batches.get("w2"))!.state).toBe("needs-human");
    expect(await resetBreaker(stores, { agent: "demo", fingerprintKey: "never" }, "ana")).toBeUndefined();
  });

  it("candidates are listed newest first; an unreadable entry throws, or is reported and skipped", async () => {
    const kv = await env.bucket("candidates");
    const candidates = candidateStore(kv);
    const c = (batchId: string, at: string): RejectedCandidate => ({ agent: "demo", fingerprint: "fp", batchId, attempt: 1, verdict: "replay-failed", reason: "r", at });
    await candidates.keep("fpk", c("old", "2026-01-01T00:00:00.000Z"));
    await candidates.keep("fpk", c("new", "2026-01-02T00:00:00.000Z"));
    await candidates.keep("zzz", c("elsewhere", "2026-01-03T00:00:00.000Z"));
    expect((await candidates.list("demo", "fpk")).map((x) => x.batchId)).toEqual(["new", "old"]);
    expect((await candidates.list()).map((x) => x.batchId)).toEqual(["elsewhere", "new", "old"]);
    await kv.put("demo.fpk.broken.1", JSON.stringify({ agent: "demo" }));
    await expect(candidates.list("demo", "fpk")).rejects.toThrow("KV entry demo.fpk.broken.1 is not valid");
    const bad: string[] = [];
    expect((await candidates.list("demo", "fpk", (k) => bad.push(k))).map((x) => x.batchId)).toEqual(["new", "old"]);
    expect(bad).toEqual(["demo.fpk.broken.1"]);
  });
});
