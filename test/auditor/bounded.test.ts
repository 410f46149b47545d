// The auditor under volume, as a real process on a real nats-server: memory stays flat as the log grows.
import { readFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { askQuery, createBus, type Bus } from "@moss/bus";
import { startStack, type Stack } from "@moss/cli";
import { parseConfig } from "@moss/config";
import { Consumers, Queries, Streams } from "@moss/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, startNats, waitFor, type NatsServer } from "../helpers/nats";
import { publishAll, stormPayloads } from "../helpers/storm";

/** Resident memory of a process, bytes (VmRSS). */
const rss = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;

describe("the auditor is bounded", () => {
  let nats: NatsServer;
  let bus: Bus;
  let dir: string;
  let stack: Stack;
  let port: number;
  beforeAll(async () => {
    nats = await startNats();
    bus = await createBus({ url: nats.url, name: "auditor-bounded-test" });
    await bus.provision();
    dir = mkdtempSync(join(tmpdir(), "moss-auditor-bounded-"));
    port = await freePort();
    const input = { dataDir: dir, nats: { url: nats.url }, auditor: { port } };
    const file = join(dir, "moss.config.json");
    writeFileSync(file, JSON.stringify(input));
    stack = await startStack({ config: parseConfig(input, { base: dir, source: file }), configFile: file, services: ["auditor"] });
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
    await bus?.close();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const recorded = async (n: number) =>
    waitFor(async () => (await bus.jsm.consumers.info(Streams.FAILURES, Consumers.auditorFailures.durable)).ack_floor.stream_seq >= n, 540_000, `${n} failures recorded`);

  it("its resident memory after 100 000 records is within 1.5x of its memory after 1 000", async () => {
    const pid = stack.children.get("auditor")!.pid!;
    const payloads = stormPayloads("volume", 100_000);
    await publishAll(bus, payloads.slice(0, 1_000));
    await recorded(1_000);
    await new Promise((r) => setTimeout(r, 1_000));
    const early = rss(pid);
    await publishAll(bus, payloads.slice(1_000));
    await recorded(100_000);
    await new Promise((r) => setTimeout(r, 1_000));
    const late = rss(pid);
    console.log(`auditor RSS: ${Math.round(early / 1e6)} MB after 1 000 records, ${Math.round(late / 1e6)} MB after 100 000 (x${(late / early).toFixed(2)})`);
    expect(late / early).toBeLessThanOrEqual(1.5);
    const health = (await (await fetch(`http://127.0.0.1:${port}/health`)).json()) as { records: number };
    // Every failure, and the auditor's own checkpoint announcements (one per checkpointEvery records), recorded too.
    expect(health.records).toBeGreaterThanOrEqual(100_000);
    expect(health.records).toBeLessThanOrEqual(100_000 + Math.ceil(100_000 / 1_000) + 1);
  }, 600_000);

  it("records a valid event nested 10 000 levels deep, once, as its schema reads it", async () => {
    // Written as text: JSON.stringify itself cannot serialize 10 000 levels.
    const deep = `${'{"a":'.repeat(10_000)}1${"}".repeat(10_000)}`;
    const base = JSON.stringify({ ...JSON.parse(stormPayloads("deep", 1)[0]!.data), id: "f-deep" });
    const text = `${base.slice(0, -1)},"extra":${deep}}`;
    const before = (await bus.jsm.consumers.info(Streams.FAILURES, Consumers.auditorFailures.durable)).ack_floor.stream_seq;
    await bus.js.publish("moss.failure.deep", text, { msgID: "f-deep" });
    await recorded(before + 1);
    const log = join(dir, "audit", "audit.jsonl");
    const last = JSON.parse(readFileSync(log, "utf8").trim().split("\n").at(-1)!) as { kind: string; failureId: string; note: string; data: Record<string, unknown> };
    expect(last).toMatchObject({ kind: "failure.v1", failureId: "f-deep", note: expect.stringContaining("nests deeper than 512 levels") });
    expect(last.data["extra"]).toBeUndefined();
    expect((await bus.jsm.streams.info(Streams.DLQ)).state.messages).toBe(0);
    // Asked over the bus, as the operator API asks it (the auditor serves its read model nowhere else).
    const answer = await askQuery(bus.nc, Queries.audit, { method: "GET", url: "/v1/audit/verify" }, { blob: async () => Buffer.from("") });
    const verify = JSON.parse(answer.body.toString("utf8")) as { ok: boolean };
    expect(verify.ok).toBe(true);
  }, 60_000);
});
