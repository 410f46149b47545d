import { batchStore, regressionStore } from "@moss/batch";
import { kvGet } from "@moss/bus";
import { knownAgent, parseConfig } from "@moss/config";
import { ImageNotFoundError, SnapshotRejectedError } from "@moss/runtime";
import { BatchRecord, CandidateReady, Consumers, FailureEvent, Messages, replayVerdict, SuccessEvent, type FailureRef, type ReplayCompleted, type ReplayTrial } from "@moss/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { replay, replayTrial, type ReplayerDeps, type TrialPort } from "@moss/replayer";
import { recordingPublish } from "../helpers/publish";
import { CANDIDATE, VERSION, batchRecord, failure, seed, silent, sleep, startEnv, type Env } from "../helpers/env";

type Trial = Awaited<ReturnType<TrialPort["runTrial"]>>;
type TrialSpec = Parameters<TrialPort["runTrial"]>[0];

const ok = (status = 200, body = '{"answer":"ok"}'): Trial => ({ response: { status, body, headers: {} }, timedOut: false, reportedFailures: [], calls: [], logs: "", durationMs: 5 });

describe("replay with a fake runtime, real blob store and KV", () => {
  let env: Env;
  beforeAll(async () => {
    env = await startEnv("replayer-test");
  });
  afterAll(async () => {
    await env?.stop();
  });

  const AGENTS = {
    "chat-bot": { repo: "/srv/chat-bot", port: 8080, stateDir: "/data", env: { MODEL: "small", SHARED: "agent", MOSS_NATS_URL: "nats://x" }, replay: { envAllow: ["SHARED", "LOCALE"] } },
    "net-bot": { repo: "/srv/net-bot", replay: { network: true } },
    "plain-bot": { repo: "/srv/plain-bot" },
    "reg-bot": { repo: "/srv/reg-bot", regressions: { replay: 3, paths: ["$.tool"] } },
  };
  const CONFIG = parseConfig({ agents: AGENTS });

  function fakeRuntime(answer: (spec: TrialSpec) => Promise<Trial> | Trial = () => ok()) {
    const specs: TrialSpec[] = [];
    let inflight = 0;
    let maxInflight = 0;
    const runtime: TrialPort = {
      async runTrial(spec) {
        specs.push(spec);
        inflight++;
        maxInflight = Math.max(maxInflight, inflight);
        try {
          return await answer(spec);
        } finally {
          inflight--;
        }
      },
    };
    return { runtime, specs, maxInflight: () => maxInflight };
  }

  let n = 0;
  async function harness(events: FailureEvent[], runtime: TrialPort, o: { agent?: string } = {}) {
    const batches = await env.bucket("batches");
    const failures: FailureRef[] = [];
    for (const ev of events) failures.push({ id: ev.id, event: await env.blob.put(JSON.stringify(ev), { contentType: "application/json" }) });
    const batchId = `b${++n}`;
    await seed(batches, batchRecord({ batchId, failures, state: "candidate", attempt: 1 }));
    const sent = recordingPublish();
    const published: ReplayCompleted[] = sent.of(Messages.replayCompleted);
    const trials: ReplayTrial[] = sent.of(Messages.replayTrial);
    const replays = await env.bucket("replays");
    const regressions = regressionStore(await env.bucket("regressions"));
    const deps: ReplayerDeps = { agent: (name) => knownAgent(CONFIG, name).entry, blob: env.blob, runtime, batches: batchStore(batches), replays, regressions, publish: sent.publish, log: silent };
    const msg = CandidateReady.parse({
      batchId,
      agent: o.agent ?? "chat-bot",
      fingerprint: "fp",
      fingerprintKey: "fpk",
      baseVersion: VERSION,
      failures,
      count: events.length,
      attempt: 1,
      commit: CANDIDATE,
      branch: `moss/${batchId}/1`,
      image: "moss/chat-bot:candidate",
      diff: await env.blob.put("diff --git a/x b/x"),
      filesChanged: ["src/chat.ts"],
    });
    const state = async () => (await kvGet(batches, batchId, BatchRecord))!.value.state;
    return { deps, msg, published, trials, state, regressions };
  }

  /**
   * The candidate's message handled, then the work queue it filled drained by `workers` at once (replicas times their
   * concurrency); `replicas` gives each worker its own deps (its runtime), as replicas on other engines would have.
   */
  async function run(
    h: Awaited<ReturnType<typeof harness>>,
    o: { msg?: CandidateReady; deps?: ReplayerDeps; workers?: number; replicas?: ReplayerDeps[]; candidateDelivery?: number; trialDelivery?: number } = {},
  ): Promise<void> {
    await replay(o.msg ?? h.msg, o.deps ?? h.deps, { deliveryCount: o.candidateDelivery ?? 1 });
    const queue = h.trials.splice(0);
    const workers = o.replicas ?? Array.from({ length: o.workers ?? 4 }, () => o.deps ?? h.deps);
    let next = 0;
    await Promise.all(
      workers.map(async (deps) => {
        while (next < queue.length) await replayTrial(queue[next++]!, deps, { deliveryCount: o.trialDelivery ?? 1 });
      }),
    );
  }

  it("replays every failure with its request, 1.5x timeout, snapshot (into the configured state dir), end-to-end headers and the allowed env", async () => {
    const tar = Buffer.from([0x75, 0x73, 0x74, 0x61, 0x72, 0, 0xff, 0x10]);
    const snapshotRef = await env.blob.put(tar, { contentType: "application/x-tar" });
    const inlineTar = Buffer.from("inline-state-tar");
    const events = [
      failure({
        id: "f1",
        timeoutMs: 2_000,
        request: {
          method: "POST",
          path: "/v1/chat?stream=0",
          headers: { Host: "agent.internal:8080", "Content-Length": "10", connection: "keep-alive", "Transfer-Encoding": "chunked", "content-type": "application/json", authorization: "Bearer t", "x-request-id": "r1" },
          body: '{"q":"hi"}',
        },
        // What the config allows of the recorded env is taken; loader variables and anything else are not.
        env: { SHARED: "failure", LOCALE: "fr", MOSS_AGENT_VERSION: VERSION, NODE_OPTIONS: "--require /tmp/evil.js", LD_PRELOAD: "/tmp/evil.so", OTHER: "x" },
        snapshot: { path: "/etc", blob: snapshotRef },
      }),
      failure({ id: "f2", timeoutMs: 333, snapshot: { path: "/state", inlineBase64: inlineTar.toString("base64") } }),
      failure({ id: "f3", request: { method: "GET", path: "/v1/search?q=x" } }),
    ];
    const fake = fakeRuntime((spec) => ({ ...ok(), logs: `logs of ${spec.labels?.["moss.failure"]}` }));
    const h = await harness(events, fake.runtime);
    await run(h);

    const byId = Object.fromEntries(fake.specs.map((s) => [s.labels?.["moss.failure"], s]));
    expect(Object.keys(byId).sort()).toEqual(["f1", "f2", "f3"]);
    const s1 = byId["f1"]!;
    expect(s1).toMatchObject({ image: "moss/chat-bot:candidate", port: 8080, timeoutMs: 3_000, network: false, labels: { "moss.batch": h.msg.batchId, "moss.failure": "f1" } });
    expect(s1.request).toEqual({ method: "POST", path: "/v1/chat?stream=0", headers: { "content-type": "application/json", authorization: "Bearer t", "x-request-id": "r1" }, body: '{"q":"hi"}' });
    expect(s1.env).toEqual({ MODEL: "small", SHARED: "failure", MOSS_NATS_URL: "nats://x", LOCALE: "fr", AGENT_NAME: "chat-bot", MOSS_AGENT_VERSION: CANDIDATE });
    expect(s1.snapshot?.path).toBe("/data"); // the config's stateDir, not the event's /etc
    expect(s1.snapshot?.tar).toEqual(tar);

    const s2 = byId["f2"]!;
    expect(s2.timeoutMs).toBe(500); // 333 * 1.5, rounded
    expect(s2.snapshot).toEqual({ path: "/data", tar: inlineTar });
    expect(s2.env).toEqual({ ...AGENTS["chat-bot"].env, AGENT_NAME: "chat-bot", MOSS_AGENT_VERSION: CANDIDATE });

    const s3 = byId["f3"]!;
    expect(s3).toMatchObject({ timeoutMs: 15_000, network: false, snapshot: undefined });
    expect(s3.request).toMatchObject({ method: "GET", path: "/v1/search?q=x" });

    expect(h.published).toHaveLength(1);
    const out = h.published[0]!;
    expect(out).toMatchObject({ batchId: h.msg.batchId, attempt: 1, commit: CANDIDATE, image: "moss/chat-bot:candidate", diff: h.msg.diff, failures: h.msg.failures, passed: true });
    expect(out.results.map((r) => [r.failureId, r.passed, r.status])).toEqual([
      ["f1", true, 200],
      ["f2", true, 200],
      ["f3", true, 200],
    ]);
    // Each trial's container logs are kept as evidence.
    for (const r of out.results) expect((await env.blob.get(r.logs!.sha256)).toString()).toBe(`logs of ${r.failureId}`);
    expect(await h.state()).toBe("replaying");
  });

  it("takes the trial's network from the agent's config, never from the event", async () => {
    const fake = fakeRuntime();
    const h = await harness([failure({ id: "n1", agent: "net-bot" })], fake.runtime, { agent: "net-bot" });
    await run(h);
    expect(fake.specs[0]).toMatchObject({ network: true });
  });

  it("one failure that cannot be replayed fails its own trial with the reason; the batch's replay still completes", async () => {
    // plain-bot names no stateDir: a snapshot has nowhere to go. f-bad's snapshot breaks the unpacking policy.
    const events = [
      failure({ id: "f-snap", agent: "plain-bot", snapshot: { path: "/data", inlineBase64: Buffer.from("x").toString("base64") } }),
      failure({ id: "f-ok", agent: "plain-bot" }),
    ];
    const fake = fakeRuntime();
    const h = await harness(events, fake.runtime, { agent: "plain-bot" });
    await run(h);
    expect(fake.specs.map((s) => s.labels?.["moss.failure"])).toEqual(["f-ok"]);
    const out = h.published[0]!;
    expect(out.passed).toBe(false);
    expect(out.results[0]).toMatchObject({ failureId: "f-snap", passed: false, reason: expect.stringContaining("agents.plain-bot.stateDir is not set") });
    expect(out.results[1]).toMatchObject({ failureId: "f-ok", passed: true });

    const rejecting = fakeRuntime((spec) => {
      if (spec.labels?.["moss.failure"] === "f-bad") throw new SnapshotRejectedError("symlink evil -> / leaves the state directory");
      return ok();
    });
    const h2 = await harness([failure({ id: "f-bad", snapshot: { path: "/data", inlineBase64: "eA==" } }), failure({ id: "f-good" })], rejecting.runtime);
    await run(h2);
    expect(h2.published[0]!.results).toEqual([
      expect.objectContaining({ failureId: "f-bad", passed: false, reason: "could not be replayed: the state snapshot was not restored: symlink evil -> / leaves the state directory" }),
      expect.objectContaining({ failureId: "f-good", passed: true }),
    ]);
  });

  it("serves each failure's own cassette, with the turn's clock and seed; a diverged trial fails, naming the call", async () => {
    const call = { method: "POST", url: "https://api.openai.com/v1/chat/completions", headers: {}, response: { status: 200, headers: {}, body: { text: "{}", base64: false, truncated: false } } };
    const inline = failure({ id: "f-inline", turn: { startedAt: "2026-11-30T10:00:00.000Z", seed: 42 }, cassette: { inline: { schema: "moss.cassette.v1", failureId: "f-inline", calls: [call], truncated: false } } });
    const stored = await env.blob.put(JSON.stringify({ schema: "moss.cassette.v1", failureId: "f-blob", calls: [call, call] }), { contentType: "application/json" });
    const byRef = failure({ id: "f-blob", cassette: { blob: stored } });
    const fake = fakeRuntime((spec) =>
      spec.labels?.["moss.failure"] === "f-blob"
        ? { ...ok(200), diverged: "unrecorded call POST https://api.openai.com/v1/embeddings", calls: [{ method: "POST", url: "https://api.openai.com/v1/embeddings", outcome: "unmatched" }] }
        : { ...ok(200), calls: [{ method: "POST", url: call.url, outcome: "matched", index: 0 }] },
    );
    const h = await harness([inline, byRef], fake.runtime);
    await run(h);
    const specOf = (id: string) => fake.specs.find((s) => s.labels?.["moss.failure"] === id)!;
    expect(specOf("f-inline").cassette?.calls).toHaveLength(1);
    expect(specOf("f-inline").env).toMatchObject({ MOSS_REPLAY_TIME: "2026-11-30T10:00:00.000Z", MOSS_REPLAY_SEED: "42" });
    expect(specOf("f-blob").cassette?.calls).toHaveLength(2);
    expect(specOf("f-blob").env["MOSS_REPLAY_TIME"]).toBeUndefined();
    const [a, b] = h.published[0]!.results;
    expect(a).toMatchObject({ failureId: "f-inline", passed: true, calls: [{ outcome: "matched", index: 0 }] });
    expect(b).toMatchObject({ failureId: "f-blob", passed: false, diverged: "unrecorded call POST https://api.openai.com/v1/embeddings", reason: "diverged: unrecorded call POST https://api.openai.com/v1/embeddings" });
  });

  it("a cassette that is corrupt, too big or another failure's fails its own trial with the reason, and nothing runs for it", async () => {
    const corrupt = failure({ id: "f-corrupt", cassette: { blob: await env.blob.put("{not json", { contentType: "application/json" }) } });
    const wrongShape = failure({ id: "f-shape", cassette: { blob: await env.blob.put(JSON.stringify({ failureId: "f-shape", calls: [{ method: "GET" }] })) } });
    const other = failure({ id: "f-other", cassette: { inline: { schema: "moss.cassette.v1", failureId: "someone-else", calls: [], truncated: false } } });
    const huge = failure({ id: "f-huge", cassette: { blob: { sha256: "a".repeat(64), size: 64 * 2 ** 20, contentType: "application/json" } } });
    const fake = fakeRuntime();
    const h = await harness([corrupt, wrongShape, other, huge, failure({ id: "f-fine" })], fake.runtime);
    await run(h);
    expect(fake.specs.map((s) => s.labels?.["moss.failure"])).toEqual(["f-fine"]);
    const reasons = Object.fromEntries(h.published[0]!.results.map((r) => [r.failureId, r.reason]));
    expect(reasons["f-corrupt"]).toMatch(/^could not be replayed: its cassette is corrupt: not JSON/);
    expect(reasons["f-shape"]).toMatch(/^could not be replayed: its cassette is corrupt: calls\.0\.url: /);
    expect(reasons["f-other"]).toBe("could not be replayed: its cassette belongs to failure someone-else, not to f-other");
    expect(reasons["f-huge"]).toBe(`could not be replayed: its cassette is ${64 * 2 ** 20} bytes, over the ${32 * 2 ** 20} a replay loads`);
  });

  it("replays a command agent's failure with its arguments and stdin, and judges its exit code", async () => {
    const cmd = (id: string) => failure({ id, request: undefined, invocation: { args: ["summarize", "notes.txt"], stdin: "the text" } });
    const fake = fakeRuntime((spec) => {
      const id = spec.labels?.["moss.failure"];
      const base = { timedOut: false, calls: [], logs: "", durationMs: 5, reportedFailures: [] as unknown[] };
      if (id === "c-ok") return { ...base, exitCode: 0, stdout: "a summary" };
      if (id === "c-reported") return { ...base, exitCode: 0, stdout: "", reportedFailures: [{ error: { type: "ValueError", message: "no date" } }] };
      return { ...base, exitCode: 2, stdout: "usage: summarize FILE" };
    });
    const h = await harness([cmd("c-ok"), cmd("c-exit"), cmd("c-reported")], fake.runtime);
    await run(h);
    expect(fake.specs[0]).toMatchObject({ invocation: { args: ["summarize", "notes.txt"], stdin: "the text" } });
    expect(fake.specs[0]!.request).toBeUndefined();
    const r = Object.fromEntries(h.published[0]!.results.map((x) => [x.failureId, x]));
    expect(r["c-ok"]).toMatchObject({ passed: true, reason: "exited 0: a summary", status: 0, body: "a summary" });
    expect(r["c-exit"]).toMatchObject({ passed: false, verdict: "fail", reason: "exited 2 (expected 0): usage: summarize FILE", status: 2, failed: { check: "exit", expected: "0", actual: "2" } });
    expect(r["c-reported"]).toMatchObject({ passed: false, reason: "exited 0 but reported a failure: ValueError: no date" });
  });

  it("publishes passed=false when any one failure still fails, with per-failure results", async () => {
    const events = ["f1", "f2", "f3"].map((id) => failure({ id }));
    const fake = fakeRuntime((spec) => (spec.labels?.["moss.failure"] === "f2" ? ok(500, "boom") : ok()));
    const h = await harness(events, fake.runtime);
    await run(h);
    const out = h.published[0]!;
    expect(out.passed).toBe(false);
    expect(out.results.map((r) => r.passed)).toEqual([true, false, true]);
    expect(out.results[1]).toMatchObject({ failureId: "f2", status: 500, body: "boom", timedOut: false });
    expect(out.results[1]!.reason).toContain("answered 500");
  });

  it("reports a timed-out trial as failed and timedOut", async () => {
    const fake = fakeRuntime(() => ({ timedOut: true, reportedFailures: [], calls: [], logs: "", durationMs: 1_500 }));
    const h = await harness([failure({ id: "slow", timeoutMs: 1_000 })], fake.runtime);
    await run(h);
    expect(h.published[0]!.passed).toBe(false);
    expect(h.published[0]!.results[0]).toMatchObject({ failureId: "slow", passed: false, timedOut: true });
    expect(h.published[0]!.results[0]!.reason).toContain("1500 ms");
  });

  it("runs at most `concurrency` trials at once and still replays them all", async () => {
    const events = Array.from({ length: 5 }, (_, i) => failure({ id: `c${i}` }));
    const fake = fakeRuntime(async () => {
      await sleep(30);
      return ok();
    });
    const h = await harness(events, fake.runtime);
    await run(h, { workers: 2 });
    expect(fake.maxInflight()).toBe(2);
    expect(fake.specs).toHaveLength(5);
    expect(h.published[0]!.results.map((r) => r.failureId)).toEqual(events.map((e) => e.id));
  });

  it("publishes nothing while a trial cannot be run for a reason a retry can fix (the bus retries the message)", async () => {
    const fake = fakeRuntime(() => {
      throw Object.assign(new Error("docker daemon unreachable"), { retryable: true });
    });
    const h = await harness([failure({ id: "f1" })], fake.runtime);
    await expect(run(h)).rejects.toThrow("docker daemon unreachable");
    expect(h.published).toEqual([]);
  });

  it("on the message's last delivery the attempt ends with an error verdict naming the cause, instead of a dead letter and a stuck batch", async () => {
    const fake = fakeRuntime(() => {
      throw Object.assign(new Error("docker daemon unreachable"), { retryable: true });
    });
    const h = await harness([failure({ id: "f1" }), failure({ id: "f2" })], fake.runtime);
    await run(h, { trialDelivery: Consumers.replayerTrials.maxDeliver });
    expect(h.published).toHaveLength(1);
    expect(h.published[0]!.passed).toBe(false);
    expect(h.published[0]!.results).toEqual([
      expect.objectContaining({ failureId: "f1", passed: false, verdict: "error", reason: "could not be replayed: docker daemon unreachable", failed: expect.objectContaining({ check: "trial" }) }),
      expect.objectContaining({ failureId: "f2", verdict: "error" }),
    ]);
  });

  it("a candidate image that is not on the engine is an error verdict at once, saying what happens next", async () => {
    const fake = fakeRuntime((spec) => {
      throw new ImageNotFoundError(spec.image);
    });
    const h = await harness([failure({ id: "f1" })], fake.runtime);
    await run(h);
    expect(h.published[0]!.results[0]).toMatchObject({ verdict: "error", passed: false });
    expect(h.published[0]!.results[0]!.reason).toBe("could not be replayed: image moss/chat-bot:candidate does not exist in the Docker engine: the candidate is not on this replayer's Docker engine (removed, or built on another engine); the next attempt builds it again");
  });

  it("an agent that is not configured ends the attempt with an error verdict, without running anything", async () => {
    const fake = fakeRuntime();
    const h = await harness([failure({ id: "f1" })], fake.runtime, { agent: "ghost" });
    await run(h);
    expect(fake.specs).toEqual([]);
    expect(h.published[0]!.results[0]).toMatchObject({ verdict: "error", reason: expect.stringContaining("ghost") });
  });

  it("runs each failure trialsPerFailure times: all passing is a pass, a mix is flaky with how many of how many", async () => {
    let n = 0;
    const fake = fakeRuntime((spec) => (spec.labels?.["moss.failure"] === "flip" && n++ % 2 === 1 ? ok(500, "boom") : ok()));
    const h = await harness([failure({ id: "steady" }), failure({ id: "flip" })], fake.runtime);
    await run(h, { msg: { ...h.msg, trialsPerFailure: 4 }, workers: 1 });
    expect(fake.specs).toHaveLength(8);
    const [steady, flip] = h.published[0]!.results;
    expect(steady).toMatchObject({ passed: true, verdict: "pass", trials: { passed: 4, of: 4 } });
    expect(flip).toMatchObject({ passed: false, verdict: "flaky", trials: { passed: 2, of: 4 }, reason: expect.stringMatching(/^flaky: 2 of 4 trials passed; a failing one: answered 500/) });
    expect(h.published[0]!.passed).toBe(false);
  });

  it("judges by the agent's configured expectation: a wrong total at 200 fails, naming the path", async () => {
    const cfg = parseConfig({ agents: { "chat-bot": { repo: "/r", replay: { expect: { json: [{ path: "$.total", equals: 6 }] } } } } });
    const fake = fakeRuntime(() => ok(200, '{"total":5}'));
    const h = await harness([failure({ id: "f1" })], fake.runtime);
    await run(h, { deps: { ...h.deps, agent: (name) => knownAgent(cfg, name).entry } });
    expect(h.published[0]!.results[0]).toMatchObject({ verdict: "fail", failed: { check: "json", path: "$.total", expected: "6", actual: "5" } });
  });
  it("queues one trial per failure and trial on the work queue, and replicas split them: each runs its share, one replay is published", async () => {
    const events = Array.from({ length: 6 }, (_, i) => failure({ id: `s${i}` }));
    const a = fakeRuntime(async () => (await sleep(20), ok()));
    const b = fakeRuntime(async () => (await sleep(20), ok()));
    const h = await harness(events, a.runtime);
    await replay(h.msg, h.deps);
    expect(h.trials.map((t) => [t.failureId, t.trial, t.of])).toEqual(events.map((e) => [e.id, 1, 1]));
    expect(h.published).toEqual([]);
    h.trials.splice(0);
    // Again, now drained by two replicas with an engine each.
    const h2 = await harness(events, a.runtime);
    await run(h2, { replicas: [h2.deps, { ...h2.deps, runtime: b.runtime }] });
    expect(a.specs.length).toBeGreaterThan(0);
    expect(b.specs.length).toBeGreaterThan(0);
    expect(a.specs.length + b.specs.length).toBe(6);
    expect(h2.published).toHaveLength(1);
    expect(h2.published[0]!.results.map((r) => [r.failureId, r.verdict])).toEqual(events.map((e) => [e.id, "pass"]));
  });

  it("a redelivered trial whose result is already joined runs nothing again, and the completed replay is the same message", async () => {
    const fake = fakeRuntime();
    const h = await harness([failure({ id: "r1" }), failure({ id: "r2" })], fake.runtime);
    await replay(h.msg, h.deps);
    const [t1, t2] = h.trials.splice(0);
    await replayTrial(t1!, h.deps, { deliveryCount: 1 });
    await replayTrial(t1!, h.deps, { deliveryCount: 2 });
    expect(fake.specs).toHaveLength(1);
    expect(h.published).toEqual([]);
    await replayTrial(t2!, h.deps, { deliveryCount: 1 });
    await replayTrial(t2!, h.deps, { deliveryCount: 2 });
    expect(fake.specs).toHaveLength(2);
    // Published again by the redelivery: the same dedup id, so JetStream stores it once.
    expect(h.published).toHaveLength(2);
    expect(Messages.replayCompleted.msgId(h.published[1]!)).toBe(Messages.replayCompleted.msgId(h.published[0]!));
    expect(h.published[1]).toEqual(h.published[0]);
  });

  it("a candidate whose trials cannot be queued (on its last delivery) ends the attempt with error verdicts", async () => {
    const h = await harness([failure({ id: "q1" })], fakeRuntime().runtime);
    const sent = recordingPublish();
    sent.fail(Messages.replayTrial, Object.assign(new Error("nats: timeout"), { retryable: true }));
    await expect(replay(h.msg, { ...h.deps, publish: sent.publish }, { deliveryCount: 1 })).rejects.toThrow("nats: timeout");
    await replay(h.msg, { ...h.deps, publish: sent.publish }, { deliveryCount: Consumers.replayer.maxDeliver });
    expect(sent.of(Messages.replayCompleted)[0]!.results[0]).toMatchObject({ verdict: "error", reason: "the replay could not complete: nats: timeout" });
  });

  /** A recorded success of reg-bot, kept in the harness's regression set. */
  async function recordSuccess(h: Awaited<ReturnType<typeof harness>>, id: string, route: string, message: string, answer: object, at: string) {
    const ev = SuccessEvent.parse({
      id,
      agent: "reg-bot",
      version: VERSION,
      occurredAt: at,
      route,
      request: { method: "POST", path: "/v1/chat", body: JSON.stringify({ message }) },
      response: { status: 200, body: JSON.stringify(answer) },
      cassette: { inline: { failureId: id, calls: [] } },
    });
    await h.regressions.admit(ev, await env.blob.put(JSON.stringify(ev), { contentType: "application/json" }), { size: 10 });
  }

  it("replays K of the agent's recorded successes with every candidate; one whose answer changed at a meaningful path rejects it, before → after", async () => {
    // The candidate fixes the failure, answers "sum" with the echo tool (a change at $.tool), and "hello" as before.
    const fake = fakeRuntime((spec) => {
      const msg = spec.request?.body ?? "";
      if (msg.includes("2 + 3")) return ok(200, '{"tool":"echo","answer":"you said: 2 + 3"}');
      if (msg.includes("hello")) return ok(200, '{"tool":"model","answer":"Hi there"}');
      return ok(200, '{"tool":"currency"}');
    });
    const h = await harness([failure({ id: "g1", agent: "reg-bot" })], fake.runtime, { agent: "reg-bot" });
    await recordSuccess(h, "c-calc", "calculator", "what is 2 + 3", { tool: "calculator", answer: "5" }, "2025-01-02T00:00:00.000Z");
    await recordSuccess(h, "c-calc-old", "calculator", "what is 1 + 1", { tool: "calculator", answer: "2" }, "2025-01-01T00:00:00.000Z");
    await recordSuccess(h, "c-calc-older", "calculator", "what is 4 + 4", { tool: "calculator", answer: "8" }, "2024-12-31T00:00:00.000Z");
    await recordSuccess(h, "c-hello", "model", "hello", { tool: "model", answer: "Hello!" }, "2025-01-01T00:00:00.000Z");
    await run(h);
    // K = 3, spread over routes newest first: calculator's newest, model's, then calculator's next.
    const regressionTrials = fake.specs.filter((s) => s.labels?.["moss.failure"]?.startsWith("c-")).map((s) => s.labels!["moss.failure"]);
    expect(regressionTrials.sort()).toEqual(["c-calc", "c-calc-old", "c-hello"]);
    const done = h.published[0]!;
    expect(done.results).toMatchObject([{ failureId: "g1", passed: true }]);
    expect(done.passed).toBe(false);
    const calc = done.regressions.find((r) => r.failureId === "c-calc")!;
    expect(calc).toMatchObject({ passed: false, verdict: "fail", route: "calculator", recorded: { status: 200 }, status: 200, changes: [{ check: "json", path: "$.tool", before: '"calculator"', after: '"echo"' }] });
    // $.answer changed too, but only $.tool is named as meaningful; the greeting's answer changed and does not count.
    expect(done.regressions.find((r) => r.failureId === "c-hello")).toMatchObject({ passed: true, verdict: "pass" });
    expect(replayVerdict(done)).toEqual({ verdict: "replay-regressed", reason: expect.stringContaining('changes 2 of 3 recorded success(es): POST /v1/chat {"message":"what is 2 + 3"} (calculator): $.tool "calculator" → "echo"') });
  });

  it("a candidate that keeps every recorded success passes; one that cannot replay a case says so without rejecting the candidate", async () => {
    const fake = fakeRuntime(() => ok(200, '{"tool":"calculator","answer":"5"}'));
    const h = await harness([failure({ id: "k1", agent: "reg-bot" })], fake.runtime, { agent: "reg-bot" });
    await recordSuccess(h, "k-calc", "calculator", "what is 2 + 3", { tool: "calculator", answer: "5" }, "2025-01-02T00:00:00.000Z");
    // A case whose stored event is not a success.v1: bad evidence, an error verdict, never a rejection.
    const bad = SuccessEvent.parse({ id: "k-bad", agent: "reg-bot", version: VERSION, occurredAt: "2025-01-03T00:00:00.000Z", route: "other", request: { path: "/v1/x" }, response: { status: 200 } });
    await h.regressions.admit(bad, await env.blob.put('{"schema":"moss.success.v1","id":"k-bad"}', { contentType: "application/json" }), { size: 10 });
    await run(h);
    const done = h.published[0]!;
    expect(done.passed).toBe(true);
    expect(done.regressions.map((r) => [r.failureId, r.verdict])).toEqual([
      ["k-bad", "error"],
      ["k-calc", "pass"],
    ]);
    expect(done.regressions[0]!.reason).toMatch(/^could not be replayed: its stored event does not match success.v1/);
  });

  it("an agent with no regression set, or K = 0, replays only its failures", async () => {
    const fake = fakeRuntime();
    const h = await harness([failure({ id: "n1" })], fake.runtime);
    await run(h);
    expect(h.published[0]!.regressions).toEqual([]);
    expect(fake.specs).toHaveLength(1);
  });
});
