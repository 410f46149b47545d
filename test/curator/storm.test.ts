// Failure storms through real curator processes on a real nats-server: exact counts, replicas, crashes.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBus, type Bus } from "@moss/bus";
import { startStack, type Stack } from "@moss/cli";
import { Buckets, Consumers, DEAD_LETTER_MAX_COPY, DeadLetter, Streams, failureSubject } from "@moss/contracts";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startNats, waitFor, type NatsServer } from "../helpers/nats";
import { batchTotals, curatorConfig, publishAll, stormEvent, stormPayloads, waitDrained } from "../helpers/storm";
import type { CuratorState } from "@moss/curator";

const N = 20_000;
const expected = [N / 3, N / 3, N / 3].map((x, i) => Math.floor(x) + (i < N % 3 ? 1 : 0)).sort((a, b) => a - b);

describe("curation under a failure storm (20 000 failures, 3 root causes)", () => {
  let nats: NatsServer;
  let bus: Bus;
  let dataDir: string;
  let stack: Stack | undefined;
  beforeEach(async () => {
    nats = await startNats();
    bus = await createBus({ url: nats.url, name: "storm-test" });
    await bus.provision();
    dataDir = mkdtempSync(join(tmpdir(), "moss-storm-"));
  });
  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
    await bus.close();
    await nats.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const start = (replicas = 1) => {
    const { file, config } = curatorConfig(dataDir, nats.url, { batchSize: 50, batchWindowMs: 600_000, maxSamples: 10 });
    return startStack({ config, configFile: file, services: ["curator"], replicas });
  };

  it("becomes exactly 3 batches whose counts add up to every failure", async () => {
    stack = await start();
    await publishAll(bus, stormPayloads("storm", N));
    await waitDrained(bus, N);
    const { batches, totals } = await batchTotals(nats.url, "storm");
    expect(batches).toBe(3);
    expect(totals).toEqual(expected);
  }, 120_000);

  it("two curator replicas on one consumer produce the same result", async () => {
    stack = await start(2);
    expect([...stack.children.keys()]).toContain("curator#2");
    await publishAll(bus, stormPayloads("storm", N));
    await waitDrained(bus, N);
    const { batches, totals } = await batchTotals(nats.url, "storm");
    expect(batches).toBe(3);
    expect(totals).toEqual(expected);
  }, 120_000);

  it("killing the curator mid-storm loses nothing and counts nothing twice", async () => {
    stack = await start();
    const publishing = publishAll(bus, stormPayloads("storm", N), 64);
    // Kill -9 once it is well into the storm, with work in flight.
    await waitFor(async () => (await bus.jsm.consumers.info(Streams.FAILURES, Consumers.curator.durable)).ack_floor.stream_seq > 3_000, 60_000, "curator progress");
    stack.children.get("curator")!.kill("SIGKILL");
    await publishing;
    await stack.stop();
    stack = await start();
    await waitDrained(bus, N);
    const { batches, totals } = await batchTotals(nats.url, "storm");
    expect(batches).toBe(3);
    expect(totals).toEqual(expected);
  }, 180_000);

  it("a storm of failures that do not group (4 000 fingerprints) never wedges the curator, and every failure is counted", async () => {
    stack = await start();
    const n = 4_000;
    // Each failure its own root cause, as when an error message echoes unmasked user input.
    const payloads = Array.from({ length: n }, (_, i) => {
      const ev = stormEvent("scatter", i, i % 3);
      ev.error = { ...ev.error, type: `UnknownCity${i}Error` };
      return { subject: failureSubject("scatter"), data: JSON.stringify(ev), id: ev.id };
    });
    await publishAll(bus, payloads);
    await waitDrained(bus, n, 60_000);
    const state = (await (await bus.kv(Buckets.curator)).get("agent.scatter"))!.json<CuratorState>();
    const records = await bus.kv(Buckets.batches);
    /** Failures a closed batch took: its count when it closed (outbox, queue or record), plus those attached since. */
    const closedCount = async (batchId: string) =>
      state.closing[batchId]?.count ?? state.queued.find((q) => q.batchId === batchId)?.count ?? (await records.get(batchId))!.json<{ count: number }>().count;
    // 100 fingerprints waiting at most (the default), plus the overflow batch that took the rest.
    expect(Object.keys(state.open).length + Object.keys(state.closing).length + state.queued.length).toBeLessThanOrEqual(101);
    const overflow = state.active["overflow"]!;
    expect((await closedCount(overflow.batchId)) + overflow.attached).toBeGreaterThan(3_000);
    let counted = Object.values(state.open).reduce((a, b) => a + b.count, 0);
    for (const a of Object.values(state.active)) counted += (await closedCount(a.batchId)) + a.attached;
    expect(counted).toBe(n);
  }, 120_000);

  it("an invalid event just under the NATS max payload is dead-lettered once, and 100 000 valid failures after it are all filed", async () => {
    stack = await start();
    // Invalid (no request, no error), and too big to copy whole into a dead-letter envelope.
    const big = JSON.stringify({ id: "f-huge", agent: "storm", pad: "x".repeat(1_040_000) });
    await bus.js.publish(failureSubject("storm"), big, { msgID: "f-huge" });
    const n = 100_000;
    await publishAll(bus, stormPayloads("storm", n));
    await waitDrained(bus, n + 1, 180_000);
    const { batches, totals } = await batchTotals(nats.url, "storm");
    expect(batches).toBe(3);
    expect(totals.reduce((a, b) => a + b, 0)).toBe(n);
    // One copy, by reference: where it is, how big it was, why, and a bounded prefix.
    const dlq = await bus.js.consumers.get(Streams.DLQ, { filter_subjects: [`moss.dlq.${Streams.FAILURES}.${Consumers.curator.durable}`] });
    const letters: DeadLetter[] = [];
    for await (const m of await dlq.fetch({ max_messages: 10, expires: 2_000 })) letters.push(DeadLetter.parse(m.json()));
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({ stream: Streams.FAILURES, streamSeq: 1, size: big.length, truncated: true, code: "MOSS_E_INVALID_MESSAGE" });
    expect(Buffer.from(letters[0]!.payloadBase64, "base64").length).toBe(DEAD_LETTER_MAX_COPY);
  }, 300_000);
});
