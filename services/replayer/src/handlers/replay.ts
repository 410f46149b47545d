/** The replayer's message handler: every failure of a candidate's batch, replayed in its own ephemeral trial. */
import { caseOf, chooseCases, type BatchStore, type RegressionStore } from "@moss/batch";
import type { BlobStore } from "@moss/blob";
import { isCredentialVariable, isLoaderVariable, type AgentConfig } from "@moss/config";
import { onLiveNetwork } from "@moss/lifecycle";
import { kvGet, kvUpdate, type HandlerContext, type KV } from "@moss/bus";
import { Buckets, CandidateReady, Cassette, Consumers, FailureEvent, Messages, regressed, ReplayJoin, SuccessEvent, type BlobRef, type Publish, type RegressionCase, type RegressionResult, type ReplayResult, type ReplayTrial } from "@moss/contracts";
import { Codes, errorCode, isTerminal } from "@moss/errors";
import type { Runtime, TrialResult, TrialSpec } from "@moss/runtime";
import type { Logger } from "@moss/telemetry";
import { UnreplayableError } from "../errors";
import { combineTrials, compareOutcome, judge, resolveExpectation, type Grade, type Verdict } from "../verdict";

/** What the replayer runs trials with: the runtime's trial. */
export type TrialPort = Pick<Runtime, "runTrial"> & Partial<Pick<Runtime, "warmTrials">>;

/** What the replayer needs of an agent: the port it listens on, its env, its state directory, and how it is replayed. */
export type ReplayAgent = Pick<AgentConfig, "port" | "env" | "stateDir" | "replay"> & Partial<Pick<AgentConfig, "regressions" | "serve">>;

export interface ReplayerDeps {
  /** The agent's trial settings; throws UnknownAgentError for an agent the config does not name. */
  agent(name: string): ReplayAgent;
  blob: BlobStore;
  runtime: TrialPort;
  batches: BatchStore;
  /** The join records of candidates being replayed (bucket `moss_replays`). */
  replays: KV;
  /** The agents' regression sets (bucket `moss_regressions`): recorded successes every candidate also replays. */
  regressions?: Pick<RegressionStore, "get">;
  publish: Publish;
  log: Logger;
  /** Runs a grader command (default: as a process); tests pass their own. */
  grade?: Grade;
}

/** Replay timeout is the failure's own timeout times this. */
export const REPLAY_TIMEOUT_FACTOR = 1.5;

/**
 * A candidate to replay: one message per trial of each of its failures, and one per recorded success chosen from the
 * agent's regression set, on the replayers' work queue (any replica takes each), and the join record their results
 * gather in. The replica whose result completes the join publishes `replay.completed`.
 */
export async function replay(msg: CandidateReady, deps: ReplayerDeps, ctx?: Pick<HandlerContext, "deliveryCount">): Promise<void> {
  // The last delivery (or an error no retry can fix) ends the attempt with an `error` verdict rather than a dead
  // letter: a batch never waits in `replaying` for a replay that will not come.
  const lastDelivery = (ctx?.deliveryCount ?? 1) >= Consumers.replayer.maxDeliver;
  try {
    const agent = deps.agent(msg.agent);
    await deps.batches.transition(msg.batchId, "replaying");
    const candidate = await deps.blob.put(JSON.stringify(msg), { contentType: "application/json" });
    // Which recorded successes this candidate must keep is decided once, here: a redelivery reuses the join's choice.
    const set = agent.regressions && agent.regressions.replay > 0 ? await deps.regressions?.get(msg.agent) : undefined;
    const chosen = set ? chooseCases(set.cases, agent.regressions!.replay) : [];
    const join = (await kvUpdate(deps.replays, joinKey(msg), ReplayJoin, (cur) => cur ?? emptyJoin(msg, chosen), Buckets.replays))!.value;
    // Each failure is replayed trialsPerFailure times (the depth tier's flakiness guard): all must pass.
    const trials = msg.failures.flatMap((ref) => Array.from({ length: msg.trialsPerFailure }, (_, i) => ({ ref, trial: i + 1 })));
    const base = { batchId: msg.batchId, agent: msg.agent, attempt: msg.attempt, candidate };
    await Promise.all([
      ...trials.map(({ ref, trial }) => deps.publish(Messages.replayTrial, { ...base, failureId: ref.id, trial, of: msg.trialsPerFailure })),
      ...join.cases.map((c) => deps.publish(Messages.replayTrial, { ...base, kind: "regression", failureId: c.id, trial: 1, of: 1 })),
    ]);
    deps.log.info("replay queued", { batch: msg.batchId, attempt: msg.attempt, failures: msg.failures.length, trials: trials.length, regressions: join.cases.length });
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
  if (m.kind === "regression") return regressionTrial(m, msg, deps, lastDelivery);
  const key = joinKey(m);
  const slot = resultKey(m.failureId, m.trial);
  // A redelivery of a trial whose result is already joined runs nothing again.
  let result = (await kvGet(deps.replays, key, ReplayJoin))?.value.results[slot];
  if (!result) {
    try {
      const ref = msg.failures.find((f) => f.id === m.failureId);
      if (!ref) throw new UnreplayableError(`failure ${m.failureId} is not one of batch ${m.batchId}'s`);
      result = await replayOne(ref.event, candidateTarget(msg), deps.agent(msg.agent), deps);
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
  await addToJoin(msg, deps, (j) => (j.results[slot] ? j : { ...j, results: { ...j.results, [slot]: trialResult } }));
}

/**
 * One recorded success replayed against the candidate: its outcome (status class, the config's meaningful JSON paths)
 * compared with what it answered when recorded; joined under its case id.
 */
async function regressionTrial(m: ReplayTrial, msg: CandidateReady, deps: ReplayerDeps, lastDelivery: boolean): Promise<void> {
  const key = joinKey(m);
  const join = (await kvGet(deps.replays, key, ReplayJoin))?.value;
  const c = join?.cases.find((x) => x.id === m.failureId);
  let result = join?.regressions[m.failureId];
  if (!result) {
    try {
      if (!c) throw new UnreplayableError(`recorded success ${m.failureId} is not one this candidate was to be replayed on`);
      result = await replayCase(c, candidateTarget(msg), deps.agent(msg.agent), deps);
    } catch (err) {
      if (!isTerminal(err) && !lastDelivery) throw err;
      deps.log.warn("a recorded success could not be replayed", { batch: m.batchId, case: m.failureId, err: (err as Error).message });
      result = regressionErrorResult(m.failureId, `could not be replayed: ${withRemedy(err)}`, c);
    }
  }
  const done = result;
  await addToJoin(msg, deps, (j) => (j.regressions[m.failureId] ? j : { ...j, regressions: { ...j.regressions, [m.failureId]: done } }));
}

/** A trial's result into the candidate's join record (a slot already filled stays as it is); the replay is published once complete. */
async function addToJoin(msg: CandidateReady, deps: ReplayerDeps, add: (join: ReplayJoin) => ReplayJoin): Promise<void> {
  const joined = await kvUpdate(deps.replays, joinKey(msg), ReplayJoin, (cur) => add(cur ?? emptyJoin(msg)), Buckets.replays, 100);
  await completeIfJoined(joined!.value, msg, deps);
}

/** Once every trial's result is in: the candidate's replay, published (whoever sees it complete; the dedup id makes a second publish one). */
async function completeIfJoined(join: ReplayJoin, msg: CandidateReady, deps: ReplayerDeps): Promise<void> {
  if (Object.keys(join.results).length + Object.keys(join.regressions).length < join.expected) return;
  const results = msg.failures.map((ref) =>
    combineTrials(
      Array.from({ length: msg.trialsPerFailure }, (_, i) => join.results[resultKey(ref.id, i + 1)]).filter((r): r is ReplayResult => r !== undefined),
    ),
  );
  const regressions = join.cases.map((c) => join.regressions[c.id]).filter((r): r is RegressionResult => r !== undefined);
  await publishCompleted(msg, results, deps, regressions);
  const changed = regressed(regressions).length;
  deps.log.info("replay finished", { batch: msg.batchId, attempt: msg.attempt, passed: results.every((r) => r.passed) && !changed, fixed: results.filter((r) => r.passed).length, of: results.length, verdicts: results.map((r) => r.verdict).join(","), regressions: regressions.length, changed });
}

/**
 * The candidate's replay, one result per failure and one per recorded success: passed when every failure passed and
 * no recorded success changed (one that could not be replayed says nothing about the candidate and does not count).
 */
function publishCompleted(msg: CandidateReady, results: ReplayResult[], deps: Pick<ReplayerDeps, "publish">, regressions: RegressionResult[] = []): Promise<unknown> {
  return deps.publish(Messages.replayCompleted, { ...msg, passed: results.every((r) => r.passed) && regressed(regressions).length === 0, results, regressions });
}

/** A failure whose replay could not run: says nothing about the candidate; the reason says what to do. */
export function errorResult(failureId: string, reason: string): ReplayResult {
  return { failureId, passed: false, verdict: "error", reason, failed: { check: "trial", expected: "a trial that runs", actual: reason }, durationMs: 0, timedOut: false };
}

/** A recorded success whose replay could not run (its case, when known, says what it was). */
export function regressionErrorResult(id: string, reason: string, c?: Pick<RegressionCase, "route" | "input" | "status">): RegressionResult {
  return { ...errorResult(id, reason), route: c?.route ?? "?", input: c?.input ?? "?", recorded: { status: c?.status ?? 0 }, changes: [] };
}

/** The join record's key: one per candidate. */
const joinKey = (m: { batchId: string; attempt: number }) => `${m.batchId}.${m.attempt}`;
/** Where a trial's result sits in the join record. */
const resultKey = (failureId: string, trial: number) => `${failureId}.${trial}`;
/** A candidate's join record before any trial came back. */
const emptyJoin = (msg: CandidateReady, cases: RegressionCase[] = []): ReplayJoin => ({
  batchId: msg.batchId,
  attempt: msg.attempt,
  expected: msg.failures.length * msg.trialsPerFailure + cases.length,
  results: {},
  cases,
  regressions: {},
});

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
 * credential or address: a trial reports to a file. Behind the gateway the live agent's loopback URLs say `moss-host`,
 * and so do its trial's: a recorded call is asked for again at the address it was recorded at.
 */
export function replayEnv(agent: ReplayAgent, name: string, recorded: Record<string, string>, version: string): Record<string, string> {
  const env: Record<string, string> = agent.serve === "gateway" ? onLiveNetwork(agent.env).env : { ...agent.env };
  for (const name of agent.replay.envAllow) {
    const v = recorded[name];
    if (v !== undefined && !isLoaderVariable(name) && !isCredentialVariable(name)) env[name] = v;
  }
  return { ...env, AGENT_NAME: name, MOSS_AGENT_VERSION: version };
}

/** The version a trial runs: the agent, its image and commit, and the labels its pod carries (the batch, or the request). */
export type Target = Pick<CandidateReady, "agent" | "image" | "commit"> & { labels: Record<string, string> };

/** A candidate as a trial's target. */
const candidateTarget = (msg: CandidateReady): Target => ({ agent: msg.agent, image: msg.image, commit: msg.commit, labels: { "moss.batch": msg.batchId } });

export async function replayOne(eventRef: BlobRef, msg: Target, agent: ReplayAgent, deps: Pick<ReplayerDeps, "blob" | "runtime" | "grade">): Promise<ReplayResult> {
  const ev = await loadEvent(eventRef, FailureEvent, "failure.v1", deps.blob);
  const { trial, timeoutMs, logs } = await runTurn(ev, msg, agent, deps);
  return resultOf(ev, await judge(ev, trial, timeoutMs, resolveExpectation(agent.replay.expect, ev), deps.grade), trial, logs);
}

/** A recorded success of the agent's regression set, replayed against the candidate and compared with its recording. */
export async function replayCase(c: RegressionCase | { id: string; event: BlobRef; route?: string; input?: string }, msg: Target, agent: ReplayAgent, deps: Pick<ReplayerDeps, "blob" | "runtime">): Promise<RegressionResult> {
  const ev = await loadEvent(c.event, SuccessEvent, "success.v1", deps.blob);
  const { trial, timeoutMs, logs } = await runTurn(ev, msg, agent, deps);
  const cmp = compareOutcome(ev.response, trial, timeoutMs, agent.regressions?.paths ?? [], Boolean(ev.invocation));
  return {
    ...resultOf(ev, cmp, trial, logs),
    route: c.route ?? caseOf(ev, c.event).route,
    input: c.input ?? caseOf(ev, c.event).input,
    recorded: { status: ev.response.status, ...(ev.response.body !== undefined ? { body: ev.response.body.slice(0, 4_000) } : {}) },
    changes: cmp.changes,
  };
}

/** A trial's result: its verdict, and what it answered. */
function resultOf(ev: TurnEvent, v: Verdict, trial: TrialResult, logs: BlobRef): ReplayResult {
  return {
    failureId: ev.id,
    passed: v.passed,
    verdict: v.verdict,
    reason: v.reason,
    ...(v.failed ? { failed: v.failed } : {}),
    logs,
    status: ev.invocation ? trial.exitCode : trial.response?.status,
    body: (ev.invocation ? trial.stdout : trial.response?.body)?.slice(0, 4_000),
    durationMs: trial.durationMs,
    timedOut: trial.timedOut,
    ...(trial.diverged ? { diverged: trial.diverged } : {}),
    calls: trial.calls,
  };
}

/** A failure or a recorded success: what a trial replays. */
type TurnEvent = FailureEvent | SuccessEvent;

/** A stored event, validated: one that does not parse is bad evidence (terminal). */
async function loadEvent<S extends typeof FailureEvent | typeof SuccessEvent>(ref: BlobRef, schema: S, name: string, blob: BlobStore): Promise<ReturnType<S["parse"]>> {
  let raw: unknown;
  try {
    raw = JSON.parse((await blob.get(ref.sha256)).toString("utf8"));
  } catch (err) {
    if (!(err instanceof SyntaxError)) throw err;
    throw new UnreplayableError(`its stored event is not JSON (${err.message})`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new UnreplayableError(`its stored event does not match ${name}: ${parsed.error.issues[0]?.message ?? "invalid"}`);
  return parsed.data as ReturnType<S["parse"]>;
}

/** One turn replayed in its own pod: its request, its before-turn state, its cassette, its clock and seed. */
async function runTurn(ev: TurnEvent, msg: Target, agent: ReplayAgent, deps: Pick<ReplayerDeps, "blob" | "runtime">): Promise<{ trial: TrialResult; timeoutMs: number; logs: BlobRef }> {
  let snapshot: { path: string; tar: Buffer } | undefined;
  if (ev.snapshot) {
    // Restored into the directory the agent's config names; where the event says it came from is not a choice.
    if (!agent.stateDir) throw new UnreplayableError(`the failure has a state snapshot but agents.${msg.agent}.stateDir is not set: set it to the agent's state directory`);
    snapshot = { path: agent.stateDir, tar: ev.snapshot.blob ? await deps.blob.get(ev.snapshot.blob.sha256) : Buffer.from(ev.snapshot.inlineBase64 ?? "", "base64") };
  }
  const cassette = await loadCassette(ev, deps.blob);
  const timeoutMs = Math.round(ev.timeoutMs * REPLAY_TIMEOUT_FACTOR);
  const spec: TrialSpec = {
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
    labels: { ...msg.labels, "moss.failure": ev.id },
  };
  // The trials of a batch come one after another to a replica: a pod for the next one is made while this one runs.
  void deps.runtime.warmTrials?.(spec).catch(() => undefined);
  const trial = await deps.runtime.runTrial(spec);
  const logs = await deps.blob.put(trial.logs, { contentType: "text/plain" });
  return { trial, timeoutMs, logs };
}

/** Most bytes of a cassette a replay loads. */
export const MAX_CASSETTE_BYTES = 32 * 2 ** 20;

/** The failure's cassette, checked: it parses, it is not too big, and it is this failure's. Bad evidence is terminal. */
async function loadCassette(ev: TurnEvent, blob: BlobStore): Promise<Cassette | undefined> {
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
function turnEnv(ev: TurnEvent): Record<string, string> {
  return ev.turn ? { MOSS_REPLAY_TIME: ev.turn.startedAt, MOSS_REPLAY_SEED: String(ev.turn.seed) } : {};
}

/** Hop-by-hop and framing headers belong to the original connection, not to the request being replayed. */
const HOP_BY_HOP = new Set(["host", "connection", "keep-alive", "content-length", "transfer-encoding", "upgrade", "proxy-connection", "te", "trailer"]);
function endToEnd(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([k]) => !HOP_BY_HOP.has(k.toLowerCase())));
}

