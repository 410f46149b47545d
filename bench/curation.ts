// Curation throughput: failures/s from publish to batched-and-acked, next to the raw JetStream publish rate of
// the same messages measured in the same run on the same nats-server. Target: ratio >= 0.7.
//   npm run bench -- curation [N]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBus } from "@moss/bus";
import { startStack } from "@moss/cli";
import { RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { startNats } from "../test/helpers/nats";
import { batchTotals, curatorConfig, publishAll, stormPayloads, waitDrained } from "../test/helpers/storm";

const N = Number(process.argv[2] ?? 20_000);
const nats = await startNats();
const dataDir = mkdtempSync(join(tmpdir(), "moss-bench-curation-"));
const bus = await createBus({ url: nats.url, name: "bench" });
try {
  await bus.provision();
  const payloads = stormPayloads("bench", N);

  // Baseline: the same messages, acknowledged publishes with the same concurrency, into a stream nobody reads.
  await bus.jsm.streams.add({ name: "BENCH_RAW", subjects: ["bench.raw.>"], storage: StorageType.File, retention: RetentionPolicy.Limits });
  const rawMs = await publishAll(bus, payloads.map((p) => ({ ...p, subject: p.subject.replace("moss.failure.", "bench.raw.") })));
  const raw = N / (rawMs / 1000);
  console.error(`raw publish: ${N} in ${rawMs.toFixed(0)} ms = ${raw.toFixed(0)}/s`);

  const { file, config } = curatorConfig(dataDir, nats.url, { batchSize: 50, batchWindowMs: 600_000 });
  const stack = await startStack({ config, configFile: file, services: ["curator"] });
  try {
    const t0 = performance.now();
    await publishAll(bus, payloads);
    await waitDrained(bus, N);
    const e2eMs = performance.now() - t0;
    const curated = N / (e2eMs / 1000);
    const { batches, totals } = await batchTotals(nats.url, "bench");
    console.error(`curated end to end: ${N} in ${e2eMs.toFixed(0)} ms = ${curated.toFixed(0)}/s; ${batches} batches, counts ${totals.join("+")}`);
    if (batches !== 3 || totals.reduce((a, b) => a + b, 0) !== N) throw new Error("wrong result: the figures below would be meaningless");
    console.log(JSON.stringify({ bench: "curation", failures_per_s: Math.round(curated), raw_publish_per_s: Math.round(raw), ratio: Number((curated / raw).toFixed(3)) }));
  } finally {
    await stack.stop();
  }
} finally {
  await bus.close();
  await nats.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
