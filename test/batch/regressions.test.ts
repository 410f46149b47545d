// An agent's regression set: bounded, spread over routes, newest kept, pins honoured; changed by CAS in KV, and by
// operators only through the operator API.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { admit, chooseCases, regressionStore, type RegressionStore } from "@moss/batch";
import { SuccessEvent, type RegressionCase } from "@moss/contracts";
import { addOperator, buildApp } from "@moss/operator-api";
import { openStores } from "@moss/batch";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { VERSION, startEnv, type Env } from "../helpers/env";

const ref = { sha256: "e".repeat(64), size: 10 };
const day = (d: number) => new Date(Date.UTC(2025, 0, d)).toISOString();
const kase = (id: string, route: string, d: number, over: Partial<RegressionCase> = {}): RegressionCase => ({ id, route, input: `POST /v1/${id}`, key: id, status: 200, version: VERSION, occurredAt: day(d), event: ref, ...over });
const ids = (cs: readonly RegressionCase[]) => cs.map((c) => c.id);

describe("admitting recorded successes", () => {
  it("fills up to size; the same question recorded again replaces the older case (keeping its pin), never a newer one", () => {
    let cases: RegressionCase[] = [];
    cases = admit(cases, kase("a", "calc", 1), { size: 3 }).cases;
    cases = admit(cases, kase("b", "calc", 2), { size: 3 }).cases;
    const pinned = admit([{ ...cases[0]!, pinned: { by: "alice", at: day(3) } }, cases[1]!], kase("a2", "calc", 4, { key: "a" }), { size: 3 });
    expect(pinned.admission).toEqual({ kept: true, replaced: "a" });
    expect(pinned.cases.map((c) => [c.id, c.pinned?.by])).toEqual([["a2", "alice"], ["b", undefined]]);
    expect(admit(pinned.cases, kase("a0", "calc", 1, { key: "a" }), { size: 3 }).admission).toEqual({ kept: false, why: "a newer recording of the same question (a2) is kept" });
  });

  it("a full set evicts the oldest unpinned case of the route with the most cases, so a rare route keeps its cases", () => {
    const full = [kase("c1", "calc", 1), kase("c2", "calc", 2), kase("c3", "calc", 3), kase("r1", "remember", 0)];
    const r = admit(full, kase("c4", "calc", 4), { size: 4 });
    expect(r.admission).toEqual({ kept: true, evicted: "c1" });
    expect(ids(r.cases)).toEqual(["c2", "c3", "r1", "c4"]);
    // A new route's first case pushes out the crowded route's oldest, not the lone old case of another route.
    expect(admit(full, kase("e1", "echo", 5), { size: 4 }).admission).toEqual({ kept: true, evicted: "c1" });
    // Pinned cases are never evicted; a set of only pinned cases takes no more.
    const allPinned = full.map((c) => ({ ...c, pinned: { by: "bob", at: day(9) } }));
    expect(admit(allPinned, kase("x", "calc", 9), { size: 4 }).admission).toMatchObject({ kept: false, why: expect.stringContaining("full (4) of pinned cases") });
  });

  it("choosing K: every pinned case, then newest first from each route in turn", () => {
    const cases = [kase("c1", "calc", 1), kase("c2", "calc", 2), kase("c3", "calc", 3), kase("r1", "remember", 1), kase("e1", "echo", 2, { pinned: { by: "bob", at: day(3) } })];
    expect(ids(chooseCases(cases, 3))).toEqual(["e1", "c3", "r1"]);
    expect(ids(chooseCases(cases, 4))).toEqual(["e1", "c3", "r1", "c2"]);
    expect(ids(chooseCases(cases, 100)).sort()).toEqual(ids(cases).sort());
    expect(ids(chooseCases(cases, 0))).toEqual(["e1"]);
  });
});

describe("the regression store over KV, and pin / drop through the operator API", () => {
  let env: Env;
  let store: RegressionStore;
  let dir: string;
  let token: string;
  let app: ReturnType<typeof buildApp>;
  const success = (id: string, message: string, at: string) =>
    SuccessEvent.parse({ id, agent: "shop", version: VERSION, occurredAt: at, route: "chat", request: { path: "/v1/chat", body: JSON.stringify({ message }) }, response: { status: 200, body: "{}" } });

  beforeAll(async () => {
    env = await startEnv("regressions-test");
    store = regressionStore(await env.bucket("regressions"));
    dir = mkdtempSync(join(tmpdir(), "moss-regressions-"));
    token = addOperator(join(dir, "operators.json"), "alice");
    app = buildApp({ stores: await openStores(env.bus), regressions: store, publish: async (def, m) => void published.push({ name: def.name, ...(m as object) }), operatorsFile: join(dir, "operators.json") });
  });
  afterAll(async () => {
    await app?.close();
    await env?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const published: Array<Record<string, unknown>> = [];
  const post = (url: string, payload: object = {}, auth = true) => app.inject({ method: "POST", url, payload, headers: auth ? { authorization: `Bearer ${token}` } : {} });

  it("admits by compare-and-set, counting every recorded success seen, kept or not", async () => {
    expect(await store.admit(success("s1", "what is 2 + 3", day(1)), ref, { size: 2 })).toEqual({ kept: true });
    expect(await store.admit(success("s1", "what is 2 + 3", day(1)), ref, { size: 2 })).toEqual({ kept: false, why: "already in the set" });
    expect(await store.admit(success("s2", "set rate", day(2)), ref, { size: 2 })).toEqual({ kept: true });
    expect(await store.admit(success("s3", "what is 2 + 3", day(3)), ref, { size: 2 })).toEqual({ kept: true, replaced: "s1" });
    const set = (await store.get("shop"))!;
    expect(set.seen).toBe(4);
    expect(set.cases.map((c) => [c.id, c.route, c.input])).toEqual([
      ["s3", "chat", 'POST /v1/chat {"message":"what is 2 + 3"}'],
      ["s2", "chat", 'POST /v1/chat {"message":"set rate"}'],
    ]);
  });

  it("an operator pins, unpins and drops a case; the pin records who; an unknown case or no token changes nothing", async () => {
    const pin = await post("/v1/agents/shop/regressions/s2/pin");
    expect(pin.statusCode).toBe(200);
    expect(pin.json()).toMatchObject({ action: "pinned", by: "alice", case: { id: "s2", pinned: { by: "alice" } } });
    expect((await store.get("shop"))!.cases.find((c) => c.id === "s2")!.pinned?.by).toBe("alice");
    expect((await post("/v1/agents/shop/regressions/s2/pin", { unpin: true })).json()).toMatchObject({ action: "unpinned" });
    expect((await store.get("shop"))!.cases.find((c) => c.id === "s2")!.pinned).toBeUndefined();
    const none = await post("/v1/agents/shop/regressions/nope/drop");
    expect(none.statusCode).toBe(404);
    expect(none.json()).toMatchObject({ error: "MOSS_E_NO_REGRESSION_CASE", message: expect.stringContaining("moss regressions shop") });
    expect((await post("/v1/agents/shop/regressions/s3/drop", {}, false)).statusCode).toBe(401);
    expect((await post("/v1/agents/shop/regressions/s3/drop")).json()).toMatchObject({ action: "dropped" });
    expect((await store.get("shop"))!.cases.map((c) => c.id)).toEqual(["s2"]);
    // Each change is said on the bus for the audit log, naming the operator; a refused one is not.
    expect(published.map((m) => [m["name"], m["caseId"], m["action"], m["by"]])).toEqual([
      ["regression.case.v1", "s2", "pinned", "alice"],
      ["regression.case.v1", "s2", "unpinned", "alice"],
      ["regression.case.v1", "s3", "dropped", "alice"],
    ]);
  });
});
