/**
 * Promotion behind the gateway: the candidate starts next to the live version on the live network, takes traffic only
 * once its readiness probe passes (one route write), and is judged on what it answers — its readiness, its container,
 * its live error rate and p95 latency against the previous version's — while the previous version keeps running. A
 * rollback is one route write back to that version: no request fails for a swap or a rollback.
 */
import { addWindow, liveWindow, quantileMs, waitDrained, type LiveWindow, type StatsReading } from "@moss/batch";
import type { BatchRecord, PromotionJournal, RouteTarget } from "@moss/contracts";
import { Codes } from "@moss/errors";
import type { ServedVersion } from "@moss/runtime";
import type { Logger } from "@moss/telemetry";
import type { PromotionDeps } from "../deps";

type Decision = NonNullable<PromotionJournal["decision"]>;

/** The version a route sends all traffic to, as a route target. */
export function targetOf(v: ServedVersion): Omit<RouteTarget, "weight"> {
  return { version: v.version, image: v.image, container: v.container, upstream: v.upstream };
}

/**
 * Probes a version's readiness (its own address, `healthPath`) until it passes or `promoter.startupMs` ran out, at least
 * once: undefined when it passed, else what the last probe saw.
 */
export async function waitReady(deps: PromotionDeps, v: ServedVersion, healthPath: string): Promise<string | undefined> {
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const end = Date.now() + deps.bake.startupMs;
  for (;;) {
    const r = await deps.probeUrl(`${v.upstream}${healthPath}`);
    if (r.healthy) return undefined;
    if (Date.now() >= end) return r.detail;
    await sleep(Math.min(deps.bake.probeIntervalMs, 200));
  }
}

function summary(w: LiveWindow): { requests: number; errorRate: number; p95Ms?: number } {
  const p95 = quantileMs(w.latency, 0.95);
  return { requests: w.requests, errorRate: Number(w.errorRate.toFixed(4)), ...(p95 !== undefined ? { p95Ms: p95 } : {}) };
}

const pct = (r: number) => `${(r * 100).toFixed(1)} %`;

/**
 * What the live window says against the previous version's numbers, in words when a threshold is crossed. A window
 * in which fewer than `minRequests` requests ended says nothing (undefined) and is carried into the next: a slow
 * version's requests count when they end, not when they start.
 */
export function judgeWindow(w: LiveWindow, baseline: LiveWindow | undefined, a: PromotionDeps["analysis"]): { bad?: string } | undefined {
  if (w.completed < a.minRequests) return undefined;
  const baseRate = baseline && baseline.requests > 0 ? baseline.errorRate : 0;
  const of = `${w.errors} of ${w.completed} requests`;
  if (w.errorRate > a.maxErrorRate) return { bad: `error rate ${pct(w.errorRate)} (${of}) is over the limit of ${pct(a.maxErrorRate)}` };
  if (w.errorRate > a.minErrorRate && w.errorRate > baseRate * a.errorRateFactor)
    return { bad: `error rate ${pct(w.errorRate)} (${of}) is over ${a.errorRateFactor} × the previous version's ${pct(baseRate)}` };
  const p95 = quantileMs(w.latency, 0.95);
  const baseP95 = baseline ? quantileMs(baseline.latency, 0.95) : undefined;
  if (p95 !== undefined) {
    if (a.maxP95Ms !== undefined && p95 > a.maxP95Ms) return { bad: `p95 latency ≥ ${p95} ms is over the limit of ${a.maxP95Ms} ms` };
    if (baseP95 !== undefined) {
      const limit = baseP95 * a.p95Factor + a.p95SlackMs;
      if (p95 > limit) return { bad: `p95 latency ≥ ${p95} ms is over ${limit} ms (the previous version's ${baseP95} ms × ${a.p95Factor} + ${a.p95SlackMs} ms)` };
    }
  }
  return {};
}

/** The reason a bake ends when an operator rejected its batch. */
export function rejectedDuringBake(r: NonNullable<PromotionJournal["rejected"]>): string {
  return `rejected by ${r.by} during the bake${r.reason ? `: ${r.reason}` : ""}`;
}

/**
 * Starts the candidate behind the gateway, routes to it once ready, bakes it on live traffic, and returns the decision
 * (not yet acted on: the caller journals it first). A delivery after a crash finds the route on the candidate
 * already and bakes it again, without a second swap.
 */
export async function swapAndBakeViaGateway(record: BatchRecord, by: string, deps: PromotionDeps, log: Logger): Promise<Decision | { refused: string }> {
  const c = record.candidate!;
  const agent = record.agent;
  const serve = deps.serve(agent);
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const route = await deps.routes.get(agent);
  const routed = route?.targets.find((t) => t.version === c.commit && t.image === c.image);
  const onCandidate = routed !== undefined && route!.targets.length === 1;
  // The version the traffic goes back to on trouble: what the route named before the swap (or beside the candidate,
  // in a canary step an earlier delivery left).
  let previous: Omit<RouteTarget, "weight"> | undefined = route?.targets.find((t) => t.version !== c.commit);
  if (onCandidate) {
    // A delivery before a crash swapped already: the deployment record still names the version it replaced.
    const dep = await deps.deployments.get(agent);
    if (dep && dep.version !== c.commit) previous = { version: dep.version, image: dep.image, container: dep.container, upstream: "http://unknown" };
  }

  const outcome = (o: "promoted" | "rolled-back", reason: string, probes: { ok: number; failed: number }, live?: Decision["outcome"]["live"]) => ({
    batchId: record.batchId,
    agent,
    attempt: c.attempt,
    commit: c.commit,
    image: c.image,
    ...(previous ? { previousImage: previous.image } : {}),
    outcome: o,
    reason,
    probes,
    approvedBy: by,
    ...(live ? { live } : {}),
  });

  let served: ServedVersion;
  if (routed) {
    const s = await deps.runtime.versionStatus(routed.container);
    served = s?.running ? s : await deps.runtime.resumeVersion(routed.container);
  } else {
    // The last check before anything changes: the signatures again, and (in the runtime) that the image is the one built
    // from this commit. A candidate that fails it is rejected, and nothing is deployed.
    const sig = deps.verifySignature ? await deps.verifySignature(agent, c.commit, record.baseVersion) : { ok: true, reason: "" };
    if (!sig.ok) return { refused: `the commit cannot be promoted: ${sig.reason}` };
    // The state as the previous version leaves it, before the candidate can touch it: what a rollback puts back.
    const stateDir = deps.stateDir(agent);
    if (deps.rollbackState?.(agent) === "restore" && stateDir && previous && deps.stateBlobs && !record.promotion?.stateBefore) {
      const ref = await deps.stateBlobs.put(await deps.runtime.saveState(previous.container, stateDir));
      await deps.batches.change(record.batchId, (cur) => (cur.promotion ? { ...cur, promotion: { ...cur.promotion, stateBefore: ref } } : undefined));
      log.info("state saved before the swap, for a rollback", { stateDir, bytes: ref.size });
    }
    try {
      served = await deps.runtime.serveVersion({
        agent,
        image: c.image,
        ...(c.imageId ? { imageId: c.imageId } : {}),
        version: c.commit,
        env: deps.liveEnv(agent, c.commit),
        stateDir: deps.stateDir(agent),
        port: serve.port,
      });
    } catch (err) {
      if ((err as { code?: string }).code === Codes.IMAGE_MISMATCH.code) return { refused: (err as Error).message };
      throw err;
    }
    log.info("candidate started behind the gateway; no traffic until it is ready", { container: served.container, upstream: served.upstream });
    // Readiness: no traffic reaches it before its probe passes.
    const notReady = await waitReady(deps, served, serve.healthPath);
    if (notReady !== undefined) {
      await deps.runtime.stopVersion(served.container);
      return {
        outcome: outcome("rolled-back", `the new version never passed its readiness probe within ${deps.bake.startupMs} ms (last: ${notReady}); it took no traffic`, { ok: 0, failed: 1 }),
        container: served.container,
        ...(previous ? { previousContainer: previous.container, previousVersion: previous.version } : {}),
      };
    }
  }

  // The previous version's numbers so far: what the candidate is held against (in a canary step, the previous
  // version's own numbers over the same step, when it served enough of them).
  const before: StatsReading = await deps.liveStats(agent);
  const baseline = previous ? liveWindow(undefined, before, previous.version) : undefined;
  const total = liveWindow(before, before, c.commit);
  const probes = { ok: 0, failed: 0 };
  const a = deps.analysis;

  /** Probes the candidate every interval for `ms`: a reason when it failed `maxFailedProbes` in a row, else undefined. */
  const watch = async (ms: number): Promise<string | undefined> => {
    let pending = liveWindow(before, before, c.commit);
    let prevPending = previous ? liveWindow(before, before, previous.version) : undefined;
    let last = await deps.liveStats(agent);
    // Two streaks: the probes of the version itself (readiness, container), and the judged windows of its traffic. A
    // window too small to judge leaves the traffic streak as it is.
    let probeRow = 0;
    let trafficRow = 0;
    const end = Date.now() + ms;
    while (Date.now() < end) {
      await sleep(deps.bake.probeIntervalMs);
      deps.held?.check();
      const reasons: string[] = [];
      const [probe, status, reading, now] = await Promise.all([deps.probeUrl(`${served.upstream}${serve.healthPath}`), deps.runtime.versionStatus(served.container), deps.liveStats(agent), deps.batches.get(record.batchId)]);
      if (!status?.running) reasons.push(`its container ${served.container} is not running`);
      else if (!probe.healthy) reasons.push(`readiness: ${probe.detail}`);
      probeRow = reasons.length ? probeRow + 1 : 0;
      // An operator rejected the batch while it baked: no more watching, it goes back.
      const rejected = now?.promotion?.rejected;
      if (rejected) return rejectedDuringBake(rejected);
      // The very failure the batch fixed, on the candidate: no need for a second probe to say so.
      const recurred = now?.promotion?.recurrence;
      if (recurred) {
        reasons.push(`recurrence: the batch's fingerprint failed again on the candidate (failure ${recurred.failureId})`);
        probeRow = deps.bake.maxFailedProbes;
      }
      const w = liveWindow(last, reading, c.commit);
      addWindow(total, w);
      addWindow(pending, w);
      if (prevPending && previous) addWindow(prevPending, liveWindow(last, reading, previous.version));
      last = reading;
      const against = prevPending && prevPending.completed >= a.minRequests ? prevPending : baseline;
      const judged = judgeWindow(pending, against, a);
      if (judged) {
        if (judged.bad) reasons.push(`live traffic: ${judged.bad}`);
        trafficRow = judged.bad ? trafficRow + 1 : 0;
        pending = liveWindow(reading, reading, c.commit);
        if (previous) prevPending = liveWindow(reading, reading, previous.version);
      }
      if (reasons.length) {
        probes.failed++;
        log.warn("bake probe failed", { check: reasons.join("; "), probeRow, trafficRow });
        if (Math.max(probeRow, trafficRow) >= deps.bake.maxFailedProbes) return `${Math.max(probeRow, trafficRow)} failed probes in a row: ${reasons.join("; ")}`;
      } else probes.ok++;
    }
    return undefined;
  };

  // Canary steps (agents.<name>.canary): a share of new sessions, each step watched like the bake, before all of it.
  const canary = onCandidate || !previous ? undefined : deps.canary?.(agent);
  let check: string | undefined;
  let stepsDone = "";
  for (const weight of canary?.steps ?? []) {
    deps.held?.check();
    await deps.routes.split(
      agent,
      [
        { ...previous!, weight: 100 - weight },
        { ...targetOf(served), weight },
      ],
      `canary ${weight} % to ${c.commit.slice(0, 12)} (batch ${record.batchId}, attempt ${c.attempt})`,
      canary!.stickyHeader,
    );
    log.info("canary step", { weight, forMs: canary!.stepMs });
    check = await watch(canary!.stepMs);
    if (check) {
      check = `at the ${weight} % canary step, ${check}`;
      break;
    }
    stepsDone += `${weight} % → `;
  }
  if (!check) {
    if (!onCandidate) {
      deps.held?.check();
      await deps.routes.point(agent, targetOf(served), `promote ${c.commit.slice(0, 12)} (batch ${record.batchId}, attempt ${c.attempt})`);
      log.info("route switched to the candidate; the previous version stays up for the bake", { previous: previous?.version });
    }
    check = await watch(deps.bake.bakeMs);
  }
  const live = { candidate: summary(total), ...(baseline ? { previous: summary(baseline) } : {}), ...(check ? { check } : {}) };
  const numbers = `${live.candidate.requests} live requests, ${pct(live.candidate.errorRate)} errors, p95 ${live.candidate.p95Ms ?? "-"} ms` + (live.previous ? ` (previous version: ${pct(live.previous.errorRate)}, p95 ${live.previous.p95Ms ?? "-"} ms)` : "");
  const reason = check ? `${check}` : `${stepsDone ? `canary ${stepsDone}100 %, then ` : ""}healthy for the ${deps.bake.bakeMs} ms bake window (${probes.ok} probes; ${numbers})`;
  return {
    outcome: outcome(check ? "rolled-back" : "promoted", reason, probes, live),
    container: served.container,
    ...(previous ? { previousContainer: previous.container, previousVersion: previous.version } : {}),
  };
}

/** Waits until `version` has nothing in flight at any gateway, or the drain time passed. */
function drained(deps: PromotionDeps, agent: string, version: string, ms: number): Promise<boolean> {
  return waitDrained(() => deps.liveStats(agent), version, ms, deps.statsIntervalMs, deps.sleep);
}

/** Puts the route back on the previous version (started again if it was stopped), then stops the candidate, kept. */
export async function rollBackViaGateway(batch: BatchRecord, d: Decision, deps: PromotionDeps): Promise<string> {
  const agent = batch.agent;
  const prev = d.previousContainer;
  let restored = "no previous version to roll back to";
  if (prev) {
    const route = await deps.routes.get(agent);
    const v = await deps.runtime.versionStatus(prev);
    if (!v) restored = `the previous version's container ${prev} is gone: nothing to roll back to`;
    else {
      const up = v.running ? v : await deps.runtime.resumeVersion(prev);
      deps.held?.check();
      if (!(route?.targets.length === 1 && route.targets[0]!.container === up.container && route.targets[0]!.upstream === up.upstream))
        await deps.routes.point(agent, targetOf(up), `roll back from ${batch.candidate!.commit.slice(0, 12)} (batch ${batch.batchId})`);
      restored = `rolled back to ${up.image}`;
    }
  }
  // Requests already on the candidate finish before it stops.
  if (restored.startsWith("rolled back")) await drained(deps, agent, batch.candidate!.commit, deps.bake.drainMs);
  await deps.runtime.stopVersion(d.container);
  const stateDir = deps.stateDir(agent);
  const saved = (await deps.batches.get(batch.batchId))?.promotion?.stateBefore;
  if (deps.rollbackState?.(agent) === "restore" && stateDir && saved && deps.stateBlobs) {
    // The candidate is stopped: nothing writes the state any more but the previous version, which never saw the
    // candidate's state as its own. Its directory gets back what it held at the swap.
    await deps.runtime.restoreState(agent, stateDir, await deps.stateBlobs.get(saved));
    return `${restored}, state restored as it was at the swap`;
  }
  return restored;
}

/** After a promotion: the previous version drains and stops (kept for a rollback); versions beyond the kept ones go. */
export async function retirePrevious(batch: BatchRecord, d: Decision, deps: PromotionDeps): Promise<void> {
  if (d.previousContainer && d.previousContainer !== d.container) {
    if (d.previousVersion) await drained(deps, batch.agent, d.previousVersion, deps.bake.drainMs);
    await deps.runtime.stopVersion(d.previousContainer);
  }
  const dep = await deps.deployments.get(batch.agent);
  const spare = [d.container, ...(d.previousContainer ? [d.previousContainer] : []), ...(dep?.lastGood ?? []).map((g) => g.container)];
  const removed = await deps.runtime.pruneVersions(batch.agent, deps.bake.keepVersions, spare);
  if (removed.length) deps.log.info("removed old versions beyond promoter.keepVersions", { agent: batch.agent, removed });
}
