import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBlobStore } from "@moss/blob";
import { createBus, kvGet, type Bus } from "@moss/bus";
import { BatchRecord, BreakerReset, Buckets, FailureEvent, FingerprintBreaker, Messages } from "@moss/contracts";
import { openStores } from "@moss/batch";
import { addOperator, buildApp } from "@moss/operator-api";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startNats, storedMessages, waitFor, type NatsServer } from "../helpers/nats";
import { VERSION, batchesOf, startIngestStack, type IngestStack } from "../helpers/ingest";
import { runMoss } from "../helpers/moss";

const moss = (args: string[], env: Record<string, string> = {}) => runMoss(args, { env: { USER: "tester", ...env } });

describe("moss reset (a fingerprint's circuit breaker, through the operator API, in a real nats-server)", () => {
  let nats: NatsServer;
  let bus: Bus;
  let dir: string;
  let configFile: string;
  let api: FastifyInstance;
  /** The tokens of two operators, as `moss operator add` gives them. */
  const tokens: Record<string, string> = {};
  const AGENT = "shop";
  const FP = "fp1|TypeError|/app/src/chat.ts#handleChat|/v1/chat";

  /** Seeds an open breaker `shop.<fpKey>`, and optionally a needs-human batch pointing at it. */
  async function seed(fpKey: string, batchId?: string, withKey = true): Promise<void> {
    const breakers = await bus.kv(Buckets.fingerprints);
    const b: FingerprintBreaker = { agent: AGENT, fingerprint: FP, consecutiveRejections: 3, needsHuman: true, counted: ["b1:1:replay", "b2:1:replay", "b3:1:verdict"], updatedAt: "2025-01-01T00:00:00.000Z" };
    await breakers.put(`${AGENT}.${fpKey}`, JSON.stringify(b));
    if (!batchId) return;
    const at = "2025-01-01T00:00:00.000Z";
    const rec = BatchRecord.parse({
      batchId,
      agent: AGENT,
      fingerprint: FP,
      ...(withKey ? { fingerprintKey: fpKey } : {}),
      baseVersion: VERSION,
      state: "needs-human",
      failures: [{ id: `f-${batchId}`, event: { sha256: "a".repeat(64), size: 10 } }],
      count: 1,
      openedAt: at,
      deadline: at,
      updatedAt: at,
    });
    await (await bus.kv(Buckets.batches)).put(batchId, JSON.stringify(rec));
  }

  const breaker = async (key: string) => (await kvGet(await bus.kv(Buckets.fingerprints), key, FingerprintBreaker))?.value;
  /** Every reset the audit log will see: the `breaker.reset.v1` messages on the pipeline stream. */
  const resets = (): Promise<BreakerReset[]> => storedMessages(bus, Messages.breakerReset);

  beforeAll(async () => {
    nats = await startNats();
    bus = await createBus({ url: nats.url, name: "cli-reset-test" });
    await bus.provision();
    dir = mkdtempSync(join(tmpdir(), "moss-cli-reset-"));
    const operatorsFile = join(dir, "operators.json");
    for (const name of ["ana", "tester"]) tokens[name] = addOperator(operatorsFile, name);
    api = buildApp({ stores: await openStores(bus), publish: (def, msg) => bus.publish(def, msg), operatorsFile });
    const port = await freePort();
    await api.listen({ host: "127.0.0.1", port });
    configFile = join(dir, "moss.json");
    writeFileSync(configFile, JSON.stringify({ dataDir: dir, nats: { url: nats.url }, operatorApi: { port, operatorsFile } }));
  });
  afterAll(async () => {
    await api?.close();
    await bus?.close();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("reset BATCH closes the breaker of that batch's fingerprint: 0 rejections, needsHuman false, resetBy", async () => {
    await seed("aaaaaaaaaaaaaaaaaaaa", "bnh1");
    const r = await moss(["reset", "bnh1", "--config", configFile], { MOSS_OPERATOR_TOKEN: tokens["ana"]! });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("reset the circuit breaker of shop.aaaaaaaaaaaaaaaaaaaa");
    expect(r.stdout).toContain("3 rejection(s) in a row, needs-human");
    const b = await breaker("shop.aaaaaaaaaaaaaaaaaaaa");
    expect(b).toMatchObject({ consecutiveRejections: 0, needsHuman: false, resetBy: "ana", fingerprint: FP });
    // Outcomes already counted stay counted: a redelivered old rejection must not trip it again.
    expect(b!.counted).toHaveLength(3);
    expect(Date.parse(b!.updatedAt)).toBeGreaterThan(Date.parse("2025-01-01T00:00:00.000Z"));
    // The operator's decision is audited: who, which breaker and batch, and what the breaker was.
    expect(await resets()).toEqual([
      { agent: AGENT, fingerprint: FP, breaker: "shop.aaaaaaaaaaaaaaaaaaaa", batchId: "bnh1", by: "ana", was: { consecutiveRejections: 3, needsHuman: true }, released: ["bnh1"], at: b!.updatedAt },
    ]);
    // The batch that waited for a human ends with the reset: the next failure of its fingerprint opens a new batch.
    expect(r.stdout).toContain("bnh1 ended (released)");
    expect((await kvGet(await bus.kv(Buckets.batches), "bnh1", BatchRecord))!.value).toMatchObject({ state: "released", reason: expect.stringContaining("reset by ana") });
  });

  it("reset AGENT.FPKEY names the breaker directly; who reset it is the operator of the token, never a name given", async () => {
    await seed("bbbbbbbbbbbbbbbbbbbb");
    const claimed = await moss(["reset", "shop.bbbbbbbbbbbbbbbbbbbb", "--by", "ana", "--config", configFile], { MOSS_OPERATOR_TOKEN: tokens["tester"]! });
    expect(claimed.code).toBe(1);
    expect(claimed.stderr).toContain("no --by any more");
    const r = await moss(["reset", "shop.bbbbbbbbbbbbbbbbbbbb", "--config", configFile], { MOSS_OPERATOR_TOKEN: tokens["tester"]! });
    expect(r.code).toBe(0);
    expect(await breaker("shop.bbbbbbbbbbbbbbbbbbbb")).toMatchObject({ consecutiveRejections: 0, needsHuman: false, resetBy: "tester" });
    const audited = (await resets()).at(-1)!;
    expect(audited).toMatchObject({ breaker: "shop.bbbbbbbbbbbbbbbbbbbb", by: "tester" });
    expect(audited.batchId).toBeUndefined();
  });

  it("says clearly when there is nothing to reset, or no operator asks, and changes nothing", async () => {
    const as = { MOSS_OPERATOR_TOKEN: tokens["tester"]! };
    await seed("eeeeeeeeeeeeeeeeeeee");
    const stranger = await moss(["reset", "shop.eeeeeeeeeeeeeeeeeeee", "--config", configFile], { MOSS_OPERATOR_TOKEN: "not-a-token-of-anyone" });
    expect(stranger.code).toBe(1);
    expect(stranger.stderr).toContain("needs an operator's token");
    const tokenless = await moss(["reset", "shop.eeeeeeeeeeeeeeeeeeee", "--config", configFile]);
    expect(tokenless.code).toBe(1);
    expect(tokenless.stderr).toContain("no operator token: set MOSS_OPERATOR_TOKEN");
    expect(await breaker("shop.eeeeeeeeeeeeeeeeeeee")).toMatchObject({ needsHuman: true, consecutiveRejections: 3 });

    const none = await moss(["reset", "shop.cccccccccccccccccccc", "--config", configFile], as);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("no circuit breaker shop.cccccccccccccccccccc: its fingerprint never had a rejected candidate");
    expect(await breaker("shop.cccccccccccccccccccc")).toBeUndefined();

    const noBatch = await moss(["reset", "bnope", "--config", configFile], as);
    expect(noBatch.code).toBe(1);
    expect(noBatch.stderr).toContain("no batch bnope");

    await seed("dddddddddddddddddddd", "bold", false);
    const noKey = await moss(["reset", "bold", "--config", configFile], as);
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toContain("reset by AGENT.FPKEY");
    expect(await breaker("shop.dddddddddddddddddddd")).toMatchObject({ needsHuman: true, consecutiveRejections: 3 });

    const usage = await moss(["reset", "--config", configFile]);
    expect(usage.code).toBe(1);
    expect(usage.stderr.trim()).toBe("moss: usage: moss reset BATCH|AGENT.FPKEY");
    // Nothing was reset, so nothing was audited beyond the two resets above.
    expect((await resets()).map((r) => r.breaker)).toEqual(["shop.aaaaaaaaaaaaaaaaaaaa", "shop.bbbbbbbbbbbbbbbbbbbb"]);
  });
});

describe("moss flag (through the real curator HTTP ingest)", () => {
  const TOKEN = "cli-flag-token-0123456789";
  let env: IngestStack;
  beforeAll(async () => {
    // batchSize 1: each flag closes a batch at once, so the test can find it in moss_batches.
    env = await startIngestStack({ batchSize: 1, token: TOKEN, name: "cli-flag" });
  });
  afterAll(async () => {
    await env?.stop();
  });

  it("POSTs the flag with the configured token, prints the failure id, and the curator files it as a FlaggedTurn", async () => {
    const body = JSON.stringify({ session: "s9", message: "refund order 42" });
    const r = await moss(["flag", "flag-shop", "--version", VERSION, "--path", "/v1/chat", "--body", body, "--reason", "answered about shipping, not the refund", "--by", "ana", "--route", "refunds", "--expect", "status=2xx", "--expect", '$.intent="refund"', "--expect", "$.order~^42$", "--expect", "!$.error", "--config", env.configFile]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const id = r.stdout.trim();
    expect(id).toMatch(/^[A-Za-z0-9_-]{1,128}$/);

    const batch = await waitFor(async () => (await batchesOf(env.bus, "flag-shop")).find((b) => b.failures.some((f) => f.id === id)), 15_000, `a batch holding flag ${id}`);
    const blob = createBlobStore({ kind: "fs", dir: env.config.paths.blobs });
    const ev = FailureEvent.parse(JSON.parse((await blob.get(batch.failures[0]!.event.sha256)).toString("utf8")));
    expect(ev.id).toBe(id);
    expect(ev.error).toEqual({ type: "FlaggedTurn", message: "answered about shipping, not the refund" });
    expect(ev.tags).toEqual({ flaggedBy: "ana" });
    expect(ev.route).toBe("refunds");
    expect(ev.version).toBe(VERSION);
    expect(ev.request).toMatchObject({ method: "POST", path: "/v1/chat", body, headers: { "content-type": "application/json" } });
    // What a right answer is travels with the flag, for its replays.
    expect(ev.expect).toEqual({ statusMin: 200, statusMax: 299, json: [{ path: "$.intent", equals: "refund" }, { path: "$.order", matches: "^42$" }, { path: "$.error", absent: true }] });
  });

  it("refuses a malformed --expect before sending anything, saying which and what is accepted", async () => {
    const r = await moss(["flag", "flag-shop", "--version", VERSION, "--path", "/v1/chat", "--reason", "r", "--expect", "total=42", "--config", env.configFile]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--expect "total=42": not a check; use status=200-299');
    const back = await moss(["flag", "flag-shop", "--version", VERSION, "--path", "/v1/chat", "--reason", "r", "--expect", "status=299-200", "--config", env.configFile]);
    expect(back.stderr).toContain("the range is backwards");
  });

  it("relays the curator's schema problems (400) and its auth refusal (401)", async () => {
    const bad = await moss(["flag", "flag-shop", "--version", "main", "--path", "/v1/chat", "--reason", "r", "--config", env.configFile]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("the curator refused the flag (400)");
    expect(bad.stderr).toMatch(/- version: git commit/);

    const noToken = join(env.dataDir, "no-token.json");
    writeFileSync(noToken, JSON.stringify({ dataDir: env.dataDir, curator: { http: { port: Number(new URL(env.ingestUrl).port) } } }));
    const unauth = await moss(["flag", "flag-shop", "--version", VERSION, "--path", "/v1/chat", "--reason", "r", "--config", noToken]);
    expect(unauth.code).toBe(1);
    expect(unauth.stderr).toContain("(401)");
    expect(unauth.stderr).toContain("Authorization: Bearer");
  });

  it("says how to fix it when the ingest is unreachable or arguments are missing", async () => {
    const dead = await freePort();
    const r = await moss(["flag", "flag-shop", "--version", VERSION, "--path", "/v1/chat", "--reason", "r", "--url", `http://127.0.0.1:${dead}`, "--config", env.configFile]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot reach the curator's HTTP ingest at http://127.0.0.1:${dead}`);
    expect(r.stderr).toContain("moss up");

    const missing = await moss(["flag", "flag-shop", "--path", "/v1/chat", "--config", env.configFile]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("moss flag needs --version, --reason");
  });

  it("is listed in the help, with reset", async () => {
    const r = await moss(["--help"]);
    expect(r.stdout).toContain("flag AGENT --version SHA --path PATH --reason TEXT");
    expect(r.stdout).toContain("reset BATCH|AGENT.FPKEY");
  });
});
