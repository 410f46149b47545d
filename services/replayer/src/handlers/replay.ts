/** The replayer's message handler: every failure of a candidate's batch, replayed in its own ephemeral trial. */
import type { BatchStore } from "@moss/batch";
import type { BlobStore } from "@moss/blob";
import { isCredentialVariable, isLoaderVariable, type AgentConfig } from "@moss/config";
import { kvGet, kvUpdate, type HandlerContext, type KV } from "@moss/bus";
import { Buckets, CandidateReady, Cassette, Consumers, FailureEvent, Messages, ReplayJoin, type BlobRef, type Publish, type ReplayResult, type ReplayTrial } from "@moss/contracts";
import { Codes, errorCode, isTerminal } from "@moss/errors";
import type { Runtime } from "@moss/runtime";
import type { Logger } from "@moss/telemetry";
import { UnreplayableError } from "../errors";
import { combineTrials, judge, resolveExpectation, type Grade } from "../verdict";

/** What the replayer runs trials with: the runtime's trial. */
export type TrialPort = Pick<Runtime, "runTrial">;

/** What the replayer needs of an agent: the port it listens on, its env, its state directory, and how it is replayed. */
export type ReplayAgent = Pick<AgentConfig, "port" | "env" | "stateDir" | "replay">;

export interface ReplayerDeps {
  /** The agent's trial settings; throws UnknownAgentError for an agent the config does not name. */
  agent(name: string): ReplayAgent;
  blob: BlobStore;
  runtime: TrialPort;
  batches: BatchStore;
  /** The join records of candidates being replayed (bucket `moss_replays`). */
  replays: KV;
  publish: Publish;
  log: Logger;
  /** Runs a grader command (default: as a process); tests pass their own. */
  grade?: Grade;
}

/** Replay timeout is the failure's own timeout times this. */
export const REPLAY_TIMEOUT_FACTOR = 1.5;

/**
 * A candidate to replay: one message per trial of each of its failures on the replayers' work queue (any replica takes
 * each), and the join record their results gather in. The replica whose result completes the join publishes
 * `replay.completed`.
 */
export async function replay(msg: CandidateReady, deps: ReplayerDeps, ctx?: Pick<HandlerContext, "deliveryCount">): Promise<void> {
  // The last delivery (or an error no retry can fix) ends the attempt with an `error` verdict rather than a dead
  // letter: a batch never waits in `replaying` for a replay that will not come.
  const lastDelivery = (ctx?.deliveryCount ?? 1) >= Consumers.replayer.maxDeliver;
  try {
    deps.agent(msg.agent);
    await deps.batches.transition(msg.batchId, "replaying");
    const candidate = await deps.blob.put(JSON.stringify(msg), { contentType: "application/json" });
    await kvUpdate(deps.replays, joinKey(msg), ReplayJoin, (cur) => cur ?? emptyJoin(msg), Buckets.replays);
    // Each failure is replayed trialsPerFailure times (the depth tier's flakiness guard): all must pass.
    const trials = msg.failures.flatMap((ref) => Array.from({ length: msg.trialsPerFailure }, (_, i) => ({ ref, trial: i + 1 })));
    await Promise.all(
      trials.map(({ ref, trial }) =>
        deps.publish(Messages.replayTrial, { batchId: msg.batchId, agent: msg.agent, attempt: msg.attempt, candidate, failureId: ref.id, trial, of: msg.trialsPerFailure }),
      ),
    );
    deps.log.info("replay queued", { batch: msg.batchId, attempt: msg.attempt, failures: msg.failures.length, trials: trials.length });
  } catch (err) {
    if (!isTerminal(err) && !lastDelivery) throw err;
    const why = `the replay could not complete: ${(err as Error).message}`;
    deps.log.error("replay could not complete; the attempt ends with an error verdict", { batch: msg.batchId, attempt: msg.attempt, err: (err as Error).message });
    await publishCompleted(msg, msg.failures.map((ref): ReplayResult => errorResult(ref.id, why)), deps);
  }
}

/**
 * One trial of one failure, from the work queue: replayed in its own pod, its result joined with the others', and the
 * whole replay published once every trial is in. A trial that cannot run (or whose last delivery this is) joins as an
 * `error` verdict, so the join always completes.
 */
export async function replayTrial(m: ReplayTrial, deps: ReplayerDeps, ctx?: Pick<HandlerContext, "deliveryCount">): Promise<void> {
  const lastDelivery = (ctx?.deliveryCount ?? 1) >= Consumers.replayerTrials.maxDeliver;
  const msg = await candidateOf(m.candidate, deps);
  const key = joinKey(m);
  const slot = resultKey(m.failureId, m.trial);
  // A redelivery of a trial whose result is already joined runs nothing again.
  let result = (await kvGet(deps.replays, key, ReplayJoin))?.value.results[slot];
  if (!result) {
    try {
      const ref = msg.failures.find((f) => f.id === m.failureId);
      if (!ref) throw new UnreplayableError(`failure ${m.failureId} is not one of batch ${m.batchId}'s`);
      result = await replayOne(ref.event, msg, deps.agent(msg.agent), deps);
    } catch (err) {
      // A failure that cannot be replayed (its evidence is bad, the image is gone) is an `error` verdict with the
      // reason; it never holds up the batch. An error retrying can fix (the engine or the blob store away) retries
      // the message, up to its last delivery.
      if (!isTerminal(err) && !lastDelivery) throw err;
      deps.log.warn("a failure could not be replayed", { batch: m.batchId, failure: m.failureId, err: (err as Error).message });
      result = errorResult(m.failureId, `could not be replayed: ${withRemedy(err)}`);
    }
  }
  const trialResult = result;
  const joined = await kvUpdate(
    deps.replays,
    key,
    ReplayJoin,
    (cur) => {
      const base = cur ?? emptyJoin(msg);
      return base.results[slot] ? base : { ...base, results: { ...base.results, [slot]: trialResult } };
    },
    Buckets.replays,
    100,
  );
  const join = joined!.value;
  if (Object.keys(join.results).length < join.expected) return;
  // Complete: whoever sees it so publishes; the message's dedup id makes a second publish (a redelivery, a race) one.
  const results = msg.failures.map((ref) =>
    combineTrials(
      Array.from({ length: msg.trialsPerFailure }, (_, i) => join.results[resultKey(ref.id, i + 1)]).filter((r): r is ReplayResult => r !== undefined),
    ),
  );
  await publishCompleted(msg, results, deps);
  deps.log.info("replay finished", { batch: msg.batchId, attempt: msg.attempt, passed: results.every((r) => r.passed), fixed: results.filter((r) => r.passed).length, of: results.length, verdicts: results.map((r) => r.verdict).join(",") });
}

/** The candidate's replay, one result per failure: passed when every one passed. */
function publishCompleted(msg: CandidateReady, results: ReplayResult[], deps: Pick<ReplayerDeps, "publish">): Promise<unknown> {
  return deps.publish(Messages.replayCompleted, { ...msg, passed: results.every((r) => r.passed), results });
}

/** A failure whose replay could not run: says nothing about the candidate; the reason says what to do. */
function errorResult(failureId: string, reason: string): ReplayResult {
  return { failureId, passed: false, verdict: "error", reason, failed: { check: "trial", expected: "a trial that runs", actual: reason }, durationMs: 0, timedOut: false };
}

/** The join record's key: one per candidate. */
const joinKey = (m: { batchId: string; attempt: number }) => `${m.batchId}.${m.attempt}`;
/** Where a trial's result sits in the join record. */
const resultKey = (failureId: string, trial: number) => `${failureId}.${trial}`;
/** A candidate's join record before any trial came back. */
const emptyJoin = (msg: CandidateReady): ReplayJoin => ({ batchId: msg.batchId, attempt: msg.attempt, expected: msg.failures.length * msg.trialsPerFailure, results: {} });

/** Candidates by blob, as trials read them: a replica runs many trials of one candidate. */
const candidates = new Map<string, Promise<CandidateReady>>();
function candidateOf(ref: BlobRef, deps: Pick<ReplayerDeps, "blob">): Promise<CandidateReady> {
  let p = candidates.get(ref.sha256);
  if (!p) {
    p = deps.blob.get(ref.sha256).then((b) => CandidateReady.parse(JSON.parse(b.toString("utf8"))));
    p.catch(() => candidates.delete(ref.sha256));
    candidates.set(ref.sha256, p);
    // A few candidates at a time are replayed; keep the newest.
    for (const k of candidates.keys()) if (candidates.size > 32) candidates.delete(k);
  }
  return p;
}

/** An error's message, with what to do where the replayer knows better than the error. */
function withRemedy(err: unknown): string {
  const m = (err as Error).message;
  if (errorCode(err) === Codes.IMAGE_NOT_FOUND.code) return `${m.replace(/: build it first.*$/, "")}: the candidate is not on this replayer's Docker engine (removed, or built on another engine); the next attempt builds it again`;
  return m;
}

/**
 * The env of a replay: the agent's own, plus what the failure recorded of the variables its config allows (never a
 * loader variable), and the identity the live container gets (AGENT_NAME, MOSS_AGENT_VERSION) — never its bus
 * credential or address: a trial reports to a file.
 */
export function replayEnv(agent: ReplayAgent, name: string, recorded: Record<string, string>, version: string): Record<string, string> {
  const env: Record<string, string> = { ...agent.env };
  for (const name of agent.replay.envAllow) {
    const v = recorded[name];
    if (v !== undefined && !isLoaderVariable(name) && !isCredentialVariable(name)) env[name] = v;
  }
  return { ...env, AGENT_NAME: name, MOSS_AGENT_VERSION: version };
}

async function replayOne(eventRef: BlobRef, msg: CandidateReady, agent: ReplayAgent, deps: ReplayerDeps): Promise<ReplayResult> {
  const parsed = FailureEvent.safeParse(JSON.parse((await deps.blob.get(eventRef.sha256)).toString("utf8")));
  if (!parsed.success) throw new UnreplayableError(`its stored event does not match failure.v1: ${parsed.error.issues[0]?.message ?? "invalid"}`);
  const ev = parsed.data;
  let snapshot: { path: string; tar: Buffer } | undefined;
  if (ev.snapshot) {
    // Restored into the directory the agent's config names; where the event says it came from is not a choice.
    if (!agent.stateDir) throw new UnreplayableError(`the failure has a state snapshot but agents.${msg.agent}.stateDir is not set: set it to the agent's state directory`);
    snapshot = { path: agent.stateDir, tar: ev.snapshot.blob ? await deps.blob.get(ev.snapshot.blob.sha256) : Buffer.from(ev.snapshot.inlineBase64 ?? "", "base64") };
  }
  const cassette = await loadCassette(ev, deps.blob);
  const timeoutMs = Math.round(ev.timeoutMs * REPLAY_TIMEOUT_FACTOR);
  const trial = await deps.runtime.runTrial({
    image: msg.image,
    ...(ev.request
      ? { request: { method: ev.request.method, path: ev.request.path, headers: endToEnd(ev.request.headers), body: ev.request.body } }
      : { invocation: { args: ev.invocation!.args, ...(ev.invocation!.stdin !== undefined ? { stdin: ev.invocation!.stdin } : {}) } }),
    port: agent.port,
    env: { ...replayEnv(agent, msg.agent, ev.env, msg.commit), ...turnEnv(ev) },
    timeoutMs,
    ...(agent.stateDir ? { stateDir: agent.stateDir } : {}),
    snapshot,
    network: agent.replay.network,
    ...(cassette ? { cassette: { calls: cassette.calls } } : {}),
    ...(agent.replay.forward.length ? { forward: agent.replay.forward } : {}),
    labels: { "moss.batch": msg.batchId, "moss.failure": ev.id },
  });
  const logs = await deps.blob.put(trial.logs, { contentType: "text/plain" });
  const verdict = await judge(ev, trial, timeoutMs, resolveExpectation(agent.replay.expect, ev), deps.grade);
  return {
    failureId: ev.id,
    passed: verdict.passed,
    verdict: verdict.verdict,
    reason: verdict.reason,
    ...(verdict.failed ? { failed: verdict.failed } : {}),
    status: ev.invocation ? trial.exitCode : trial.response?.status,
    body: (ev.invocation ? trial.stdout : trial.response?.body)?.slice(0, 4_000),
    durationMs: trial.durationMs,
    timedOut: trial.timedOut,
    ...(trial.diverged ? { diverged: trial.diverged } : {}),
    calls: trial.calls,
    logs,
  };
}

/** Most bytes of a cassette a replay loads. */
export const MAX_CASSETTE_BYTES = 32 * 2 ** 20;

/** The failure's cassette, checked: it parses, it is not too big, and it is this failure's. Bad evidence is terminal. */
async function loadCassette(ev: FailureEvent, blob: BlobStore): Promise<Cassette | undefined> {
  if (!ev.cassette) return undefined;
  let raw: unknown = ev.cassette.inline;
  if (ev.cassette.blob) {
    const ref = ev.cassette.blob;
    if (ref.size > MAX_CASSETTE_BYTES) throw new UnreplayableError(`its cassette is ${ref.size} bytes, over the ${MAX_CASSETTE_BYTES} a replay loads`);
    const bytes = await blob.get(ref.sha256);
    if (bytes.length > MAX_CASSETTE_BYTES) throw new UnreplayableError(`its cassette is ${bytes.length} bytes, over the ${MAX_CASSETTE_BYTES} a replay loads`);
    try {
      raw = JSON.parse(bytes.toString("utf8"));
    } catch (err) {
      throw new UnreplayableError(`its cassette is corrupt: not JSON (${(err as Error).message})`);
    }
  }
  const c = Cassette.safeParse(raw);
  if (!c.success) {
    const i = c.error.issues[0];
    throw new UnreplayableError(`its cassette is corrupt: ${i?.path.join(".") || "(root)"}: ${i?.message ?? "invalid"}`);
  }
  if (c.data.failureId !== ev.id) throw new UnreplayableError(`its cassette belongs to failure ${c.data.failureId}, not to ${ev.id}`);
  return c.data;
}

/** The turn's clock and seed, for the SDKs' now() and random() in the trial. */
function turnEnv(ev: FailureEvent): Record<string, string> {
  return ev.turn ? { MOSS_REPLAY_TIME: ev.turn.startedAt, MOSS_REPLAY_SEED: String(ev.turn.seed) } : {};
}

/** Hop-by-hop and framing headers belong to the original connection, not to the request being replayed. */
const HOP_BY_HOP = new Set(["host", "connection", "keep-alive", "content-length", "transfer-encoding", "upgrade", "proxy-connection", "te", "trailer"]);
function endToEnd(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([k]) => !HOP_BY_HOP.has(k.toLowerCase())));
}

