// Curation throughput: failures/s from publish to batched-and-acked, next to the raw JetStream publish rate of
// the same messages measured in the same run on the same nats-server. Target: ratio >= 0.7.
// A warm-up round (both paths, not counted: JIT and caches of a fresh curator are not its steady state), then
// five measured rounds, raw and curated alternating (each round a new agent, so a new storm); medians are reported.
//   npm run bench -- curation [N per round, default 50 000: long enough that one GC pause or timer is not the result]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBus } from "@moss/bus";
import { startStack } from "@moss/cli";
import { RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { startNats } from "../test/helpers/nats";
import { batchTotals, curatorConfig, publishAll, stormPayloads, waitDrained } from "../test/helpers/storm";

const N = Number(process.argv[2] ?? 50_000);
const ROUNDS = 5;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const nats = await startNats();
const dataDir = mkdtempSync(join(tmpdir(), "moss-bench-curation-"));
const bus = await createBus({ url: nats.url, name: "bench" });
try {
  await bus.provision();
  const { file, config } = curatorConfig(dataDir, nats.url, { batchSize: 50, batchWindowMs: 600_000 });
  const stack = await startStack({ config, configFile: file, services: ["curator"] });
  const raws: number[] = [];
  const curated: number[] = [];
  const ratios: number[] = [];
  try {
    for (let round = 0; round <= ROUNDS; round++) {
      const agent = `bench${round}`;
      const payloads = stormPayloads(agent, N);
      // Baseline: the same messages, acknowledged publishes with the same concurrency, into a stream nobody reads;
      // measured just before and just after the curated run (their mean), so drift on the machine evens out.
      const rawRun = async (tag: string) => {
        const raw = `BENCH_RAW_${round}${tag}`;
        const prefix = `bench.raw${round}${tag}.`;
        await bus.jsm.streams.add({ name: raw, subjects: [`${prefix}>`], storage: StorageType.File, retention: RetentionPolicy.Limits });
        const ms = await publishAll(bus, payloads.map((p) => ({ ...p, subject: p.subject.replace("moss.failure.", prefix) })));
        await bus.jsm.streams.delete(raw);
        return ms;
      };
      const rawBeforeMs = await rawRun("a");

      const t0 = performance.now();
      const pubMs = await publishAll(bus, payloads);
      const tailMs = await waitDrained(bus, N * (round + 1));
      const e2eMs = performance.now() - t0;
      const rawMs = (rawBeforeMs + (await rawRun("b"))) / 2;
      const { batches, totals } = await batchTotals(nats.url, agent);
      if (batches !== 3 * (round + 1) || totals.reduce((a, b) => a + b, 0) !== N) throw new Error(`round ${round}: wrong result (${batches} batches, ${totals.join("+")}): the figures would be meaningless`);
      if (round === 0) {
        console.error(`warm-up: raw ${(N / (rawMs / 1000)).toFixed(0)}/s, curated end to end ${(N / (e2eMs / 1000)).toFixed(0)}/s (not counted)`);
        continue;
      }
      raws.push(N / (rawMs / 1000));
      curated.push(N / (e2eMs / 1000));
      ratios.push(curated.at(-1)! / raws.at(-1)!);
      console.error(`round ${round}: raw ${raws.at(-1)!.toFixed(0)}/s, curated end to end ${curated.at(-1)!.toFixed(0)}/s (publishing ${pubMs.toFixed(0)} ms, then draining ${tailMs.toFixed(0)} ms; 3 batches, counts ${totals.join("+")}), ratio ${ratios.at(-1)!.toFixed(3)}`);
    }
  } finally {
    await stack.stop();
  }
  console.log(JSON.stringify({ bench: "curation", failures_per_s: Math.round(median(curated)), raw_publish_per_s: Math.round(median(raws)), ratio: Number(median(ratios).toFixed(3)) }));
} finally {
  await bus.close();
  await nats.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
