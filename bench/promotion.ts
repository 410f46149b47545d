// `npm run bench -- promotion`: promotion behind the gateway, with real containers and the real gateway, under
// constant load (3 clients back to back). Prints, in one run: requests that failed during a swap to a good version
// and during the rollback of a bad one (its /health healthy, its answers 500 after 1.5 s), the latency the gateway
// adds at p50 and p99 (the same requests sent straight to the container, interleaved, as the baseline), and the time
// from the bad version's first error to its last answer (500 ms probe interval, 2 failed probes to roll back).
import { promote } from "@moss/promoter";
import { load, startPromotionHarness, VERSIONS } from "../test/helpers/promotion";

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};
const ms = (x: number) => Number(x.toFixed(3));

const h = await startPromotionHarness({ statsIntervalMs: 100 });
try {
  // 1. Latency: one request at a time, alternating gateway and direct, after a warm-up of each.
  const N = 2_000;
  const direct: number[] = [];
  const via: number[] = [];
  const once = async (url: string) => {
    const t0 = performance.now();
    const res = await fetch(url, { method: "POST", body: "{}" });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`${url} answered ${res.status}`);
    return performance.now() - t0;
  };
  const directUrl = `${h.v1.upstream}/v1/order`;
  for (let i = 0; i < 200; i++) await Promise.all([once(directUrl), once(h.url)]);
  for (let i = 0; i < N; i++) {
    if (i % 2) {
      direct.push(await once(directUrl));
      via.push(await once(h.url));
    } else {
      via.push(await once(h.url));
      direct.push(await once(directUrl));
    }
  }
  const lat = { direct_p50_ms: ms(quantile(direct, 0.5)), direct_p99_ms: ms(quantile(direct, 0.99)), gateway_p50_ms: ms(quantile(via, 0.5)), gateway_p99_ms: ms(quantile(via, 0.99)) };
  console.log(`latency over ${N} requests each: direct p50 ${lat.direct_p50_ms} ms p99 ${lat.direct_p99_ms} ms; through the gateway p50 ${lat.gateway_p50_ms} ms p99 ${lat.gateway_p99_ms} ms`);

  const bake = { bakeMs: 3_000, probeIntervalMs: 500, maxFailedProbes: 2 };
  // 2. A swap to a good version under load.
  let l = load(h.url, 3);
  await new Promise((r) => setTimeout(r, 500));
  await promote(await h.batchFor(VERSIONS.good), "bench", h.deps(bake));
  let seen = await l.stop();
  const swap = h.outcomes.at(-1)!;
  console.log(`swap: ${swap.outcome}; ${seen.answered} answered (${seen.byVersion.get(VERSIONS.v1) ?? 0} by v1, ${seen.byVersion.get(VERSIONS.good) ?? 0} by the new version), ${seen.failed.length} failed${seen.failed.length ? `: ${seen.failed.slice(0, 3).join("; ")}` : ""}`);
  const failedDuringSwap = seen.failed.length;

  // 3. A bad version under load: promoted, erroring, rolled back.
  l = load(h.url, 3);
  await new Promise((r) => setTimeout(r, 500));
  await promote(await h.batchFor(VERSIONS.failsLater), "bench", h.deps(bake));
  seen = await l.stop();
  const rb = h.outcomes.at(-1)!;
  const lastBad = seen.lastAt.get(VERSIONS.failsLater) ?? 0;
  const rollbackS = seen.firstError && lastBad ? (lastBad - seen.firstError) / 1000 : NaN;
  console.log(`rollback: ${rb.outcome} (${rb.live?.check ?? rb.reason}); ${seen.answered} answered, ${seen.byStatus.get(500) ?? 0} of them the bad version's 500s, ${seen.failed.length} failed; first error to last answer of the bad version ${rollbackS.toFixed(2)} s`);
  if (swap.outcome !== "promoted" || rb.outcome !== "rolled-back") throw new Error(`unexpected outcomes: swap ${swap.outcome}, bad version ${rb.outcome}`);

  console.log(
    JSON.stringify({
      bench: "promotion",
      failed_during_swap: failedDuringSwap,
      failed_during_rollback: seen.failed.length,
      gateway_p50_added_ms: ms(lat.gateway_p50_ms - lat.direct_p50_ms),
      gateway_p99_added_ms: ms(lat.gateway_p99_ms - lat.direct_p99_ms),
      rollback_s: Number(rollbackS.toFixed(3)),
      ...lat,
    }),
  );
} finally {
  await h.close();
}
