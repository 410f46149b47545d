import type { ProbeResult } from "@moss/runtime";
import { batchStore, breakerStore, candidateStore, deploymentStore, routeStore } from "@moss/batch";
import { kvGet, kvKeys, type KV } from "@moss/bus";
import { parseConfig, resolveAgent, type MossConfigInput } from "@moss/config";
import { BatchRecord, CandidateFailed, Deployment, Messages, RejectedCandidate, ReplayCompleted, type AttemptEvidence, type BatchRetry, type BatchVerdict, type BlobRef, type PromotionOutcome } from "@moss/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { onApproval, onCandidateFailed, onReplayCompleted, plateauOf, type LivePort, type PromoterDeps } from "@moss/promoter";
import { CANDIDATE, VERSION, batchRecord, seed, silent, startEnv, type Env } from "../helpers/env";

const AGENT = "chat-bot";
const OLD_IMAGE = "moss/chat-bot:old";
const NEW_IMAGE = `moss/chat-bot:${CANDIDATE.slice(0, 12)}`;
const NEW_IMAGE_ID = `sha256:${"b".repeat(64)}`;
const ref = (c: string): BlobRef => ({ sha256: c.repeat(64), size: 100 });
const FAILURES = [
  { id: "f1", event: ref("1") },
  { id: "f2", event: ref("2") },
];
const DIFF = ref("d");

/** A live agent that remembers what ran: deploy swaps in a new image and keeps the old one for rollback. */
function fakeLive(opts: { noPrevious?: boolean } = {}) {
  const calls = { deploy: [] as Array<Parameters<LivePort["deployLive"]>[0]>, rollback: [] as string[], status: 0 };
  const state = { live: { container: `moss-live-${AGENT}`, image: OLD_IMAGE }, prev: undefined as { container: string; image: string } | undefined };
  const port = {
    async deployLive(spec: Parameters<LivePort["deployLive"]>[0]) {
      calls.deploy.push(spec);
      const previous = opts.noPrevious ? undefined : { container: `moss-prev-${AGENT}`, image: state.live.image };
      state.prev = previous;
      state.live = { container: `moss-live-${AGENT}`, image: spec.image };
      return previous ? { container: state.live.container, previous } : { container: state.live.container };
    },
    async rollbackLive(agent: string) {
      calls.rollback.push(agent);
      if (!state.prev) throw Object.assign(new Error("no previous version"), { code: "MOSS_E_NO_PREVIOUS_VERSION", retryable: false });
      state.live = { container: `moss-live-${AGENT}`, image: state.prev.image };
      state.prev = undefined;
      return state.live;
    },
    async liveStatus() {
      calls.status++;
      return { ...state.live, running: true };
    },
    // In place (these tests' agent): the versions behind the gateway are never asked for.
    ...Object.fromEntries(
      (["serveVersion", "resumeVersion", "stopVersion", "versionStatus", "servedVersions", "pruneVersions"] as const).map((m) => [
        m,
        async () => {
          throw new Error(`${m} called for an agent served in place`);
        },
      ]),
    ),
  } as unknown as LivePort;
  return { port, calls, state };
}

/** Health answers in order; the last one repeats. */
function scripted(...answers: boolean[]) {
  let i = 0;
  const probe = async () => {
    const healthy = answers[Math.min(i++, answers.length - 1)]!;
    return { healthy, detail: healthy ? "GET /health answered 200" : "GET /health answered 503" };
  };
  return { probe, count: () => i };
}

describe("promoter with a real KV", () => {
  let env: Env;
  beforeAll(async () => {
    env = await startEnv("promoter-test");
  });
  afterAll(async () => {
    await env?.stop();
  });

  let n = 0;
  const keyOf = new Map<string, string>();
  async function harness(
    o: {
      autoApprove?: boolean;
      maxAttempts?: number;
      state?: BatchRecord["state"];
      probe?: () => Promise<ProbeResult>;
      noPrevious?: boolean;
      record?: Partial<BatchRecord>;
      verifySignature?: PromoterDeps["verifySignature"];
      /** The settings the promoter resolves agents with (default: maxAttempts, and a breaker threshold no test reaches). */
      config?: MossConfigInput;
    } = {},
  ) {
    const batches = await env.bucket("batches");
    const deployments = await env.bucket("deployments");
    const batchId = `b${++n}`;
    // Every message of a batch names its fingerprint key: the record's, else one of the batch's own.
    keyOf.set(batchId, o.record?.fingerprintKey ?? `fpk-${batchId}`);
    // What the rewriter built for the batch's current attempt: the only thing a replay of it can promote.
    const built = { attempt: o.record?.attempt ?? 1, commit: CANDIDATE, image: NEW_IMAGE, imageId: NEW_IMAGE_ID, diff: DIFF };
    await seed(batches, batchRecord({ batchId, failures: FAILURES, state: o.state ?? "replaying", attempt: 1, built, ...o.record }));
    const current: Deployment = { agent: AGENT, image: OLD_IMAGE, version: VERSION, container: `moss-live-${AGENT}`, updatedAt: "2025-01-01T00:00:00.000Z", lastGood: [] };
    await deployments.put(AGENT, JSON.stringify(current));
    const live = fakeLive({ noPrevious: o.noPrevious });
    const out = { retries: [] as BatchRetry[], verdicts: [] as BatchVerdict[], outcomes: [] as PromotionOutcome[] };
    /** What each kind of message goes to; a test replaces one to make its publish fail. */
    const hooks = {
      publishRetry: async (m: BatchRetry) => void out.retries.push(m),
      publishVerdict: async (m: BatchVerdict) => void out.verdicts.push(m),
      publishOutcome: async (m: PromotionOutcome) => void out.outcomes.push(m),
    };
    const candidates = await env.bucket("candidates");
    const config = parseConfig(o.config ?? { promoter: { maxAttempts: o.maxAttempts ?? 3 }, curator: { breakerThreshold: 100 } });
    const deps: PromoterDeps = {
      batches: batchStore(batches),
      deployments: deploymentStore(deployments),
      // Fresh and empty, and a threshold no test reaches (unless a test's config sets one): the breaker never trips.
      breakers: breakerStore(await env.bucket("breakers")),
      agent: (name) => resolveAgent(config, name),
      candidates: candidateStore(candidates),
      ...(o.verifySignature ? { verifySignature: o.verifySignature } : {}),
      runtime: live.port,
      probe: o.probe ?? (async () => ({ healthy: true, detail: "GET /health answered 200" })),
      liveEnv: (agent, version) => ({ PORT: "8080", AGENT_NAME: agent, MOSS_AGENT_VERSION: version }),
      stateDir: (agent) => `/var/lib/moss/${agent}`,
      bake: { bakeMs: 200, probeIntervalMs: 20, maxFailedProbes: 2, startupMs: 200, drainMs: 0, keepVersions: 3 },
      serve: () => ({ mode: "in-place", port: 8080, healthPath: "/health" }),
      routes: routeStore(await env.bucket("routes")),
      liveStats: async () => new Map(),
      statsIntervalMs: 250,
      probeUrl: async () => ({ healthy: false, detail: "no version behind a gateway here" }),
      analysis: config.promoter.analysis,
      autoApprove: o.autoApprove ?? true,
      // Parsed as the bus would, then handed to the hook of its kind.
      publish: async (def, m) => {
        const parsed = def.schema.parse(m);
        const kind = def.name;
        if (kind === Messages.batchRetry.name) await hooks.publishRetry(parsed as BatchRetry);
        else if (kind === Messages.batchVerdict.name) await hooks.publishVerdict(parsed as BatchVerdict);
        else if (kind === Messages.promotion.name) await hooks.publishOutcome(parsed as PromotionOutcome);
        else throw new Error(`the promoter published ${def.name}`);
      },
      log: silent,
    };
    const batch = async () => (await kvGet(batches, batchId, BatchRecord))!.value;
    const deployment = async () => (await kvGet(deployments, AGENT, Deployment))!.value;
    /** The rejected candidates kept in `moss_candidates`, by key. */
    const kept = async () => {
      const all: Record<string, RejectedCandidate> = {};
      for (const k of await kvKeys(candidates)) {
        const e = await candidates.get(k);
        if (e?.operation === "PUT") all[k] = RejectedCandidate.parse(e.json());
      }
      return all;
    };
    return { batchId, deps, hooks, live, out, batch, deployment, kept, batches: batches as KV };
  }

  /** What every message of one of this test's attempts carries. */
  const attemptOf = (batchId: string) => ({
    batchId,
    agent: AGENT,
    fingerprint: "fp1|TypeError|/app/src/chat.ts#handleChat|/v1/chat",
    fingerprintKey: keyOf.get(batchId) ?? "fpk",
    baseVersion: VERSION,
    failures: FAILURES,
    count: 5,
  });

  const replayDone = (batchId: string, o: { passed?: boolean; attempt?: number; previous?: ReplayCompleted["previous"] } = {}) => {
    const passed = o.passed ?? true;
    return ReplayCompleted.parse({
      ...attemptOf(batchId),
      attempt: o.attempt ?? 1,
      previous: o.previous ?? [],
      commit: CANDIDATE,
      image: NEW_IMAGE,
      diff: DIFF,
      passed,
      results: [
        { failureId: "f1", passed: true, reason: "answered 200: ok", status: 200, durationMs: 12 },
        passed
          ? { failureId: "f2", passed: true, reason: "answered 200: ok", status: 200, durationMs: 15 }
          : { failureId: "f2", passed: false, reason: "answered 500 (expected 200-499): boom", status: 500, durationMs: 15 },
      ],
    });
  };

  const candidateFailed = (batchId: string, over: Partial<CandidateFailed> = {}) =>
    CandidateFailed.parse({
      ...attemptOf(batchId),
      attempt: 1,
      verdict: "guardrail",
      reason: "the change breaks the guardrails: .ci/run: forbidden path (matches .ci/**)",
      ...over,
    });

  it("replay passed + autoApprove: deploys once, bakes, records promoted and the deployment with its previous version", async () => {
    const { probe, count } = scripted(true);
    const h = await harness({ probe });
    const t0 = Date.now();
    await onReplayCompleted(replayDone(h.batchId), h.deps);

    expect(h.live.calls.deploy).toEqual([
      { agent: AGENT, image: NEW_IMAGE, imageId: NEW_IMAGE_ID, version: CANDIDATE, env: { PORT: "8080", AGENT_NAME: AGENT, MOSS_AGENT_VERSION: CANDIDATE }, stateDir: `/var/lib/moss/${AGENT}` },
    ]);
    expect(h.live.calls.rollback).toEqual([]);
    // It watched the new version for the whole bake window before calling it promoted.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(200);
    expect(count()).toBeGreaterThanOrEqual(3);

    expect(h.out.outcomes).toHaveLength(1);
    expect(h.out.outcomes[0]).toMatchObject({ batchId: h.batchId, outcome: "promoted", commit: CANDIDATE, image: NEW_IMAGE, previousImage: OLD_IMAGE, approvedBy: "policy:autoApprove", probes: { failed: 0 } });
    expect(h.out.outcomes[0]!.probes.ok).toBe(count());
    expect(h.out.verdicts).toEqual([]);
    expect(h.out.retries).toEqual([]);

    const b = await h.batch();
    expect(b.state).toBe("promoted");
    expect(b.candidate).toEqual({ attempt: 1, commit: CANDIDATE, image: NEW_IMAGE, imageId: NEW_IMAGE_ID, diff: DIFF });
    const d = await h.deployment();
    expect(d).toMatchObject({ agent: AGENT, image: NEW_IMAGE, version: CANDIDATE, batchId: h.batchId, previous: { image: OLD_IMAGE, version: VERSION, container: `moss-prev-${AGENT}` } });
  });

  it("consent by risk: the first approval rule that holds promotes and is named; none holding waits, saying why each did not", async () => {
    const diff = ["diff --git a/src/tools/calc.ts b/src/tools/calc.ts", "--- a/src/tools/calc.ts", "+++ b/src/tools/calc.ts", "@@ -1,2 +1,2 @@", "-a", "+b", " c"].join("\n");
    const rules = [
      { name: "tiny-core", maxLines: 1, paths: ["src/core/**"] },
      { name: "small-tools", maxFiles: 2, maxLines: 10, paths: ["src/tools/**"], denyPaths: ["src/core/**"], minFailuresFixed: 2 },
    ];
    const h = await harness({ autoApprove: false });
    await onReplayCompleted(replayDone(h.batchId), { ...h.deps, approvalRules: rules, diffText: async () => diff });
    expect(h.out.outcomes).toEqual([expect.objectContaining({ outcome: "promoted", approvedBy: "policy:small-tools" })]);
    expect(h.live.calls.deploy.map((s) => s.image)).toEqual([NEW_IMAGE]);

    const w = await harness({ autoApprove: false });
    await onReplayCompleted(replayDone(w.batchId), { ...w.deps, approvalRules: [rules[0]!, { ...rules[1]!, minFailuresFixed: 3 }], diffText: async () => diff });
    expect(w.live.calls.deploy).toEqual([]);
    expect(w.out.verdicts).toEqual([expect.objectContaining({ verdict: "awaiting-approval", reason: expect.stringContaining("no approval rule holds (tiny-core: 2 lines changed, over 1; small-tools: 2 failure(s) fixed, fewer than 3)") })]);
    expect((await w.batch()).state).toBe("awaiting-approval");
  });

  it("without autoApprove: publishes awaiting-approval and deploys nothing until approved", async () => {
    const h = await harness({ autoApprove: false });
    await onReplayCompleted(replayDone(h.batchId), h.deps);

    expect(h.live.calls.deploy).toEqual([]);
    expect(h.out.outcomes).toEqual([]);
    expect(h.out.verdicts).toEqual([expect.objectContaining({ batchId: h.batchId, verdict: "awaiting-approval", commit: CANDIDATE, image: NEW_IMAGE, attempt: 1 })]);
    expect(h.out.verdicts[0]!.reason).toContain(`moss approve ${h.batchId}`);
    expect((await h.batch()).state).toBe("awaiting-approval");
    expect((await h.deployment()).image).toBe(OLD_IMAGE);

    await onApproval({ batchId: h.batchId, decision: "approve", by: "alice", reason: "" }, h.deps);
    expect(h.live.calls.deploy.map((s) => s.image)).toEqual([NEW_IMAGE]);
    expect(h.out.outcomes).toEqual([expect.objectContaining({ outcome: "promoted", approvedBy: "alice", previousImage: OLD_IMAGE })]);
    expect((await h.batch()).state).toBe("promoted");
    expect((await h.deployment()).image).toBe(NEW_IMAGE);

    // Approving again (or the approval redelivered) changes nothing.
    await onApproval({ batchId: h.batchId, decision: "approve", by: "alice", reason: "" }, h.deps);
    expect(h.live.calls.deploy).toHaveLength(1);
    expect(h.out.outcomes).toHaveLength(1);
  });

  it("reject: the batch is rejected, and a later approve does not deploy", async () => {
    const h = await harness({ autoApprove: false });
    await onReplayCompleted(replayDone(h.batchId), h.deps);
    await onApproval({ batchId: h.batchId, decision: "reject", by: "bob", reason: "touches billing" }, h.deps);

    const b = await h.batch();
    expect(b.state).toBe("rejected");
    expect(b.reason).toContain("bob");
    expect(h.out.verdicts.map((v) => v.verdict)).toEqual(["awaiting-approval", "rejected"]);
    expect(h.out.verdicts[1]!.reason).toBe("rejected by bob: touches billing");

    await onApproval({ batchId: h.batchId, decision: "approve", by: "alice", reason: "" }, h.deps);
    expect(h.live.calls.deploy).toEqual([]);
    expect(h.out.outcomes).toEqual([]);
    expect((await h.batch()).state).toBe("rejected");
    // A redelivered reject changes nothing and announces the very same verdict (same msgId: JetStream drops it).
    await onApproval({ batchId: h.batchId, decision: "reject", by: "bob", reason: "touches billing" }, h.deps);
    expect(h.out.verdicts).toHaveLength(3);
    expect(h.out.verdicts[2]).toEqual(h.out.verdicts[1]);
    expect((await h.batch()).state).toBe("rejected");
  });

  it("an approval for a batch that does not exist is terminal", async () => {
    const h = await harness({ autoApprove: false });
    await expect(onApproval({ batchId: "nope", decision: "approve", by: "alice", reason: "" }, h.deps)).rejects.toMatchObject({ retryable: false, code: "MOSS_E_BATCH_NOT_FOUND" });
  });

  it("failed probes during the bake roll back to the previous version", async () => {
    // Healthy at startup, then sick.
    const { probe } = scripted(true, true, false);
    const h = await harness({ probe });
    // Sleeps that yield but take no time: the verdict cannot depend on how busy the machine is.
    const slept: number[] = [];
    h.deps.sleep = (ms) => new Promise<void>((r) => (slept.push(ms), setImmediate(r)));
    await onReplayCompleted(replayDone(h.batchId), h.deps);
    expect(slept).toEqual([20, 20, 20]); // probeIntervalMs between the bake's probes

    expect(h.live.calls.deploy).toHaveLength(1);
    expect(h.live.calls.rollback).toEqual([AGENT]);
    expect(h.live.state.live.image).toBe(OLD_IMAGE);
    expect(h.out.outcomes).toHaveLength(1);
    const o = h.out.outcomes[0]!;
    expect(o).toMatchObject({ outcome: "rolled-back", probes: { ok: 2, failed: 2 }, previousImage: OLD_IMAGE });
    expect(o.reason).toContain(`rolled back to ${OLD_IMAGE}`);
    expect(o.reason).toContain("failed health probes");
    expect(o.reason).toContain("(last: GET /health answered 503)");
    expect((await h.batch()).state).toBe("rolled-back");
    // The deployment record still names the version that is live again.
    expect(await h.deployment()).toMatchObject({ image: OLD_IMAGE, version: VERSION });
    expect((await h.deployment()).batchId).toBeUndefined();
  });

  it("a new version that never becomes healthy within startupMs is rolled back", async () => {
    const { probe, count } = scripted(false);
    const h = await harness({ probe });
    const t0 = Date.now();
    await onReplayCompleted(replayDone(h.batchId), h.deps);
    const took = Date.now() - t0;

    expect(took).toBeGreaterThanOrEqual(200);
    expect(took).toBeLessThan(3_000);
    expect(count()).toBeGreaterThan(1); // it kept probing during startup, not just once
    expect(h.live.calls.rollback).toEqual([AGENT]);
    expect(h.out.outcomes).toEqual([expect.objectContaining({ outcome: "rolled-back" })]);
    expect(h.out.outcomes[0]!.reason).toContain("never answered its health probe within 200 ms");
    expect((await h.batch()).state).toBe("rolled-back");
    expect((await h.deployment()).image).toBe(OLD_IMAGE);
  });

  it("a sick first version (nothing to roll back to) still ends rolled-back with that said", async () => {
    const h = await harness({ probe: scripted(false).probe, noPrevious: true });
    await onReplayCompleted(replayDone(h.batchId), h.deps);
    expect(h.live.calls.rollback).toEqual([AGENT]);
    expect(h.out.outcomes).toHaveLength(1);
    expect(h.out.outcomes[0]!.outcome).toBe("rolled-back");
    expect(h.out.outcomes[0]!.reason).toContain("no previous version to roll back to");
    expect((await h.batch()).state).toBe("rolled-back");
  });

  it("replay failed with attempts left: back to the rewriter with attempt+1 and the failed results as evidence", async () => {
    const h = await harness({ maxAttempts: 3 });
    await onReplayCompleted(replayDone(h.batchId, { passed: false }), h.deps);

    expect(h.live.calls.deploy).toEqual([]);
    expect(h.out.verdicts).toEqual([]);
    expect(h.out.retries).toHaveLength(1);
    const r = h.out.retries[0]!;
    expect(r).toMatchObject({ batchId: h.batchId, agent: AGENT, attempt: 2, failures: FAILURES, count: 5, baseVersion: VERSION });
    expect(r.previous).toHaveLength(1);
    expect(r.previous[0]).toMatchObject({ attempt: 1, commit: CANDIDATE, diff: DIFF, verdict: "replay-failed" });
    expect(r.previous[0]!.reason).toContain("1 of 2 failure(s) still fail");
    expect(r.previous[0]!.reason).toContain("answered 500");
    expect(r.previous[0]!.results.find((x) => x.failureId === "f2")).toMatchObject({ passed: false, status: 500 });
    const b = await h.batch();
    expect(b.state).toBe("rewriting");
  });

  it("a replay that could not run (error verdict) moves the batch on with verdict replay-error and the cause; a flaky one with replay-flaky", async () => {
    const h = await harness({ maxAttempts: 3 });
    const msg = replayDone(h.batchId, { passed: false });
    const results = msg.results.map((r) => ({ ...r, passed: false, verdict: "error" as const, reason: "could not be replayed: image moss/x:1 does not exist in the Docker engine" }));
    await onReplayCompleted({ ...msg, results }, h.deps);
    expect(h.out.retries[0]!.previous[0]).toMatchObject({ verdict: "replay-error", reason: "the replay could not run for 2 of 2 failure(s): could not be replayed: image moss/x:1 does not exist in the Docker engine" });
    expect((await h.batch()).state).toBe("rewriting");

    const h2 = await harness({ maxAttempts: 3 });
    const m2 = replayDone(h2.batchId, { passed: false });
    const flaky = m2.results.map((r) => (r.passed ? r : { ...r, verdict: "flaky" as const, trials: { passed: 1, of: 3 }, reason: "flaky: 1 of 3 trials passed; a failing one: answered 500" }));
    await onReplayCompleted({ ...m2, results: flaky }, h2.deps);
    expect(h2.out.retries[0]!.previous[0]).toMatchObject({ verdict: "replay-flaky", reason: expect.stringContaining("1 of 2 failure(s) are flaky in replay (a fix must pass every trial)") });
  });

  it("replay failed at maxAttempts: exhausted, no further retry", async () => {
    const h = await harness({ maxAttempts: 2, record: { attempt: 2 } });
    const prev = [{ attempt: 1, verdict: "no-change", reason: "the coding agent exited 0 but changed no file", results: [] }];
    await onReplayCompleted(replayDone(h.batchId, { passed: false, attempt: 2, previous: prev }), h.deps);

    expect(h.out.retries).toEqual([]);
    expect(h.live.calls.deploy).toEqual([]);
    expect(h.out.verdicts).toEqual([expect.objectContaining({ batchId: h.batchId, verdict: "exhausted", attempt: 2, commit: CANDIDATE })]);
    expect(h.out.verdicts[0]!.reason).toContain("gave up after 2 attempt(s)");
    expect((await h.batch()).state).toBe("exhausted");
  });

  it("candidate.failed (no-change) counts as an attempt and goes back to the rewriter with the reason", async () => {
    const h = await harness({ state: "rewriting", record: { attempt: 2 } });
    const earlier = { attempt: 1, commit: CANDIDATE, diff: DIFF, verdict: "replay-failed", reason: "1 of 2 still fail", results: [] };
    const msg = candidateFailed(h.batchId, { fingerprint: "fp", count: 2, attempt: 2, previous: [earlier], verdict: "no-change", reason: "the coding agent exited 0 but changed no file" });
    await onCandidateFailed(msg, h.deps);
    expect(h.out.retries).toHaveLength(1);
    const r = h.out.retries[0]!;
    expect(r.attempt).toBe(3);
    expect(r.previous.map((p) => [p.attempt, p.verdict])).toEqual([
      [1, "replay-failed"],
      [2, "no-change"],
    ]);
    expect(r.previous[1]!.reason).toBe("the coding agent exited 0 but changed no file");
    expect((await h.batch()).state).toBe("rewriting");

    // At the limit the same message exhausts the batch instead.
    const last = await harness({ state: "rewriting", maxAttempts: 2, record: { attempt: 2 } });
    await onCandidateFailed({ ...msg, batchId: last.batchId }, last.deps);
    expect(last.out.retries).toEqual([]);
    expect(last.out.verdicts.map((v) => v.verdict)).toEqual(["exhausted"]);
    expect((await last.batch()).state).toBe("exhausted");
  });

  it("a redelivered replay.completed after promotion deploys nothing again", async () => {
    const h = await harness();
    const msg = replayDone(h.batchId);
    await onReplayCompleted(msg, h.deps);
    expect(h.out.outcomes).toHaveLength(1);
    await onReplayCompleted(msg, h.deps);
    expect(h.live.calls.deploy).toHaveLength(1);
    expect(h.out.outcomes).toHaveLength(1);
    expect((await h.batch()).state).toBe("promoted");
  });

  it("resumes a promotion a crash interrupted after the swap without swapping again", async () => {
    const h = await harness({ state: "promoting", record: { candidate: { attempt: 1, commit: CANDIDATE, image: NEW_IMAGE, diff: DIFF } } });
    h.live.state.live.image = NEW_IMAGE; // the swap happened before the crash
    await onReplayCompleted(replayDone(h.batchId), h.deps);
    expect(h.live.calls.deploy).toEqual([]);
    expect(h.live.calls.status).toBe(1);
    expect(h.out.outcomes).toEqual([expect.objectContaining({ outcome: "promoted" })]);
    // The kept previous version is still the old one, not the candidate.
    expect((await h.deployment()).previous).toMatchObject({ image: OLD_IMAGE, version: VERSION });
  });

  it("publishes the promotion outcome on redelivery when publishing it failed the first time", async () => {
    const h = await harness();
    const publish = h.hooks.publishOutcome;
    let fail = true;
    h.hooks.publishOutcome = async (m) => {
      if (fail) throw new Error("nats: timeout");
      return publish(m);
    };
    const msg = replayDone(h.batchId);
    await expect(onReplayCompleted(msg, h.deps)).rejects.toThrow("timeout");
    fail = false;
    await onReplayCompleted(msg, h.deps); // the bus redelivers
    expect(h.live.calls.deploy).toHaveLength(1);
    expect(h.out.outcomes).toEqual([expect.objectContaining({ batchId: h.batchId, outcome: "promoted" })]);
  });

  it("publishes the exhausted verdict on redelivery when publishing it failed the first time", async () => {
    const h = await harness({ maxAttempts: 1 });
    const publish = h.hooks.publishVerdict;
    let fail = true;
    h.hooks.publishVerdict = async (m) => {
      if (fail) throw new Error("nats: timeout");
      return publish(m);
    };
    const msg = replayDone(h.batchId, { passed: false });
    await expect(onReplayCompleted(msg, h.deps)).rejects.toThrow("timeout");
    fail = false;
    await onReplayCompleted(msg, h.deps);
    expect(h.out.verdicts).toEqual([expect.objectContaining({ verdict: "exhausted" })]);
  });

  it("ignores a late redelivery of an earlier attempt's failed replay", async () => {
    const h = await harness({ state: "replaying", record: { attempt: 2 } });
    await onReplayCompleted(replayDone(h.batchId, { passed: false, attempt: 1 }), h.deps);
    expect((await h.batch()).state).toBe("replaying");
    await onReplayCompleted(replayDone(h.batchId, { passed: true, attempt: 2 }), h.deps);
    expect((await h.batch()).state).toBe("promoted");
  });

  it("publishes the rejected verdict on redelivery when publishing it failed the first time", async () => {
    const h = await harness({ autoApprove: false, state: "awaiting-approval", record: { candidate: { attempt: 1, commit: CANDIDATE, image: NEW_IMAGE, diff: DIFF } } });
    const publish = h.hooks.publishVerdict;
    h.hooks.publishVerdict = async () => {
      throw new Error("nats: timeout");
    };
    const reject = { batchId: h.batchId, decision: "reject" as const, by: "bob", reason: "" };
    await expect(onApproval(reject, h.deps)).rejects.toThrow("timeout");
    expect((await h.batch()).state).toBe("rejected");
    h.hooks.publishVerdict = publish;
    await onApproval(reject, h.deps);
    expect(h.out.verdicts).toEqual([{ batchId: h.batchId, agent: AGENT, attempt: 1, commit: CANDIDATE, image: NEW_IMAGE, verdict: "rejected", reason: "rejected by bob" }]);
  });

  it("a crash after the outcome was published redoes the end without a second bake, announcing the same outcome", async () => {
    const { probe, count } = scripted(true);
    const h = await harness({ probe });
    const publish = h.hooks.publishOutcome;
    let crash = true;
    h.hooks.publishOutcome = async (m) => {
      await publish(m);
      if (crash) throw new Error("promoter killed before the batch moved to promoted");
    };
    const msg = replayDone(h.batchId);
    await expect(onReplayCompleted(msg, h.deps)).rejects.toThrow("killed");
    expect((await h.batch()).state).toBe("promoting");
    const probes = count();
    crash = false;
    await onReplayCompleted(msg, h.deps);
    expect(count()).toBe(probes); // the decision was taken: no second bake that might decide otherwise
    expect(h.live.calls.deploy).toHaveLength(1);
    expect(h.out.outcomes).toHaveLength(2);
    expect(h.out.outcomes[1]).toEqual(h.out.outcomes[0]); // same content, same msgId: one message on the stream
    expect(h.out.outcomes[0]).toMatchObject({ outcome: "promoted", previousImage: OLD_IMAGE, approvedBy: "policy:autoApprove" });
    const b = await h.batch();
    expect(b.state).toBe("promoted");
    expect(b.reason).toBe(h.out.outcomes[0]!.reason);
    expect(await h.deployment()).toMatchObject({ image: NEW_IMAGE, batchId: h.batchId, previous: { image: OLD_IMAGE, version: VERSION, container: `moss-prev-${AGENT}` } });
  });

  it("a crash after the rollback finishes the rolled-back bookkeeping without redeploying the bad candidate", async () => {
    const h = await harness({ probe: scripted(true, false).probe, autoApprove: false });
    h.deps.sleep = () => new Promise<void>((r) => setImmediate(r));
    await onReplayCompleted(replayDone(h.batchId), h.deps);
    let crash = true;
    const publish = h.hooks.publishOutcome;
    h.hooks.publishOutcome = async (m) => {
      if (crash) throw new Error("promoter killed after the rollback");
      return publish(m);
    };
    const approve = { batchId: h.batchId, decision: "approve" as const, by: "alice", reason: "" };
    await expect(onApproval(approve, h.deps)).rejects.toThrow("killed");
    expect(h.live.calls.rollback).toEqual([AGENT]);
    expect(h.live.state.live.image).toBe(OLD_IMAGE);
    expect((await h.batch()).state).toBe("promoting");

    crash = false;
    await onApproval(approve, h.deps); // the approval comes back
    expect(h.live.calls.deploy).toHaveLength(1);
    expect(h.live.calls.rollback).toEqual([AGENT]);
    expect(h.live.state.live.image).toBe(OLD_IMAGE);
    expect(h.out.outcomes).toEqual([expect.objectContaining({ outcome: "rolled-back", approvedBy: "alice", previousImage: OLD_IMAGE, probes: { ok: 1, failed: 2 } })]);
    expect(h.out.outcomes[0]!.reason).toBe(`rolled back to ${OLD_IMAGE}: 2 failed health probes during the 200 ms bake window (last: GET /health answered 503)`);
    expect((await h.batch()).state).toBe("rolled-back");
    expect((await h.deployment()).image).toBe(OLD_IMAGE);
  });

  it("a crash between the rollback decision and the rollback rolls back on resume", async () => {
    const h = await harness({ probe: scripted(false).probe });
    const rollback = h.live.port.rollbackLive;
    let down = true;
    h.live.port.rollbackLive = async (agent) => {
      if (down) throw Object.assign(new Error("docker daemon unreachable"), { retryable: true });
      return rollback(agent);
    };
    const msg = replayDone(h.batchId);
    await expect(onReplayCompleted(msg, h.deps)).rejects.toThrow("unreachable");
    expect(h.live.state.live.image).toBe(NEW_IMAGE);
    down = false;
    await onReplayCompleted(msg, h.deps);
    expect(h.live.calls.deploy).toHaveLength(1);
    expect(h.live.state.live.image).toBe(OLD_IMAGE);
    expect(h.out.outcomes).toEqual([expect.objectContaining({ outcome: "rolled-back" })]);
    expect(h.out.outcomes[0]!.reason).toContain(`rolled back to ${OLD_IMAGE}: the new version never answered`);
    expect((await h.batch()).state).toBe("rolled-back");
  });

  it("ignores a late redelivery of an earlier attempt's candidate.failed", async () => {
    const h = await harness({ state: "candidate", record: { attempt: 2 } });
    const msg = candidateFailed(h.batchId, { fingerprint: "fp", count: 2, attempt: 1, verdict: "agent-failed", reason: "coding agent exited 2" });
    await onCandidateFailed(msg, h.deps);
    expect(h.out.retries).toEqual([]);
    expect(await h.batch()).toMatchObject({ state: "candidate", attempt: 2 });
  });

  // --- signature gate, plateau guard, rejected candidates -------------------------------------------------------

  const FPK = "fpk1";
  const FAILED_ATTEMPT_1: AttemptEvidence = {
    attempt: 1,
    commit: "1111111111111111111111111111111111111111",
    diff: ref("e"),
    verdict: "replay-failed",
    reason: "1 of 2 failure(s) still fail in replay: answered 500 (expected 200-499): boom",
    results: [
      { failureId: "f1", passed: true, reason: "answered 200: ok", status: 200, durationMs: 12, timedOut: false },
      { failureId: "f2", passed: false, reason: "answered 500 (expected 200-499): boom", status: 500, durationMs: 15, timedOut: false },
    ],
  };

  it("a replay-passed commit whose signature does not verify: rejected and announced, never deployed, kept as a rejected candidate", async () => {
    const checked: Array<[string, string]> = [];
    const h = await harness({
      record: { fingerprintKey: FPK },
      verifySignature: async (agent, commit) => {
        checked.push([agent, commit]);
        return { ok: false, reason: `commit ${commit} is not signed` };
      },
    });
    await onReplayCompleted(replayDone(h.batchId), h.deps);

    expect(checked).toEqual([[AGENT, CANDIDATE]]);
    const reason = `replay passed, but the commit cannot be promoted: commit ${CANDIDATE} is not signed`;
    expect(h.out.verdicts).toEqual([{ batchId: h.batchId, agent: AGENT, attempt: 1, commit: CANDIDATE, image: NEW_IMAGE, verdict: "rejected", reason }]);
    expect(h.live.calls.deploy).toEqual([]);
    expect(h.out.outcomes).toEqual([]);
    expect(h.out.retries).toEqual([]);
    const b = await h.batch();
    expect(b).toMatchObject({ state: "rejected", reason, candidate: { attempt: 1, commit: CANDIDATE, image: NEW_IMAGE, diff: DIFF } });
    expect((await h.deployment()).image).toBe(OLD_IMAGE);
    expect(await h.kept()).toEqual({
      [`${AGENT}.${FPK}.${h.batchId}.1`]: {
        agent: AGENT,
        fingerprint: b.fingerprint,
        batchId: h.batchId,
        attempt: 1,
        commit: CANDIDATE,
        branch: `moss/${h.batchId}/1`,
        diff: DIFF,
        verdict: "unsigned",
        reason,
        at: expect.any(String),
      },
    });

    // A redelivery deploys nothing either, and an approval cannot promote a rejected batch.
    await onReplayCompleted(replayDone(h.batchId), h.deps);
    await onApproval({ batchId: h.batchId, decision: "approve", by: "alice", reason: "" }, h.deps);
    expect(h.live.calls.deploy).toEqual([]);
    expect((await h.batch()).state).toBe("rejected");
  });

  it("the signature gate comes before the consent gate, and a good signature promotes as usual", async () => {
    const bad = await harness({ autoApprove: false, verifySignature: async () => ({ ok: false, reason: "bad signature" }) });
    await onReplayCompleted(replayDone(bad.batchId), bad.deps);
    expect(bad.out.verdicts.map((v) => v.verdict)).toEqual(["rejected"]);
    expect((await bad.batch()).state).toBe("rejected");

    let checks = 0;
    const good = await harness({ verifySignature: async () => (checks++, { ok: true, reason: "good signature" }) });
    await onReplayCompleted(replayDone(good.batchId), good.deps);
    expect(checks).toBe(2); // when replay passed, and again just before the swap
    expect(good.live.calls.deploy.map((d) => d.image)).toEqual([NEW_IMAGE]);
    expect((await good.batch()).state).toBe("promoted");
    expect(await good.kept()).toEqual({});
  });

  // BUG (services/promoter/src/handlers/attempts.ts, announceEnd()): the signature gate moves the batch to
  // `rejected` and then publishes the verdict; if that publish fails (or the promoter dies in between), the
  // redelivered replay.completed finds the batch `rejected` and announceEnd publishes nothing ("rejected: the approval
  // handler announces it"), but here no approval was involved, so the rejection is never announced. Fix: in
  // announceEnd, also `else if (rec.state === "rejected" && "passed" in msg) await deps.publishVerdict({ ...base,
  // image: rec.candidate?.image ?? msg.image, verdict: "rejected", reason: rec.reason ?? "" })` (same content and
  // msgId `verdict-<batch>-<attempt>-rejected` as the lost one; an operator reject's repeat is equally harmless).
  it("a signature rejection whose announcement was lost is announced on redelivery", async () => {
    const h = await harness({ verifySignature: async () => ({ ok: false, reason: "not signed" }) });
    const publish = h.hooks.publishVerdict;
    let fail = true;
    h.hooks.publishVerdict = async (m) => {
      if (fail) throw new Error("nats: timeout");
      return publish(m);
    };
    const msg = replayDone(h.batchId);
    await expect(onReplayCompleted(msg, h.deps)).rejects.toThrow("timeout");
    expect((await h.batch()).state).toBe("rejected");
    fail = false;
    await onReplayCompleted(msg, h.deps); // the bus redelivers
    expect(h.out.verdicts).toEqual([expect.objectContaining({ batchId: h.batchId, verdict: "rejected", reason: "replay passed, but the commit cannot be promoted: not signed" })]);
  });

  it("plateau: attempt 2 fixing no more failures than attempt 1 ends the batch exhausted, though attempts are left", async () => {
    const h = await harness({ maxAttempts: 5, record: { attempt: 2, fingerprintKey: FPK } });
    // Attempt 2 fixes f1 and still fails f2: as far as attempt 1 got.
    await onReplayCompleted(replayDone(h.batchId, { passed: false, attempt: 2, previous: [FAILED_ATTEMPT_1] }), h.deps);

    const plateau = "plateau: attempt 2 fixed 1 of 2 failure(s), no better than attempt 1 (1); stopping";
    expect(h.out.retries).toEqual([]);
    expect(h.live.calls.deploy).toEqual([]);
    expect(h.out.verdicts).toEqual([{ batchId: h.batchId, agent: AGENT, attempt: 2, commit: CANDIDATE, verdict: "exhausted", reason: plateau }]);
    expect(await h.batch()).toMatchObject({ state: "exhausted", reason: plateau });
    // Its candidate is kept like every other failed attempt.
    expect(Object.values(await h.kept())).toEqual([expect.objectContaining({ attempt: 2, verdict: "replay-failed", commit: CANDIDATE })]);
  });

  it("no plateau: attempt 2 fixing more failures than attempt 1 goes on to attempt 3", async () => {
    const h = await harness({ maxAttempts: 5, record: { attempt: 2 } });
    const noneFixed: AttemptEvidence = { ...FAILED_ATTEMPT_1, results: FAILED_ATTEMPT_1.results.map((r) => ({ ...r, passed: false, reason: "answered 500", status: 500 })) };
    await onReplayCompleted(replayDone(h.batchId, { passed: false, attempt: 2, previous: [noneFixed] }), h.deps);

    expect(h.out.verdicts).toEqual([]);
    expect(h.out.retries).toHaveLength(1);
    expect(h.out.retries[0]!.attempt).toBe(3);
    expect(h.out.retries[0]!.previous.map((p) => [p.attempt, p.verdict])).toEqual([
      [1, "replay-failed"],
      [2, "replay-failed"],
    ]);
    expect((await h.batch()).state).toBe("rewriting");
  });

  it("plateau compares with the last attempt that reached replay; an attempt without a candidate never plateaus", async () => {
    const fields = { agent: AGENT, fingerprint: "fp", fingerprintKey: "fpk", baseVersion: VERSION, failures: FAILURES, count: 2, commit: CANDIDATE, image: NEW_IMAGE, diff: DIFF };
    const noChange: AttemptEvidence = { attempt: 2, verdict: "no-change", reason: "the coding agent finished but changed no file", results: [] };
    const onePassed = FAILED_ATTEMPT_1.results;
    const bothPassed = onePassed.map((r) => ({ ...r, passed: true }));
    const replay = (attempt: number, previous: AttemptEvidence[], results: AttemptEvidence["results"]) =>
      ReplayCompleted.parse({ ...fields, batchId: "p", attempt, previous, passed: false, results });
    const evidence = (attempt: number, results: AttemptEvidence["results"]): AttemptEvidence => ({ attempt, verdict: "replay-failed", reason: "r", results });

    // Attempt 3 vs attempt 1 (attempt 2 never reached replay).
    expect(plateauOf(replay(3, [FAILED_ATTEMPT_1, noChange], onePassed), evidence(3, onePassed))).toBe(
      "plateau: attempt 3 fixed 1 of 2 failure(s), no better than attempt 1 (1); stopping",
    );
    expect(plateauOf(replay(3, [FAILED_ATTEMPT_1, noChange], bothPassed), evidence(3, bothPassed))).toBeUndefined();
    // The first replayed attempt has nothing to compare with.
    expect(plateauOf(replay(2, [noChange], onePassed), evidence(2, onePassed))).toBeUndefined();
    // As many failures fixed, but fewer recorded successes broken, is progress; as many broken is not.
    const broke = (n: number) => Array.from({ length: n }, (_, i) => ({ failureId: `c${i}`, passed: false, verdict: "fail" as const, reason: "changed", durationMs: 1, timedOut: false, route: "calc", input: "POST /v1/chat", recorded: { status: 200 }, changes: [{ check: "status" as const, before: "200", after: "500" }] }));
    const regressedOnce = { ...evidence(1, bothPassed), regressions: broke(2) };
    expect(plateauOf(replay(2, [regressedOnce], bothPassed), { ...evidence(2, bothPassed), regressions: broke(1) })).toBeUndefined();
    expect(plateauOf(replay(2, [regressedOnce], bothPassed), { ...evidence(2, bothPassed), regressions: broke(2) })).toBe(
      "plateau: attempt 2 fixed 2 of 2 failure(s) and changed 2 recorded success(es), no better than attempt 1 (2, 2 changed); stopping",
    );
    // A candidate.failed carries no replay results.
    const cf = candidateFailed("p", { attempt: 2, previous: [FAILED_ATTEMPT_1] });
    expect(plateauOf(cf, { attempt: 2, verdict: cf.verdict, reason: cf.reason, results: [] })).toBeUndefined();
  });

  // BUG (minor; services/promoter/src/handlers/attempts.ts, iterate() vs announceEnd()): a plateau
  // stores the plateau text as the record's reason and announces it as is, but a redelivery re-announces
  // `exhausted` as exhaustedReason(attempt, rec.reason) = "gave up after 2 attempt(s); last: plateau: ...", so the
  // "same content" the re-announcement relies on differs when the first publish was lost. Fix: make the two agree,
  // e.g. publish exhaustedReason(msg.attempt, plateau) in iterate(), or store the announced reason in the record and
  // re-announce rec.reason verbatim for `exhausted`.
  it("a plateau verdict whose announcement was lost is re-announced with the same reason", async () => {
    const announced = await harness({ maxAttempts: 5, record: { attempt: 2 } });
    const msgFor = (batchId: string) => replayDone(batchId, { passed: false, attempt: 2, previous: [FAILED_ATTEMPT_1] });
    await onReplayCompleted(msgFor(announced.batchId), announced.deps);

    const lost = await harness({ maxAttempts: 5, record: { attempt: 2 } });
    const publish = lost.hooks.publishVerdict;
    let fail = true;
    lost.hooks.publishVerdict = async (m) => {
      if (fail) throw new Error("nats: timeout");
      return publish(m);
    };
    await expect(onReplayCompleted(msgFor(lost.batchId), lost.deps)).rejects.toThrow("timeout");
    fail = false;
    await onReplayCompleted(msgFor(lost.batchId), lost.deps);
    expect(lost.out.verdicts.map((v) => v.reason)).toEqual(announced.out.verdicts.map((v) => v.reason));
  });

  it("every failed attempt is kept in moss_candidates: replay failures and candidate failures, retried or final", async () => {
    // Attempt 1's replay fails: kept, with its commit and branch, and the batch goes back to the rewriter.
    const h = await harness({ maxAttempts: 3, record: { fingerprintKey: FPK } });
    await onReplayCompleted(replayDone(h.batchId, { passed: false }), h.deps);
    expect(h.out.retries).toHaveLength(1);
    // Attempt 2 produces no candidate (a guardrail refused it): kept too, without a commit.
    await onCandidateFailed(candidateFailed(h.batchId, { attempt: 2, previous: h.out.retries[0]!.previous }), h.deps);
    expect(h.out.retries.map((r) => r.attempt)).toEqual([2, 3]);
    // Attempt 3's image did not build, at the last attempt: exhausted, and still kept.
    await onCandidateFailed(
      candidateFailed(h.batchId, { attempt: 3, previous: h.out.retries[1]!.previous, verdict: "build-failed", reason: "image build failed: RUN npm ci exited 1", commit: CANDIDATE, diff: DIFF }),
      h.deps,
    );
    expect(h.out.verdicts.map((v) => v.verdict)).toEqual(["exhausted"]);

    const kept = await h.kept();
    const key = (attempt: number) => `${AGENT}.${FPK}.${h.batchId}.${attempt}`;
    expect(Object.keys(kept).sort()).toEqual([key(1), key(2), key(3)]);
    expect(kept[key(1)]).toMatchObject({ agent: AGENT, batchId: h.batchId, attempt: 1, verdict: "replay-failed", commit: CANDIDATE, branch: `moss/${h.batchId}/1`, diff: DIFF });
    expect(kept[key(1)]!.reason).toContain("1 of 2 failure(s) still fail in replay: answered 500");
    expect(kept[key(2)]).toMatchObject({ attempt: 2, verdict: "guardrail", reason: "the change breaks the guardrails: .ci/run: forbidden path (matches .ci/**)" });
    expect(kept[key(2)]!.commit).toBeUndefined();
    expect(kept[key(2)]!.branch).toBeUndefined();
    expect(kept[key(3)]).toMatchObject({ attempt: 3, verdict: "build-failed", commit: CANDIDATE, branch: `moss/${h.batchId}/3`, diff: DIFF });

    // A replay that fails at the last attempt is kept as well.
    const last = await harness({ maxAttempts: 1, record: { fingerprintKey: FPK } });
    await onReplayCompleted(replayDone(last.batchId, { passed: false }), last.deps);
    expect(last.out.verdicts.map((v) => v.verdict)).toEqual(["exhausted"]);
    expect(Object.values(await last.kept())).toEqual([expect.objectContaining({ attempt: 1, verdict: "replay-failed" })]);
  });

  it("keeps a candidate under the fingerprint key its messages name, and nothing for a late message", async () => {
    // Every message of a batch names its fingerprint key: the judge needs no lookup to file the candidate.
    const h = await harness({ maxAttempts: 3 });
    await onReplayCompleted(replayDone(h.batchId, { passed: false }), h.deps);
    expect(h.out.retries).toHaveLength(1);
    expect(h.out.retries[0]!.fingerprintKey).toBe(`fpk-${h.batchId}`);
    expect(Object.keys(await h.kept())).toEqual([`${AGENT}.fpk-${h.batchId}.${h.batchId}.1`]);

    const late = await harness({ state: "candidate", record: { attempt: 2, fingerprintKey: FPK } });
    await onCandidateFailed(candidateFailed(late.batchId, { attempt: 1 }), late.deps);
    expect(await late.kept()).toEqual({});
  });

  it("an agent's own depth (agents.<name>.rewrite.depth) decides how many attempts its batches get", async () => {
    // One config: the global depth is shallow (1 attempt); this agent is rewritten deep (5 attempts).
    const config = { rewriter: { depth: "shallow" as const }, curator: { breakerThreshold: 100 }, agents: { [AGENT]: { repo: "/srv/chat-bot", rewrite: { depth: "deep" as const } } } };
    const h = await harness({ config });
    let previous: AttemptEvidence[] = [];
    for (let attempt = 1; h.out.verdicts.length === 0 && attempt < 20; attempt++) {
      await onCandidateFailed(candidateFailed(h.batchId, { attempt, previous, verdict: "no-change", reason: `attempt ${attempt} changed nothing` }), h.deps);
      previous = h.out.retries.at(-1)?.previous ?? previous;
    }
    expect(h.out.retries.map((r) => r.attempt)).toEqual([2, 3, 4, 5]);
    expect(h.out.verdicts).toEqual([expect.objectContaining({ verdict: "exhausted", attempt: 5, reason: "gave up after 5 attempt(s); last: attempt 5 changed nothing" })]);
    // Another agent of the same config keeps the global depth: one attempt.
    const other = await harness({ config: { ...config, agents: { ...config.agents, other: { repo: "/srv/other" } } } });
    await onCandidateFailed({ ...candidateFailed(other.batchId), agent: "other" }, other.deps);
    expect(other.out.retries).toEqual([]);
    expect(other.out.verdicts).toEqual([expect.objectContaining({ verdict: "exhausted", attempt: 1 })]);
  });

  it("counts every rejected attempt into the fingerprint's breaker, and at the threshold the batch needs a human", async () => {
    const h = await harness({ config: { promoter: { maxAttempts: 10 }, curator: { breakerThreshold: 2 } }, record: { fingerprintKey: FPK } });
    await onCandidateFailed(candidateFailed(h.batchId, { attempt: 1 }), h.deps);
    await onCandidateFailed(candidateFailed(h.batchId, { attempt: 1 }), h.deps); // redelivered: counted once
    expect(h.out.retries.map((r) => r.attempt)).toEqual([2, 2]);
    await onCandidateFailed(candidateFailed(h.batchId, { attempt: 2, previous: h.out.retries[0]!.previous }), h.deps);
    expect(h.out.verdicts).toEqual([expect.objectContaining({ verdict: "needs-human", attempt: 2 })]);
    expect(await h.batch()).toMatchObject({ state: "needs-human" });
  });

  // --- provenance: only what the rewriter built is ever deployed -----------------------------------------------
  it("a replay.completed naming another image or commit than the rewriter built is ignored, and the real one promotes", async () => {
    const h = await harness();
    await onReplayCompleted({ ...replayDone(h.batchId), image: "evil/image:latest" }, h.deps);
    await onReplayCompleted({ ...replayDone(h.batchId), commit: "1234567890123456789012345678901234567890" }, h.deps);
    await onReplayCompleted(replayDone(h.batchId, { attempt: 2 }), h.deps);
    expect(h.live.calls.deploy).toEqual([]);
    expect(await h.batch()).toMatchObject({ state: "replaying" });
    await onReplayCompleted(replayDone(h.batchId), h.deps);
    expect(h.live.calls.deploy).toEqual([expect.objectContaining({ image: NEW_IMAGE, imageId: NEW_IMAGE_ID, version: CANDIDATE })]);
    expect(await h.batch()).toMatchObject({ state: "promoted", candidate: { commit: CANDIDATE, image: NEW_IMAGE, imageId: NEW_IMAGE_ID } });
  });

  it("a candidate that fails its last check before the swap is rejected, and nothing is deployed", async () => {
    let signed = true;
    const h = await harness({ autoApprove: false, verifySignature: async () => (signed ? { ok: true, reason: "good" } : { ok: false, reason: "commit 1111 is not signed" }) });
    await onReplayCompleted(replayDone(h.batchId), h.deps);
    expect((await h.batch()).state).toBe("awaiting-approval");
    signed = false; // e.g. the branch was rewritten after the replay
    await onApproval({ batchId: h.batchId, decision: "approve", by: "alice", reason: "" }, h.deps);
    expect(h.live.calls.deploy).toEqual([]);
    expect(await h.batch()).toMatchObject({ state: "rejected", reason: "not deployed: the commit cannot be promoted: commit 1111 is not signed" });
    expect(h.out.verdicts.at(-1)).toMatchObject({ verdict: "rejected", reason: "not deployed: the commit cannot be promoted: commit 1111 is not signed" });
    // The runtime's own check (image id, commit label) refuses the same way.
    const m = await harness({ autoApprove: false });
    m.live.port.deployLive = async () => {
      throw Object.assign(new Error("image moss/chat-bot:x is not the image that was built: its id is sha256:other"), { code: "MOSS_E_IMAGE_MISMATCH", retryable: false });
    };
    await onReplayCompleted(replayDone(m.batchId), m.deps);
    await onApproval({ batchId: m.batchId, decision: "approve", by: "alice", reason: "" }, m.deps);
    expect(await m.batch()).toMatchObject({ state: "rejected", reason: expect.stringContaining("is not the image that was built") });
  });
});
