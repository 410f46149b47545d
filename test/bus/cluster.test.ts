// Moss on a three-node NATS cluster (loopback), every stream and KV bucket replicated ×3: provisioned with three
// copies on three nodes, and a failure storm through a real curator survives killing one node — the failures
// stream's leader, mid-storm — with every failure counted once, in the batches of its three root causes.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBus, type Bus } from "@moss/bus";
import { startStack, type Stack } from "@moss/cli";
import { parseConfig } from "@moss/config";
import { Buckets, Consumers, StreamDefs, Streams } from "@moss/contracts";
import { writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNatsCluster, waitFor, type NatsCluster } from "../helpers/nats";
import { batchTotals, stormPayloads } from "../helpers/storm";

const N = 6_000;
const expected = [0, 1, 2].map((i) => Math.floor(N / 3) + (i < N % 3 ? 1 : 0)).sort((a, b) => a - b);

describe("a three-node NATS cluster, streams and buckets ×3 (real nats-servers)", () => {
  let cluster: NatsCluster;
  let bus: Bus;
  let stack: Stack | undefined;
  const dataDir = mkdtempSync(join(tmpdir(), "moss-cluster-"));

  beforeAll(async () => {
    cluster = await startNatsCluster(3);
    bus = await createBus({ url: cluster.url, name: "cluster-test", replicas: 3 });
    await bus.provision();
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
    await bus?.close();
    await cluster?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("every stream and bucket has three copies, on the three nodes", async () => {
    for (const s of [...StreamDefs.map((d) => d.name), `KV_${Buckets.batches}`, `KV_${Buckets.curator}`]) {
      const info = await bus.jsm.streams.info(s);
      expect([s, info.config.num_replicas]).toEqual([s, 3]);
      expect(new Set([info.cluster?.leader, ...(info.cluster?.replicas ?? []).map((r) => r.name)]), s).toEqual(new Set(["n1", "n2", "n3"]));
    }
  });

  it("a failure storm survives killing the failures stream's leader mid-storm: nothing lost, nothing counted twice", async () => {
    const input = { dataDir, nats: { url: cluster.url, auth: "none" as const, replicas: 3 as const }, curator: { http: { enabled: false }, batchSize: 50, batchWindowMs: 600_000, maxSamples: 10 } };
    const file = join(dataDir, "moss.json");
    writeFileSync(file, JSON.stringify(input));
    stack = await startStack({ config: parseConfig(input, { base: dataDir, source: file }), configFile: file, services: ["curator"] });
    const payloads = stormPayloads("cluster", N);
    // A publisher that, like an agent's SDK, publishes again what got no ack: its id makes the repeat a no-op.
    let next = 0;
    let retried = 0;
    const worker = async () => {
      while (next < payloads.length) {
        const p = payloads[next++]!;
        for (;;) {
          try {
            await bus.js.publish(p.subject, p.data, { msgID: p.id, timeout: 2_000 });
            break;
          } catch {
            retried++;
            await new Promise((r) => setTimeout(r, 200));
          }
        }
      }
    };
    const publishing = Promise.all(Array.from({ length: 32 }, worker));
    await waitFor(async () => ((await bus.jsm.consumers.info(Streams.FAILURES, Consumers.curator.durable).catch(() => undefined))?.ack_floor.stream_seq ?? 0) > N / 4 || undefined, 60_000, "the storm under way");
    const leader = (await bus.jsm.streams.info(Streams.FAILURES)).cluster!.leader!;
    await cluster.nodes[Number(leader.slice(1)) - 1]!.stop();
    await publishing;
    // Another node leads the stream now; the curator reconnected and drains it.
    await waitFor(
      async () => {
        const info = await bus.jsm.consumers.info(Streams.FAILURES, Consumers.curator.durable).catch(() => undefined);
        return info && info.num_pending === 0 && info.num_ack_pending === 0 ? info : undefined;
      },
      120_000,
      "the curator to drain the storm",
    );
    // Every stream the dead node led (a KV bucket's too) elects a new leader; until then its reads time out.
    const stream = await waitFor(() => bus.jsm.streams.info(Streams.FAILURES).catch(() => undefined), 60_000, "the failures stream after the node's loss");
    expect(stream.state.messages).toBe(N);
    expect(stream.cluster?.leader).not.toBe(leader);
    const { batches, totals } = await waitFor(() => batchTotals(cluster.url, "cluster", bus).catch(() => undefined), 60_000, "the batches readable after the node's loss");
    expect(batches).toBe(3);
    expect(totals).toEqual(expected);
    console.log(`killed ${leader} mid-storm; ${retried} publish(es) retried; ${N} failures in 3 batches, counted once`);
  }, 240_000);
});
