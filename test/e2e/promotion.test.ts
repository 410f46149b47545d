// Promotion behind the gateway, with real containers on the live network, the real gateway and the promoter's own
// procedure, under constant load: a good candidate goes live with no failed request; one whose /health stays healthy
// while its answers fail, and one that gets slow, are rolled back on the live numbers, in seconds, with no request
// failing for the swap or the rollback itself; one that never gets ready never takes traffic.
import { promote } from "@moss/promoter";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sleep } from "../helpers/env";
import { AGENT, load, startPromotionHarness, VERSIONS, type PromotionHarness } from "../helpers/promotion";

describe("promotion behind the gateway (real containers, real gateway, constant load)", { timeout: 120_000 }, () => {
  let h: PromotionHarness;
  beforeAll(async () => {
    h = await startPromotionHarness();
  }, 120_000);
  afterAll(async () => {
    await h?.close();
  });
  const versions = async () => (await h.live()).map((t) => t.version);

  it("promotes a good candidate with zero failed requests, and stops the previous version but keeps it", async () => {
    const l = load(h.url);
    await sleep(500);
    await promote(await h.batchFor(VERSIONS.good), "tester", h.deps());
    await sleep(300);
    const seen = await l.stop();
    expect(h.outcomes.at(-1)).toMatchObject({ outcome: "promoted", live: { candidate: { errorRate: 0 } } });
    expect(h.outcomes.at(-1)!.live!.candidate.requests).toBeGreaterThan(20);
    expect(seen.failed).toEqual([]);
    expect(seen.byStatus.get(200)).toBe(seen.answered);
    expect(seen.byVersion.get(VERSIONS.v1)).toBeGreaterThan(5);
    expect(seen.byVersion.get(VERSIONS.good)).toBeGreaterThan(20);
    expect(await versions()).toEqual([VERSIONS.good]);
    expect(await h.runtime.versionStatus(h.v1.container)).toMatchObject({ running: false });
    expect((await h.deployments.get(AGENT))?.previous?.container).toBe(h.v1.container);
  });

  it("rolls back a candidate whose /health stays healthy while its answers fail, on the live error rate, in seconds", async () => {
    const l = load(h.url);
    await sleep(300);
    const t0 = Date.now();
    await promote(await h.batchFor(VERSIONS.failsLater), "tester", h.deps());
    const seen = await l.stop();
    const o = h.outcomes.at(-1)!;
    expect(o.outcome).toBe("rolled-back");
    expect(o.live?.check).toMatch(/live traffic: error rate \d+\.\d % \(\d+ of \d+ requests\) is over the limit of 5\.0 %/);
    expect(o.reason).toMatch(/^rolled back to /);
    // Every request got an answer from an agent; the 500s are the bad version's own, and they stopped within 3 s.
    expect(seen.failed).toEqual([]);
    expect(seen.lastError).toBeGreaterThan(t0);
    expect(seen.lastError - seen.firstError).toBeLessThan(3_000);
    expect(await versions()).toEqual([VERSIONS.good]);
    expect((await h.runtime.servedVersions(AGENT)).find((v) => v.version === VERSIONS.failsLater)).toMatchObject({ running: false });
  });

  it("rolls back a candidate that got slow while its /health stayed fast, on p95 latency", async () => {
    const l = load(h.url, 4);
    await sleep(300);
    await promote(await h.batchFor(VERSIONS.slow), "tester", h.deps());
    const seen = await l.stop();
    const o = h.outcomes.at(-1)!;
    expect(o.outcome).toBe("rolled-back");
    expect(o.live?.check).toMatch(/p95 latency ≥ (1500|2000) ms is over \d+ ms/);
    // The slow version's requests in flight finished on it before it stopped: none failed.
    expect(seen.failed).toEqual([]);
    expect(await versions()).toEqual([VERSIONS.good]);
  });

  it("never sends traffic to a candidate that does not pass its readiness probe", async () => {
    const l = load(h.url, 2);
    await promote(await h.batchFor(VERSIONS.unready), "tester", h.deps({ startupMs: 1_500 }));
    const seen = await l.stop();
    expect(h.outcomes.at(-1)).toMatchObject({ outcome: "rolled-back", reason: expect.stringMatching(/never passed its readiness probe .* it took no traffic/) });
    expect(seen.byVersion.get(VERSIONS.unready)).toBeUndefined();
    expect(seen.failed).toEqual([]);
    expect(await versions()).toEqual([VERSIONS.good]);
  });
});
