// The operator API: the one way to approve, reject or reset, recording the operator a token authenticates.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bisectStore, findFailures, openStores, reviewStore, timeTravelStore, type Stores } from "@moss/batch";
import { askQuery, createBus, serveQuery, type Bus } from "@moss/bus";
import { Approval, BatchRecord, Buckets, Messages, Queries } from "@moss/contracts";
import { addOperator, authenticate, buildApp, readOperators, ROUTE_DOCS, routesOf } from "@moss/operator-api";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNats, storedMessages, type NatsServer } from "../helpers/nats";

const AT = "2026-01-01T00:00:00.000Z";
const record = (batchId: string, state: BatchRecord["state"]): BatchRecord =>
  BatchRecord.parse({ batchId, agent: "shop", fingerprint: "fp", baseVersion: "a".repeat(40), state, failures: [], count: 1, openedAt: AT, deadline: AT, updatedAt: AT });

describe("the operator API over a real nats-server", () => {
  let nats: NatsServer;
  let bus: Bus;
  let stores: Stores;
  let app: FastifyInstance;
  let dir: string;
  let operatorsFile: string;
  const logged: Array<{ msg: string; fields: Record<string, unknown> }> = [];
  const tokens: Record<string, string> = {};

  const approvals = (): Promise<Approval[]> => storedMessages(bus, Messages.approval);
  const post = (url: string, token: string | undefined, payload: unknown = {}) =>
    app.inject({ method: "POST", url, payload: payload as object, headers: token ? { authorization: `Bearer ${token}` } : {} });

  beforeAll(async () => {
    nats = await startNats();
    bus = await createBus({ url: nats.url, name: "operator-api-test" });
    await bus.provision();
    stores = await openStores(bus);
    dir = mkdtempSync(join(tmpdir(), "moss-operator-api-"));
    operatorsFile = join(dir, "operators.json");
    tokens["alice"] = addOperator(operatorsFile, "alice");
    tokens["bob"] = addOperator(operatorsFile, "bob");
    tokens["rita"] = addOperator(operatorsFile, "rita", "read");
    const log = { info: (msg: string, fields = {}) => logged.push({ msg, fields }), warn: (msg: string, fields = {}) => logged.push({ msg, fields }), error: (msg: string, fields = {}) => logged.push({ msg, fields }), debug: () => undefined };
    const batchesKv = await bus.kv(Buckets.batches);
    const timeTravel = { travels: timeTravelStore(await bus.kv(Buckets.timeTravel)), bisects: bisectStore(await bus.kv(Buckets.bisects)), findFailures: (id: string) => findFailures(batchesKv, id), blob: { get: async () => Buffer.from("log line\n") } };
    const review = { reviews: reviewStore(await bus.kv(Buckets.reviews)), baseline: async () => undefined, known: (a: string) => a === "shop" };
    // No promoter runs here: a decision waits only briefly for one before answering 202 (pending).
    const audit = (url: string) => askQuery(bus.nc, Queries.audit, { method: "GET", url }, { timeoutMs: 1_000, blob: async () => Buffer.from("") });
    app = buildApp({ stores, publish: (def, msg) => bus.publish(def, msg), operatorsFile, timeTravel, review, audit, log: log as never, outcomeWaitMs: 300 });
    for (const [id, state] of [["bwait", "awaiting-approval"], ["bwait2", "awaiting-approval"], ["bdone", "promoted"], ["brepl", "replaying"], ["brewr", "rewriting"]] as const) await stores.batches.create(record(id, state));
    const ev = (n: string) => ({ sha256: n.repeat(64), size: 10 });
    await stores.batches.create({ ...record("bold", "promoted"), failures: [{ id: "f0a1b2c3d4e5f60718293a4b5c6d7e8f", event: ev("1") }, { id: "f0a1b2c3ffffffffffffffffffffffff", event: ev("2") }] });
  });
  afterAll(async () => {
    await app?.close();
    await bus?.close();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("keeps only token hashes, and authenticates a token to its operator's name", () => {
    const ops = readOperators(operatorsFile);
    expect(ops.operators.map((o) => [o.name, o.role])).toEqual([["alice", "operate"], ["bob", "operate"], ["rita", "read"]]);
    expect(JSON.stringify(ops)).not.toContain(tokens["alice"]);
    expect(authenticate(ops, tokens["alice"])).toEqual({ name: "alice", role: "operate" });
    expect(authenticate(ops, tokens["bob"])).toEqual({ name: "bob", role: "operate" });
    expect(authenticate(ops, "nope")).toBeUndefined();
    expect(authenticate(ops, undefined)).toBeUndefined();
  });

  it("refuses a request without an operator's token, says why, logs it, and publishes nothing", async () => {
    for (const token of [undefined, "forged-token-of-nobody"]) {
      const r = await post("/v1/batches/bwait/approve", token);
      expect(r.statusCode).toBe(401);
      expect(r.json()).toMatchObject({ error: "MOSS_E_NOT_AN_OPERATOR", message: expect.stringContaining("needs an operator's token") });
    }
    expect(logged.filter((l) => l.msg.includes("refused"))).toHaveLength(2);
    expect(await approvals()).toEqual([]);
  });

  it("an approval records the operator of the token, never a name from the body", async () => {
    const claimed = await post("/v1/batches/bwait/approve", tokens["bob"], { by: "alice" });
    expect(claimed.statusCode).toBe(400);
    expect(claimed.json().message).toMatch(/by/);
    const r = await post("/v1/batches/bwait/approve", tokens["bob"], { reason: "looked at the diff" });
    expect(r.statusCode).toBe(202);
    expect(r.json()).toMatchObject({ batchId: "bwait", decision: "approve", by: "bob" });
    expect(await approvals()).toEqual([{ batchId: "bwait", decision: "approve", by: "bob", reason: "looked at the diff" }]);
  });

  it("approves only a batch awaiting approval, rejects only one that can still be, and says what state it is in", async () => {
    const done = await post("/v1/batches/bdone/approve", tokens["alice"]);
    expect(done.statusCode).toBe(409);
    expect(done.json()).toMatchObject({ error: "MOSS_E_NOT_AWAITING_APPROVAL", state: "promoted" });
    const late = await post("/v1/batches/bdone/reject", tokens["alice"], { reason: "too late" });
    expect(late.statusCode).toBe(409);
    expect(late.json().message).toContain("can no longer be rejected");
    const noReason = await post("/v1/batches/brepl/reject", tokens["alice"]);
    expect(noReason.statusCode).toBe(400);
    const missing = await post("/v1/batches/bnope/approve", tokens["alice"]);
    expect(missing.statusCode).toBe(404);
    const ok = await post("/v1/batches/brepl/reject", tokens["alice"], { reason: "wrong approach" });
    expect(ok.statusCode).toBe(202);
    expect((await approvals()).map((a) => `${a.batchId}:${a.decision}:${a.by}`)).toEqual(["bwait:approve:bob", "brepl:reject:alice"]);
  });

  it("a decision answers with its real outcome once the promoter acted on it, and says so when it has not yet", async () => {
    // Standing in for the promoter: the reject of a batch still rewriting ends it.
    const sub = bus.nc.subscribe(Messages.approval.subject, {
      callback: (_e, m) => void stores.batches.transition((m.json() as Approval).batchId, "rejected", { reason: `rejected by ${(m.json() as Approval).by}: ${(m.json() as Approval).reason}` }),
    });
    try {
      const r = await post("/v1/batches/brewr/reject", tokens["bob"], { reason: "wrong approach" });
      expect(r.statusCode).toBe(200);
      expect(r.json()).toEqual({ batchId: "brewr", decision: "reject", by: "bob", from: "rewriting", state: "rejected", reason: "rejected by bob: wrong approach", settled: true });
    } finally {
      sub.unsubscribe();
    }
    const pending = await post("/v1/batches/bwait2/reject", tokens["bob"], { reason: "nobody home" });
    expect(pending.statusCode).toBe(202);
    expect(pending.json()).toMatchObject({ state: "awaiting-approval", settled: false, message: expect.stringContaining("the promoter has not acted on the reject") });
  });

  it("a new token for an operator revokes the old one at once", async () => {
    const old = tokens["alice"]!;
    const fresh = addOperator(operatorsFile, "alice");
    expect((await post("/v1/batches/bwait2/approve", old)).statusCode).toBe(401);
    const r = await post("/v1/batches/bwait2/approve", fresh);
    expect(r.statusCode).toBe(202);
    expect(r.json().by).toBe("alice");
  });

  it("a broken operators file is an error that says where and what to do, and nobody is let in", async () => {
    const broken = join(dir, "broken.json");
    writeFileSync(broken, JSON.stringify({ operators: [{ name: "eve", tokenSha256: "short" }] }));
    const bad = buildApp({ stores, publish: async () => ({}), operatorsFile: broken });
    const r = await bad.inject({ method: "POST", url: "/v1/batches/bwait/approve", headers: { authorization: "Bearer x" } });
    expect(r.statusCode).toBe(500);
    expect(r.json()).toMatchObject({ error: "MOSS_E_OPERATORS_FILE", message: expect.stringContaining(broken) });
    expect(r.json().message).toContain("moss operator add NAME");
    await bad.close();
  });

  it("a rollback needs no consent, only an operator: it is published with who asked, and refused for an agent never deployed or a bad version", async () => {
    const none = await post("/v1/agents/nodeploy/rollback", tokens["bob"], {});
    expect(none.statusCode).toBe(400);
    expect(none.json().message).toMatch(/agent nodeploy has no deployment/);
    await stores.deployments.record("shop", () => ({ agent: "shop", image: "moss/shop:2", version: "2222222222222222222222222222222222222222", container: "c2", updatedAt: new Date().toISOString(), lastGood: [] }));
    const bad = await post("/v1/agents/shop/rollback", tokens["bob"], { to: "not-a-sha" });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().message).toMatch(/to: a commit sha or a prefix/);
    const nobody = await post("/v1/agents/shop/rollback", undefined, {});
    expect(nobody.statusCode).toBe(401);
    const r = await post("/v1/agents/shop/rollback", tokens["bob"], { to: "1111111", reason: "pager" });
    expect(r.statusCode).toBe(202);
    expect(r.json()).toMatchObject({ agent: "shop", to: "1111111", by: "bob", live: "2222222222222222222222222222222222222222" });
    const sent = await storedMessages(bus, Messages.rollback);
    expect(sent).toEqual([expect.objectContaining({ id: r.json().id, agent: "shop", to: "1111111", by: "bob", reason: "pager" })]);
  });

  it("a replay of stored turns against a version: validated, refused with the reason, else recorded and published with who asked", async () => {
    const replays = () => storedMessages(bus, Messages.timeTravel);
    expect((await post("/v1/replays", undefined, { failure: "f0a1b2c3d4e5", version: "live" })).statusCode).toBe(401);
    const both = await post("/v1/replays", tokens["bob"], { failure: "f0a1b2c3d4e5", regressions: "shop", version: "live" });
    expect(both.statusCode).toBe(400);
    expect(both.json().message).toContain("name exactly one of failure, allFailuresOf, regressions");
    const badVersion = await post("/v1/replays", tokens["bob"], { failure: "f0a1b2c3d4e5", version: "--exec=sh" });
    expect(badVersion.json().message).toContain("version:");
    const unknown = await post("/v1/replays", tokens["bob"], { failure: "deadbeefdeadbeef", version: "live" });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toMatchObject({ error: "MOSS_E_NO_STORED_FAILURE", message: expect.stringContaining("moss show BATCH") });
    const ambiguous = await post("/v1/replays", tokens["bob"], { failure: "f0a1b2c3", version: "live" });
    expect(ambiguous.json().message).toContain("is the start of 2 failures' ids");
    expect(await replays()).toEqual([]);

    const ok = await post("/v1/replays", tokens["bob"], { failure: "f0a1b2c3d4e5", version: "moss/bold/1" });
    expect(ok.statusCode).toBe(202);
    expect(ok.json()).toMatchObject({ agent: "shop", version: "moss/bold/1", state: "requested", by: "bob", cases: [{ kind: "failure", id: "f0a1b2c3d4e5f60718293a4b5c6d7e8f", batchId: "bold" }] });
    const all = await post("/v1/replays", tokens["bob"], { allFailuresOf: "bold", version: "live" });
    expect(all.json().cases).toHaveLength(2);
    expect((await replays()).map((m) => [m.by, m.cases.length])).toEqual([["bob", 1], ["bob", 2]]);
    const got = await app.inject({ method: "GET", url: `/v1/replays/${ok.json().id}`, headers: { authorization: `Bearer ${tokens["bob"]}` } });
    expect(got.json()).toMatchObject({ id: ok.json().id, state: "requested" });
    const none = await app.inject({ method: "GET", url: `/v1/replays/${ok.json().id}/logs/f0a1b2c3d4e5f60718293a4b5c6d7e8f`, headers: { authorization: `Bearer ${tokens["bob"]}` } });
    expect(none.json()).toMatchObject({ error: "MOSS_E_NO_SUCH_REPLAY", message: expect.stringContaining("it is requested") });
  });

  it("every mutation: 401 without a token, 403 with a read token (nothing published, nothing changed); a read token reads", async () => {
    const mutations = routesOf(app).filter((r) => r.method !== "GET" && r.method !== "HEAD");
    expect(mutations.length).toBeGreaterThanOrEqual(10);
    const before = (await storedMessages(bus, Messages.approval)).length;
    for (const r of mutations) {
      const url = r.url.replace(":id", "bwait").replace(":agent", "shop").replace(":caseId", "x");
      const none = await app.inject({ method: r.method as "POST", url, payload: {} });
      expect(none.statusCode, `${r.method} ${r.url} without a token`).toBe(401);
      const read = await app.inject({ method: r.method as "POST", url, payload: {}, headers: { authorization: `Bearer ${tokens["rita"]}` } });
      expect(read.statusCode, `${r.method} ${r.url} with a read token`).toBe(403);
      expect(read.json()).toMatchObject({ error: "MOSS_E_READ_ONLY_TOKEN", message: expect.stringContaining("rita's token may only read") });
    }
    expect(await storedMessages(bus, Messages.approval)).toHaveLength(before);
    expect((await stores.batches.get("bwait"))?.state).toBe("awaiting-approval");
    const me = await app.inject({ method: "GET", url: "/v1/whoami", headers: { authorization: `Bearer ${tokens["rita"]}` } });
    expect(me.json()).toEqual({ operator: "rita", role: "read" });
    expect((await app.inject({ method: "GET", url: "/v1/whoami" })).statusCode).toBe(401);
  });

  it("reads: batches filtered by state, agent and fingerprint; status; an agent's versions and regression set", async () => {
    const get = (url: string) => app.inject({ method: "GET", url, headers: { authorization: `Bearer ${tokens["rita"]}` } });
    const ids = async (q: string) => ((await get(`/v1/batches${q}`)).json() as { batches: { batchId: string }[] }).batches.map((b) => b.batchId).sort();
    expect(await ids("?state=promoted")).toEqual(["bdone", "bold"]);
    expect(await ids("?state=promoted,replaying&agent=shop&fingerprint=fp")).toEqual(["bdone", "bold", "brepl"]);
    expect(await ids("?agent=nobody")).toEqual([]);
    const bad = await get("/v1/batches?state=stuck");
    expect(bad.statusCode).toBe(400);
    expect(bad.json().message).toContain("no state stuck; the states are collecting");
    const status = (await get("/v1/status")).json();
    expect(status).toMatchObject({ services: [], deployments: [{ agent: "shop", image: "moss/shop:2" }], batches: { promoted: 2 } });
    expect((await get("/v1/agents/shop/versions")).json()).toMatchObject({ agent: "shop", deployment: { image: "moss/shop:2" }, candidates: [] });
    expect((await get("/v1/agents/nobody/versions")).json()).toEqual({ agent: "nobody", deployment: null, candidates: [] });
  });

  it("the auditor's read model through the one door: its answer as it gives it, and a clear 503 when no auditor answers", async () => {
    const get = (url: string) => app.inject({ method: "GET", url, headers: { authorization: `Bearer ${tokens["rita"]}` } });
    expect((await app.inject({ method: "GET", url: "/v1/batches/b1" })).statusCode).toBe(401);
    const asked: string[] = [];
    const served = serveQuery(bus.nc, Queries.audit, async (req) => {
      asked.push(req.url);
      return req.url.startsWith("/v1/batches/b1") ? { status: 200, contentType: "application/json; charset=utf-8", body: Buffer.from(JSON.stringify({ batchId: "b1", timeline: [] })) } : { status: 404, contentType: "application/json", body: Buffer.from(JSON.stringify({ error: "MOSS_E_BATCH_NOT_FOUND", message: "no audit records" })) };
    }, { blobs: { put: async () => ({ sha256: "0".repeat(64), size: 0 }) }, log: { warn: () => undefined } as never });
    try {
      const ok = await get("/v1/batches/b1?diff=0");
      expect([ok.statusCode, ok.json()]).toEqual([200, { batchId: "b1", timeline: [] }]);
      const missing = await get("/v1/batches/nope");
      expect([missing.statusCode, missing.json().error]).toEqual([404, "MOSS_E_BATCH_NOT_FOUND"]);
      expect(asked).toEqual(["/v1/batches/b1?diff=0", "/v1/batches/nope"]);
    } finally {
      served.stop();
    }
    const away = await get("/v1/audit/verify");
    expect(away.statusCode).toBe(503);
    expect(away.json()).toMatchObject({ error: "MOSS_E_QUERY_UNANSWERED", message: expect.stringContaining("is the auditor running") });
  });

  it("a bisect is validated, refused with the reason, else recorded and published with who asked", async () => {
    const missing = await post("/v1/bisects", tokens["bob"], { failure: "f0a1b2c3d4e5", good: "v1" });
    expect(missing.statusCode).toBe(400);
    expect(missing.json().message).toContain("bad:");
    expect((await post("/v1/bisects", tokens["bob"], { failure: "deadbeefdeadbeef", good: "v1", bad: "live" })).json()).toMatchObject({ error: "MOSS_E_NO_STORED_FAILURE" });
    const ok = await post("/v1/bisects", tokens["bob"], { failure: "f0a1b2c3d4e5", good: "v1", bad: "live", fixed: true });
    expect(ok.statusCode).toBe(202);
    expect(ok.json()).toMatchObject({ agent: "shop", state: "requested", fixed: true, by: "bob", failure: { id: "f0a1b2c3d4e5f60718293a4b5c6d7e8f" } });
    expect(await storedMessages(bus, Messages.bisect)).toEqual([expect.objectContaining({ id: ok.json().id, good: "v1", bad: "live", fixed: true, by: "bob" })]);
    const got = await app.inject({ method: "GET", url: `/v1/bisects/${ok.json().id}`, headers: { authorization: `Bearer ${tokens["bob"]}` } });
    expect(got.json()).toMatchObject({ id: ok.json().id, state: "requested" });
  });

  it("mark-reviewed needs an operate token; a diff is a read, which a read token may ask for; an unknown agent is refused", async () => {
    const auth = (t: string) => ({ authorization: `Bearer ${t}` });
    expect((await post("/v1/agents/shop/reviewed", tokens["rita"], { version: "v1" })).statusCode).toBe(403);
    expect((await post("/v1/agents/nope/reviewed", tokens["bob"], { version: "v1" })).json().message).toContain("no agent nope in the config");
    const marked = await post("/v1/agents/shop/reviewed", tokens["bob"], { version: "v1" });
    expect(marked.statusCode).toBe(202);
    expect(marked.json()).toMatchObject({ kind: "mark-reviewed", agent: "shop", version: "v1", by: "bob", state: "requested" });
    const diff = await app.inject({ method: "GET", url: "/v1/agents/shop/diff", headers: auth(tokens["rita"]!) });
    expect(diff.statusCode).toBe(202);
    expect(diff.json()).toMatchObject({ kind: "diff", version: "live", by: "rita" });
    expect((await storedMessages(bus, Messages.review)).map((m) => [m.kind, m.by])).toEqual([["mark-reviewed", "bob"], ["diff", "rita"]]);
    const none = await app.inject({ method: "GET", url: "/v1/agents/shop/reviewed", headers: auth(tokens["rita"]!) });
    expect(none.json().message).toContain("moss mark-reviewed shop COMMIT");
  });

  it("serves its OpenAPI document without a token, and the document describes every route the app serves, with its role", async () => {
    const r = await app.inject({ method: "GET", url: "/docs/json" });
    expect(r.statusCode).toBe(200);
    const doc = r.json() as { openapi: string; paths: Record<string, Record<string, { "x-moss-role": string; requestBody?: { content: { "application/json": { schema: { properties?: Record<string, unknown> } } } } }>> };
    expect(doc.openapi).toBe("3.1.0");
    const served = routesOf(app).filter((x) => x.method !== "HEAD").map((x) => `${x.method} ${x.url}`).sort();
    expect(Object.keys(ROUTE_DOCS).sort()).toEqual(served);
    for (const m of routesOf(app).filter((x) => x.method === "POST")) expect(ROUTE_DOCS[`POST ${m.url}`]!.role, m.url).toBe("operate");
    expect(doc.paths["/v1/replays"]!["post"]!.requestBody!.content["application/json"].schema.properties).toHaveProperty("version");
    expect(doc.paths["/v1/bisects/{id}"]!["get"]!["x-moss-role"]).toBe("read");
  });
});
