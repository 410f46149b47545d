import { spawn } from "node:child_process";
import { Buckets, Consumers, DeadLetter, Messages, StreamDefs, Streams, BatchRecord, type ConsumerDef } from "@moss/contracts";
import { Codes, MossError } from "@moss/errors";
import { createBus, kvGet, kvKeys, kvUpdate, provision, route, type Bus } from "@moss/bus";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNats, waitFor, type NatsServer } from "../helpers/nats";

const testConsumer: ConsumerDef = { durable: "bus-test", stream: Streams.PIPELINE, filterSubjects: [Messages.approval.subject], ackWaitMs: 1_000, maxDeliver: 3 };
const dlqReader: ConsumerDef = { durable: "dlq-reader", stream: Streams.DLQ, filterSubjects: ["moss.dlq.>"], ackWaitMs: 5_000, maxDeliver: 3 };
const silent = { debug() {}, info() {}, warn() {}, error() {}, child() { return silent; } };

describe("bus against a real nats-server", () => {
  let nats: NatsServer;
  let bus: Bus;
  beforeAll(async () => {
    nats = await startNats();
    bus = await createBus({ url: nats.url, name: "bus-test", logger: silent });
    await bus.provision();
  });
  afterAll(async () => {
    await bus?.close();
    await nats?.stop();
  });

  /** Each test starts from an empty stream and a new consumer, so earlier tests' messages don't leak in. */
  async function freshConsumer(def: ConsumerDef) {
    await bus.jsm.streams.purge(def.stream);
    await bus.jsm.consumers.delete(def.stream, def.durable).catch(() => undefined);
    await provision(bus.jsm, StreamDefs, [def]);
  }

  it("provisions idempotently: a second run changes nothing and every consumer exists", async () => {
    await bus.provision();
    for (const c of Object.values(Consumers)) {
      const info = await bus.jsm.consumers.info(c.stream, c.durable);
      expect(info.config.durable_name).toBe(c.durable);
    }
    // The streams, and every KV bucket's stream: provisioning as admin makes the buckets too.
    const streams = await bus.jsm.streams.names().next();
    expect(streams.sort()).toEqual([...Object.values(Streams), ...Object.values(Buckets).map((b) => `KV_${b}`)].sort());
  });

  it("deduplicates by Nats-Msg-Id", async () => {
    const msg = { batchId: "dedup1", decision: "approve" as const, by: "op" };
    const a = await bus.publish(Messages.approval, msg);
    const b = await bus.publish(Messages.approval, msg);
    expect(a.duplicate).toBe(false);
    expect(b.duplicate).toBe(true);
    expect(b.seq).toBe(a.seq);
  });

  it("refuses to publish a message that breaks its own schema", async () => {
    await expect(bus.publish(Messages.approval, { batchId: "x y", decision: "approve", by: "op" })).rejects.toThrow(/invalid approval.v1/);
  });

  it("redelivers a message whose consumer crashed before acking", async () => {
    await freshConsumer(testConsumer);
    await bus.publish(Messages.approval, { batchId: "crash1", decision: "approve", by: "op" });
    const child = spawn(process.execPath, ["--import", "tsx", "test/bus/fixtures/crash-consumer.ts"], { env: { ...process.env, NATS_URL: nats.url }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const code = await new Promise((r) => child.once("exit", r));
    expect(out).toContain("got crash1");
    expect(code).toBe(3);

    const seen: Array<{ batchId: string; delivery: number }> = [];
    const c = await bus.consume(testConsumer, [route(Messages.approval, async (m, ctx) => void seen.push({ batchId: m.batchId, delivery: ctx.deliveryCount }))]);
    await waitFor(() => seen.length > 0, 10_000, "redelivery");
    await c.stop();
    expect(seen[0]).toEqual({ batchId: "crash1", delivery: 2 });
  });

  it("naks a retryable failure with backoff and succeeds on redelivery", async () => {
    await freshConsumer(testConsumer);
    let calls = 0;
    const c = await bus.consume(
      testConsumer,
      [
        route(Messages.approval, async () => {
          calls++;
          if (calls === 1) throw new MossError(Codes.CAS_CONFLICT, "busy"); // a retryable code
        }),
      ],
      { baseBackoffMs: 100 },
    );
    await bus.publish(Messages.approval, { batchId: "retry1", decision: "approve", by: "op" });
    await waitFor(() => c.stats.acked === 1, 10_000, "ack after retry");
    await c.stop();
    expect(calls).toBe(2);
    expect(c.stats.naked).toBe(1);
  });

  it("terms a schema-invalid message, copies it to the dead-letter subject with the reason, and keeps consuming", async () => {
    await freshConsumer(testConsumer);
    await freshConsumer(dlqReader);
    const handled: string[] = [];
    const c = await bus.consume(testConsumer, [route(Messages.approval, async (m) => void handled.push(m.batchId))]);
    // A raw publish bypasses the publisher-side validation, like a buggy agent in another language would.
    await bus.js.publish(Messages.approval.subject, JSON.stringify({ batchId: "bad", decision: "maybe" }), { msgID: "raw-bad" });
    await bus.js.publish(Messages.approval.subject, "not json at all", { msgID: "raw-notjson" });
    await bus.publish(Messages.approval, { batchId: "good1", decision: "reject", by: "op" });
    await waitFor(() => handled.includes("good1") && c.stats.termed === 2, 10_000, "dead letters");

    const letters: DeadLetter[] = [];
    const r = await bus.consume(dlqReader, [route(Messages.deadLetter, async (m) => void letters.push(m))]);
    await waitFor(() => letters.length === 2, 10_000, "dead letters on moss.dlq");
    await r.stop();
    expect(letters[0]!.reason).toMatch(/approval.v1 on moss.approval.v1 does not match its schema: decision: .*; by: /);
    expect(letters[0]!.code).toBe("MOSS_E_INVALID_MESSAGE");
    expect(Buffer.from(letters[0]!.payloadBase64, "base64").toString()).toContain('"maybe"');
    expect(letters[1]!.reason).toMatch(/is not JSON/);

    // Termed messages are not redelivered: wait past ack_wait and check nothing came back.
    await new Promise((res) => setTimeout(res, 1_500));
    await c.stop();
    expect(c.stats.termed).toBe(2);
    expect(handled).toEqual(["good1"]);
  });

  it("acks a message whose work became moot (its batch ended meanwhile): no retry, no dead letter, said once", async () => {
    await freshConsumer(testConsumer);
    await freshConsumer(dlqReader);
    let calls = 0;
    const moot = Object.assign(new MossError(Codes.BATCH_ENDED, "batch moot1 ended (rejected) before it could become candidate"), { moot: true });
    const c = await bus.consume(testConsumer, [route(Messages.approval, async () => { calls++; throw moot; })], { baseBackoffMs: 50 });
    await bus.publish(Messages.approval, { batchId: "moot1", decision: "approve", by: "op" });
    await waitFor(() => c.stats.acked === 1, 10_000, "ack of the moot message");
    await new Promise((res) => setTimeout(res, 1_500));
    await c.stop();
    expect({ calls, ...c.stats }).toEqual({ calls: 1, acked: 1, naked: 0, termed: 0 });
    const info = await bus.jsm.streams.info(Streams.DLQ);
    expect(info.state.messages).toBe(0);
  });

  it("dead-letters a message that keeps failing after maxDeliver deliveries", async () => {
    await freshConsumer(testConsumer);
    const c = await bus.consume(testConsumer, [route(Messages.approval, async () => { throw new Error("flaky dependency"); })], { baseBackoffMs: 50 });
    await bus.publish(Messages.approval, { batchId: "poison1", decision: "approve", by: "op" });
    await waitFor(() => c.stats.termed === 1, 10_000, "give up");
    await c.stop();
    expect(c.stats.naked).toBe(2);
  });

  it("moves KV entries by compare-and-set only: concurrent updaters never lose an increment", async () => {
    const kv = await bus.kv(Buckets.batches);
    const now = new Date().toISOString();
    const rec = { batchId: "cas1", agent: "demo", fingerprint: "f", baseVersion: "abcdef1", state: "collecting" as const, failures: [], count: 0, attached: 0, fingerprintVersion: "fp1", openedAt: now, deadline: now, updatedAt: now, trace: {}, attempt: 0 };
    await Promise.all(
      Array.from({ length: 20 }, () => kvUpdate(kv, "cas1", BatchRecord, (cur) => (cur ? { ...cur, count: cur.count + 1 } : { ...rec, count: 1 }))),
    );
    expect((await kvGet(kv, "cas1", BatchRecord))!.value.count).toBe(20);
  });

  it("lists each key once while the bucket is being written (kv.keys() alone repeats updated keys)", async () => {
    const kv = await bus.kv("moss_test_listing");
    const keys = Array.from({ length: 300 }, (_, i) => `listed${String(i).padStart(3, "0")}`);
    await Promise.all(keys.map((k) => kv.put(k, "{}")));
    let writing = true;
    // Several writers, each rewriting the keys in turn, so updates land while a listing is under way.
    const writers = Array.from({ length: 4 }, async (_, w) => {
      for (let n = w; writing; n += 4) await kv.put(keys[n % keys.length]!, `{"n":${n}}`);
    });
    try {
      for (let round = 0; round < 20; round++) expect(await kvKeys(kv)).toEqual(keys);
    } finally {
      writing = false;
      await Promise.all(writers);
    }
  });
});
