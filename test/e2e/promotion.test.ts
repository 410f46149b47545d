// Promotion behind the gateway, with real containers on the live network, the real gateway and the promoter's own
// procedure, under constant load: a good candidate goes live with no failed request; one whose /health stays healthy
// while its answers fail, and one that gets slow, are rolled back on the live numbers, in seconds, with no request
// failing for the swap or the rollback itself; one that never gets ready never takes traffic.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { LeaseHeldError, leaseStore } from "@moss/batch";
import { onApproval, onRegression, onRollbackRequest, promote, type PromoterDeps } from "@moss/promoter";
import type { RollbackDone } from "@moss/contracts";
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

  it("two promoter replicas given the same batch never swap twice: one holds the agent's lease, the other waits", async () => {
    const l = load(h.url, 2);
    let writes = 0;
    const w = await h.routesKv.watch({ key: AGENT, include: "updates" });
    void (async () => {
      for await (const e of w) if (e.operation === "PUT") writes++;
    })();
    const batch = await h.batchFor(VERSIONS.good2);
    const replica = (holder: string) => ({ ...h.deps({ bakeMs: 2_000 }), leases: leaseStore(h.leasesKv, holder), leaseTtlMs: 3_000 });
    const before = h.outcomes.length;
    const [a, b] = await Promise.allSettled([promote(batch, "tester", replica("replica-a")), promote(batch, "tester", replica("replica-b"))]);
    w.stop();
    const seen = await l.stop();
    const refused = [a, b].filter((r) => r.status === "rejected");
    expect(refused).toHaveLength(1);
    expect((refused[0] as PromiseRejectedResult).reason).toBeInstanceOf(LeaseHeldError);
    expect(h.outcomes.slice(before).map((o) => o.outcome)).toEqual(["promoted"]);
    expect(writes).toBe(1);
    expect(seen.failed).toEqual([]);
    expect(await versions()).toEqual([VERSIONS.good2]);
  });

  it("a promoter that died mid-bake is taken over once its lease ran out: the same batch finishes, with no second swap", async () => {
    const l = load(h.url, 2);
    // What a promoter leaves when it dies mid-bake: the batch promoting, the candidate started and routed to, its lease
    // renewed for the last time, the previous version still running.
    const batch = await h.batchFor(VERSIONS.good3, { state: "promoting", promotion: { approvedBy: "tester" } });
    const d = h.deps({ bakeMs: 2_000 });
    const served = await h.runtime.serveVersion({ agent: AGENT, image: h.image, version: VERSIONS.good3, env: d.liveEnv(AGENT, VERSIONS.good3), port: 8080 });
    await sleep(500);
    await d.routes.point(AGENT, { version: served.version, image: served.image, container: served.container, upstream: served.upstream }, "promote (the promoter that died)");
    await h.leasesKv.put(`promoter.${AGENT}`, JSON.stringify({ holder: "dead-replica", work: `batch ${batch.batchId}`, renewedAt: new Date().toISOString(), ttlMs: 1_500 }));
    const routeRevision = (await h.routesKv.get(AGENT))!.revision;
    const other = { ...d, leases: leaseStore(h.leasesKv, "replica-b"), leaseTtlMs: 3_000 };
    // The redelivery comes while the dead replica's lease still counts: it waits (the bus retries it later).
    await expect(promote(batch, "tester", other)).rejects.toBeInstanceOf(LeaseHeldError);
    await sleep(1_600);
    await promote(batch, "tester", other);
    const seen = await l.stop();
    expect(h.outcomes.at(-1)).toMatchObject({ batchId: batch.batchId, outcome: "promoted" });
    expect((await h.routesKv.get(AGENT))!.revision).toBe(routeRevision);
    expect(seen.failed).toEqual([]);
    expect(await versions()).toEqual([VERSIONS.good3]);
    expect((await h.runtime.servedVersions(AGENT)).filter((v) => v.running).map((v) => v.version)).toEqual([VERSIONS.good3]);
  });

  it("`moss rollback` puts the previous version back with zero failed requests, --to picks a kept one, and a stale or unknown request changes nothing", async () => {
    const done: RollbackDone[] = [];
    const d = { ...h.deps(), publish: async (_def: unknown, m: unknown) => void done.push(m as RollbackDone) } as ReturnType<typeof h.deps>;
    const ask = (over: { to?: string; at?: string } = {}) => onRollbackRequest({ id: `rb${done.length + 1}`, agent: AGENT, by: "alice", reason: "pager", at: new Date().toISOString(), ...over }, d);
    const l = load(h.url, 3);
    await sleep(300);
    const asked = new Date().toISOString();
    await ask();
    expect(done.at(-1)).toMatchObject({ outcome: "rolled-back", from: { version: VERSIONS.good3 }, to: { version: VERSIONS.good2 }, by: "alice", reason: "rolled back by alice: pager" });
    expect(await versions()).toEqual([VERSIONS.good2]);
    // A request made before that rollback is stale now: it does nothing (no loop back and forth).
    await ask({ at: asked });
    expect(done.at(-1)).toMatchObject({ outcome: "refused", reason: expect.stringMatching(/^stale: /) });
    expect(await versions()).toEqual([VERSIONS.good2]);
    await ask({ to: "0badc0de" });
    expect(done.at(-1)).toMatchObject({ outcome: "refused", reason: expect.stringMatching(/no kept version of shop matches 0badc0de \(kept: /) });
    // Forward again to a kept version, by a prefix of its commit.
    await ask({ to: VERSIONS.good3.slice(0, 10) });
    expect(done.at(-1)).toMatchObject({ outcome: "rolled-back", to: { version: VERSIONS.good3 } });
    const seen = await l.stop();
    expect(seen.failed).toEqual([]);
    expect(seen.byStatus.get(500)).toBeUndefined();
    expect(await versions()).toEqual([VERSIONS.good3]);
    expect((await h.runtime.servedVersions(AGENT)).filter((v) => v.running).map((v) => v.version)).toEqual([VERSIONS.good3]);
  });

  it("a recurrence of the fixed fingerprint on the candidate during its bake rolls back at once; after the bake, within the window, too; a late or repeated one does nothing", async () => {
    const l = load(h.url, 2);
    const done: RollbackDone[] = [];
    const deps = (): PromoterDeps => ({ ...h.deps({ bakeMs: 3_000 }), autoApprove: false, rollbackOnRecurrenceMs: 60_000, publish: async (def, m) => void (def.name === "rollback.done.v1" ? done.push(m as RollbackDone) : h.outcomes.push(m as never)) });
    // During the bake: the curator's signal arrives while the candidate serves.
    const baking = await h.batchFor(VERSIONS.good4);
    const signal = { agent: AGENT, fingerprint: "fp", batchId: baking.batchId, version: VERSIONS.good4, failureId: "f-again", at: new Date().toISOString() };
    const promoting = promote(baking, "tester", deps());
    await sleep(1_200);
    await onRegression({ ...signal, at: new Date().toISOString() }, deps());
    await promoting;
    expect(h.outcomes.at(-1)).toMatchObject({ batchId: baking.batchId, outcome: "rolled-back", live: { check: expect.stringContaining("recurrence: the batch's fingerprint failed again on the candidate (failure f-again)") } });
    expect(await versions()).toEqual([VERSIONS.good3]);

    // After the bake: promoted, then the fingerprint fails again on it within the window.
    const fixed = await h.batchFor(VERSIONS.good5);
    await promote(fixed, "tester", deps());
    expect(h.outcomes.at(-1)).toMatchObject({ batchId: fixed.batchId, outcome: "promoted" });
    const again = { agent: AGENT, fingerprint: "fp", batchId: fixed.batchId, version: VERSIONS.good5, failureId: "f-later", at: new Date().toISOString() };
    await onRegression(again, deps());
    expect(done.at(-1)).toMatchObject({ outcome: "rolled-back", by: "policy:rollbackOnRecurrence", from: { version: VERSIONS.good5 }, to: { version: VERSIONS.good3 } });
    expect(await versions()).toEqual([VERSIONS.good3]);
    // The same signal again, or another on the version no longer live: nothing.
    await onRegression(again, deps());
    await onRegression({ ...again, failureId: "f-later-2", at: new Date().toISOString() }, deps());
    expect(done).toHaveLength(1);
    expect(await versions()).toEqual([VERSIONS.good3]);
    const seen = await l.stop();
    expect(seen.failed).toEqual([]);
  });

  it("an operator's reject during the bake rolls the candidate back at the next probe, with the operator's reason, and no failed request", async () => {
    const l = load(h.url, 2);
    const deps = (): PromoterDeps => ({ ...h.deps({ bakeMs: 5_000 }), autoApprove: false });
    const before = await versions();
    const baking = await h.batchFor(VERSIONS.rejected);
    const promoting = promote(baking, "tester", deps());
    for (let i = 0; i < 100 && (await h.deps().batches.get(baking.batchId))?.state !== "promoting"; i++) await sleep(100);
    await sleep(800);
    const asked = Date.now();
    await onApproval({ batchId: baking.batchId, decision: "reject", by: "ana", reason: "not this approach" }, deps());
    await promoting;
    expect(Date.now() - asked).toBeLessThan(4_000);
    expect(h.outcomes.at(-1)).toMatchObject({ batchId: baking.batchId, outcome: "rolled-back", reason: expect.stringContaining("rejected by ana during the bake: not this approach") });
    const rec = await h.deps().batches.get(baking.batchId);
    expect(rec).toMatchObject({ state: "rolled-back", promotion: { rejected: { by: "ana", reason: "not this approach" } } });
    expect(await versions()).toEqual(before);
    // Once it has ended, another reject changes nothing.
    await onApproval({ batchId: baking.batchId, decision: "reject", by: "bo", reason: "again" }, deps());
    expect((await h.deps().batches.get(baking.batchId))?.state).toBe("rolled-back");
    const seen = await l.stop();
    expect(seen.failed).toEqual([]);
  });

  it("never promotes an unsigned commit or a rejected batch: nothing starts, the route stays", async () => {
    const revision = (await h.routesKv.get(AGENT))!.revision;
    const before = (await h.runtime.servedVersions(AGENT)).length;
    const unsigned = await h.batchFor("dd".repeat(20));
    const d = { ...h.deps(), verifySignature: async () => ({ ok: false, reason: "commit dddddddd has no signature" }) };
    const verdicts: unknown[] = [];
    await promote(unsigned, "tester", { ...d, publish: async (_def, m) => void verdicts.push(m) });
    expect(verdicts).toEqual([expect.objectContaining({ verdict: "rejected", reason: expect.stringContaining("not deployed: the commit cannot be promoted: commit dddddddd has no signature") })]);
    expect((await h.deps().batches.get(unsigned.batchId))?.state).toBe("rejected");
    const rejected = await h.batchFor("ee".repeat(20), { state: "rejected" });
    // An approval that arrives for a batch already rejected ends where the batch is: nothing is deployed.
    const outcomes = h.outcomes.length;
    await promote(rejected, "tester", h.deps());
    expect(h.outcomes.length).toBe(outcomes);
    expect((await h.deps().batches.get(rejected.batchId))?.state).toBe("rejected");
    expect((await h.routesKv.get(AGENT))!.revision).toBe(revision);
    expect((await h.runtime.servedVersions(AGENT)).length).toBe(before);
  });

  it("canary steps: a share of sessions at each step, then all; a bad candidate is rolled back at a step, having served only its share", async () => {
    const canary = () => ({ steps: [20, 50], stepMs: 1_500, stickyHeader: "x-session" });
    const routes: string[] = [];
    const w = await h.routesKv.watch({ key: AGENT, include: "updates" });
    void (async () => {
      for await (const e of w) if (e.operation === "PUT") routes.push(e.json<{ targets: Array<{ weight: number }> }>().targets.map((t) => t.weight).join("/"));
    })();
    // Eight sessions, each always sending its own header (the gateway routes each by its hash: see gateway.test.ts).
    const l = load(h.url, 8, (i) => ({ "x-session": `session-${i}` }));
    await promote(await h.batchFor(VERSIONS.canary), "tester", { ...h.deps({ bakeMs: 1_500 }), canary });
    const seen = await l.stop();
    expect(h.outcomes.at(-1)).toMatchObject({ outcome: "promoted", reason: expect.stringMatching(/^canary 20 % → 50 % → 100 %, then healthy/) });
    expect(routes).toEqual(["80/20", "50/50", "100"]);
    expect(seen.failed).toEqual([]);
    expect(seen.byVersion.get(VERSIONS.canary)).toBeGreaterThan(0);

    // A bad one: it starts failing 1.5 s after it started, during the canary.
    routes.length = 0;
    const l2 = load(h.url, 6, (i) => ({ "x-session": `s-${i}` }));
    await promote(await h.batchFor(VERSIONS.canaryBad), "tester", { ...h.deps({ bakeMs: 1_500 }), canary: () => ({ steps: [20, 50], stepMs: 2_000 }) });
    const bad = await l2.stop();
    w.stop();
    expect(h.outcomes.at(-1)).toMatchObject({ outcome: "rolled-back", live: { check: expect.stringMatching(/^at the (20|50) % canary step, \d failed probes in a row: live traffic: error rate/) } });
    expect(routes[0]).toBe("80/20");
    expect(routes.at(-1)).toBe("100");
    expect(routes).not.toContain("0/100");
    expect(bad.failed).toEqual([]);
    expect(bad.byVersion.get(VERSIONS.canaryBad)!).toBeLessThan(bad.byVersion.get(VERSIONS.canary)!);
    expect(await versions()).toEqual([VERSIONS.canary]);
  });

  it("last-known-good: only versions that baked well, newest first, promoter.keepVersions deep; their containers are never pruned", async () => {
    const dep = (await h.deployments.get(AGENT))!;
    const good = dep.lastGood.map((g) => g.version);
    expect(good[0]).toBe(VERSIONS.canary);
    expect(good).toHaveLength(3);
    for (const bad of [VERSIONS.failsLater, VERSIONS.slow, VERSIONS.unready, VERSIONS.canaryBad, VERSIONS.good4, VERSIONS.good5]) expect(good).not.toContain(bad);
    const containers = (await h.runtime.servedVersions(AGENT)).map((v) => v.container);
    for (const g of dep.lastGood) expect(containers).toContain(g.container);
  });
  it("a promoter process killed with SIGKILL mid-bake is taken over by another once its lease ran out: the batch is promoted, with no second swap and no failed request", async () => {
    const batch = await h.batchFor(VERSIONS.killed, { batchId: "killed-1" });
    const l = load(h.url, 2);
    const child = spawn(process.execPath, ["--import", "tsx", fileURLToPath(new URL("./promote-child.ts", import.meta.url))], {
      env: { ...process.env, MOSS_TEST_CHILD: JSON.stringify({ ...h.child, batchId: batch.batchId, bakeMs: 30_000, leaseTtlMs: 2_000 }) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let said = "";
    child.stdout.on("data", (d) => (said += String(d)));
    child.stderr.on("data", (d) => (said += String(d)));
    // Mid-bake: the route is on the candidate, and the child is watching it.
    for (let i = 0; (await versions())[0] !== VERSIONS.killed; i++) {
      if (i > 300 || child.exitCode !== null) throw new Error(`the child never swapped: ${said}`);
      await sleep(100);
    }
    await sleep(500);
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    const revision = (await h.routesKv.get(AGENT))!.revision;
    expect((await h.deps().batches.get(batch.batchId))?.state).toBe("promoting");
    // The message comes back to another replica: it waits for the dead one's lease, then finishes the batch.
    const other = { ...h.deps({ bakeMs: 1_500 }), leases: leaseStore(h.leasesKv, "replica-b"), leaseTtlMs: 2_000 };
    for (let tries = 0; ; tries++) {
      try {
        await promote((await other.batches.get(batch.batchId))!, "tester", other);
        break;
      } catch (err) {
        if (!(err instanceof LeaseHeldError) || tries > 20) throw err;
        await sleep(500);
      }
    }
    const seen = await l.stop();
    expect(h.outcomes.at(-1)).toMatchObject({ batchId: batch.batchId, outcome: "promoted" });
    expect((await h.routesKv.get(AGENT))!.revision).toBe(revision);
    expect(seen.failed).toEqual([]);
    expect(await versions()).toEqual([VERSIONS.killed]);
    expect((await h.deps().batches.get(batch.batchId))?.state).toBe("promoted");
  });

});

describe("rollback with agents.<name>.rollbackState: restore (real containers, a state volume)", { timeout: 120_000 }, () => {
  let h: PromotionHarness;
  beforeAll(async () => {
    h = await startPromotionHarness({ agent: "shopstate", stateDir: "/data" });
  }, 120_000);
  afterAll(async () => {
    await h?.close();
  });

  it("a candidate that rewrote the state in a new format and then failed: rolled back, its state put back as it was at the swap, with no failed request", async () => {
    const first = (await (await fetch(h.url, { method: "POST", body: "{}" })).json()) as { state: unknown };
    expect(first.state).toEqual({ format: 1 });
    const l = load(h.url, 2);
    await promote(await h.batchFor(VERSIONS.migrates), "tester", { ...h.deps(), rollbackState: () => "restore" });
    const seen = await l.stop();
    expect(h.outcomes.at(-1)).toMatchObject({ outcome: "rolled-back", reason: expect.stringMatching(/^rolled back to .*, state restored as it was at the swap: /) });
    expect(seen.failed).toEqual([]);
    const after = (await (await fetch(h.url, { method: "POST", body: "{}" })).json()) as { version: string; state: unknown };
    expect(after).toMatchObject({ version: VERSIONS.v1, state: { format: 1 } });
  });

  it("with keep (the default) the state stays as the candidate left it", async () => {
    const l = load(h.url, 2);
    await promote(await h.batchFor(VERSIONS.migrates, { batchId: "keep-1" }), "tester", h.deps());
    expect((await l.stop()).failed).toEqual([]);
    expect(h.outcomes.at(-1)).toMatchObject({ outcome: "rolled-back" });
    expect(h.outcomes.at(-1)!.reason).not.toContain("state restored");
    const after = (await (await fetch(h.url, { method: "POST", body: "{}" })).json()) as { version: string; state: unknown };
    expect(after).toMatchObject({ version: VERSIONS.v1, state: { format: 2 } });
  });
});
