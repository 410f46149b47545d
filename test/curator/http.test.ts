import { FailureEvent } from "@moss/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp, type IngestDeps } from "@moss/curator";
import { waitFor } from "../helpers/nats";
import { VERSION, batchesOf, failureInput, startIngestStack, type IngestStack } from "../helpers/ingest";

const TOKEN = "s3cret-token-of-24-chars";

/** An ingest app whose publish records what it was given (and can be made to fail or to hang until released). */
function ingest(opts: { token?: string; bodyLimitBytes?: number; publish?: IngestDeps["publish"] } = {}) {
  const published: FailureEvent[] = [];
  const app = buildApp({
    bodyLimitBytes: opts.bodyLimitBytes ?? 64 * 1024,
    ...(opts.token ? { token: opts.token } : {}),
    publish:
      opts.publish ??
      (async (_def, ev) => {
        published.push(ev as FailureEvent);
      }),
  });
  return { app, published };
}

describe("curator HTTP ingest (buildApp + inject)", () => {
  it("answers 202 with the id only once publish has resolved, and publishes the parsed event", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const published: FailureEvent[] = [];
    const { app } = ingest({
      publish: async (_def, ev) => {
        await gate;
        published.push(ev as FailureEvent);
      },
    });
    let answered = false;
    const res = app.inject({ method: "POST", url: "/v1/failures", payload: failureInput("shop", "f-202") }).then((r) => {
      answered = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 100));
    // Not durable yet: no answer.
    expect(answered).toBe(false);
    release();
    const r = await res;
    expect(r.statusCode).toBe(202);
    expect(r.json()).toEqual({ id: "f-202" });
    expect(published).toHaveLength(1);
    // Defaults filled in by the schema.
    expect(published[0]).toMatchObject({ id: "f-202", agent: "shop", schema: "moss.failure.v1", timeoutMs: 10_000, logs: [], tags: {} });
    await app.close();
  });

  it("400 lists every schema problem with its path, and publishes nothing", async () => {
    const { app, published } = ingest();
    const bad = { ...failureInput("Shop Bot", "not an id!"), version: "main", occurredAt: "yesterday", request: { path: "v1/chat" }, error: { message: "x" } };
    const r = await app.inject({ method: "POST", url: "/v1/failures", payload: bad });
    expect(r.statusCode).toBe(400);
    const body = r.json<{ error: string; message: string; problems: Array<{ path: string; message: string }> }>();
    expect(body.error).toBe("MOSS_E_INVALID_FAILURE");
    expect(body.message).toContain("failure.v1");
    const paths = body.problems.map((p) => p.path).sort();
    expect(paths).toEqual(["agent", "error.type", "id", "occurredAt", "request.path", "version"]);
    for (const p of body.problems) expect(p.message.length).toBeGreaterThan(0);
    expect(body.problems.find((p) => p.path === "agent")!.message).toMatch(/agent name/);
    expect(published).toHaveLength(0);
    await app.close();
  });

  it("POST /v1/successes: a recorded success goes out on moss.success.<agent> (202 once durable); a bad one gets every problem", async () => {
    const sent: Array<{ def: string; ev: unknown }> = [];
    const { app } = ingest({ publish: async (def, ev) => void sent.push({ def: def.name, ev }) });
    const good = { id: "s-1", agent: "shop", version: VERSION, occurredAt: "2025-01-01T00:00:00.000Z", route: "chat", request: { path: "/v1/chat", body: "{}" }, response: { status: 200, body: '{"ok":true}' } };
    const r = await app.inject({ method: "POST", url: "/v1/successes", payload: good });
    expect(r.statusCode).toBe(202);
    expect(r.json()).toEqual({ id: "s-1" });
    expect(sent).toEqual([{ def: "success.v1", ev: expect.objectContaining({ schema: "moss.success.v1", id: "s-1", response: { status: 200, body: '{"ok":true}' } }) }]);
    const bad = await app.inject({ method: "POST", url: "/v1/successes", payload: { ...good, response: undefined } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ error: "MOSS_E_INVALID_SUCCESS", message: expect.stringContaining("success.v1") });
    expect(bad.json().problems.map((p: { path: string }) => p.path)).toEqual(["response"]);
    expect(sent).toHaveLength(1);
    await app.close();
  });

  it("400 on a body that is not JSON at all names the problem at the root", async () => {
    const { app, published } = ingest();
    const r = await app.inject({ method: "POST", url: "/v1/failures", payload: "[1,2]", headers: { "content-type": "application/json" } });
    expect(r.statusCode).toBe(400);
    expect(r.json<{ problems: Array<{ path: string }> }>().problems.map((p) => p.path)).toEqual(["(root)"]);
    const broken = await app.inject({ method: "POST", url: "/v1/failures", payload: "{not json", headers: { "content-type": "application/json" } });
    expect(broken.statusCode).toBe(400);
    expect(published).toHaveLength(0);
    await app.close();
  });

  it("401 without the bearer token or with a wrong one; /health stays open; the right token gets through", async () => {
    const { app, published } = ingest({ token: TOKEN });
    const ev = failureInput("shop", "f-auth");
    const none = await app.inject({ method: "POST", url: "/v1/failures", payload: ev });
    expect(none.statusCode).toBe(401);
    expect(none.json<{ error: string; message: string }>()).toMatchObject({ error: "MOSS_E_UNAUTHORIZED" });
    expect(none.json<{ message: string }>().message).toContain("Authorization: Bearer");
    const wrong = await app.inject({ method: "POST", url: "/v1/failures", payload: ev, headers: { authorization: "Bearer s3cret-token-of-24-chaRS" } });
    expect(wrong.statusCode).toBe(401);
    const shorter = await app.inject({ method: "POST", url: "/v1/failures", payload: ev, headers: { authorization: `Bearer ${TOKEN.slice(0, -1)}` } });
    expect(shorter.statusCode).toBe(401);
    const flag = await app.inject({ method: "POST", url: "/v1/flags", payload: {} });
    expect(flag.statusCode).toBe(401);
    expect(published).toHaveLength(0);

    const health = await app.inject({ method: "GET", url: "/health" });
    expect(health.statusCode).toBe(200);
    expect(health.json()).toEqual({ ok: true });

    const ok = await app.inject({ method: "POST", url: "/v1/failures", payload: ev, headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.statusCode).toBe(202);
    expect(published.map((e) => e.id)).toEqual(["f-auth"]);
    await app.close();
  });

  it("413 over bodyLimitBytes, with advice; just under the limit is accepted", async () => {
    const limit = 4_096;
    const { app, published } = ingest({ bodyLimitBytes: limit });
    const big = failureInput("shop", "f-big", { logs: ["x".repeat(3_000), "y".repeat(2_000)] });
    const r = await app.inject({ method: "POST", url: "/v1/failures", payload: JSON.stringify(big), headers: { "content-type": "application/json" } });
    expect(r.statusCode).toBe(413);
    const body = r.json<{ error: string; message: string }>();
    expect(body.error).toBe("MOSS_E_TOO_LARGE");
    expect(body.message).toContain(String(limit));
    expect(published).toHaveLength(0);

    const small = JSON.stringify(failureInput("shop", "f-small", { logs: ["x".repeat(2_000)] }));
    expect(Buffer.byteLength(small)).toBeLessThan(limit);
    const ok = await app.inject({ method: "POST", url: "/v1/failures", payload: small, headers: { "content-type": "application/json" } });
    expect(ok.statusCode).toBe(202);
    await app.close();
  });

  it("503 when publish fails, telling the agent to retry with the same id", async () => {
    const { app } = ingest({
      publish: async () => {
        throw new Error("no responders available for request");
      },
    });
    const r = await app.inject({ method: "POST", url: "/v1/failures", payload: failureInput("shop", "f-down") });
    expect(r.statusCode).toBe(503);
    const body = r.json<{ error: string; message: string }>();
    expect(body.error).toBe("MOSS_E_UNAVAILABLE");
    expect(body.message).toContain("no responders");
    expect(body.message).toMatch(/retry with the same id/);
    await app.close();
  });

  it("POST /v1/flags becomes a FlaggedTurn failure: reason as message, tags.flaggedBy, the request as given", async () => {
    const { app, published } = ingest();
    const flag = {
      agent: "shop",
      version: VERSION,
      route: "checkout",
      request: { method: "POST", path: "/v1/chat", body: '{"message":"refund my order"}' },
      response: { status: 200, body: '{"answer":"your order ships today"}' },
      reason: "answered about shipping when asked for a refund",
      by: "ana",
    };
    const r = await app.inject({ method: "POST", url: "/v1/flags", payload: flag });
    expect(r.statusCode).toBe(202);
    const { id } = r.json<{ id: string }>();
    expect(published).toHaveLength(1);
    const ev = published[0]!;
    expect(ev.id).toBe(id);
    expect(FailureEvent.parse(ev)).toEqual(ev);
    expect(ev.error).toEqual({ type: "FlaggedTurn", message: flag.reason });
    expect(ev.tags).toEqual({ flaggedBy: "ana" });
    expect(ev).toMatchObject({ agent: "shop", version: VERSION, route: "checkout", response: flag.response });
    expect(ev.request).toMatchObject({ method: "POST", path: "/v1/chat", body: flag.request.body });
    expect(Math.abs(Date.parse(ev.occurredAt) - Date.now())).toBeLessThan(10_000);

    // Two flags of the same turn are two failures (distinct ids).
    const again = await app.inject({ method: "POST", url: "/v1/flags", payload: flag });
    expect(again.json<{ id: string }>().id).not.toBe(id);

    const bad = await app.inject({ method: "POST", url: "/v1/flags", payload: { ...flag, reason: "", by: undefined } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json<{ problems: Array<{ path: string }> }>().problems.map((p) => p.path).sort()).toEqual(["by", "reason"]);
    await app.close();
  });
});

describe("curator HTTP ingest, for real (nats-server + curator process)", () => {
  let env: IngestStack;
  beforeAll(async () => {
    env = await startIngestStack({ batchSize: 2, name: "ingest-http" });
  });
  afterAll(async () => {
    await env?.stop();
  });

  it("two failures POSTed over HTTP get 202s and close a batch of 2 in moss_batches", async () => {
    const agent = "http-shop";
    for (const id of ["fhttp1", "fhttp2"]) {
      const res = await fetch(`${env.ingestUrl}/v1/failures`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(failureInput(agent, id)) });
      expect(res.status).toBe(202);
      expect(await res.json()).toEqual({ id });
    }
    const [batch] = await waitFor(async () => {
      const b = await batchesOf(env.bus, agent);
      return b.length ? b : undefined;
    }, 15_000, `a batch of ${agent} (curator log: ${env.logs.slice(-5).join(" | ")})`);
    expect(batch!.count).toBe(2);
    expect(batch!.failures.map((f) => f.id).sort()).toEqual(["fhttp1", "fhttp2"]);
    expect(batch!.baseVersion).toBe(VERSION);
    expect(batch!.state).not.toBe("collecting");
  });
});
