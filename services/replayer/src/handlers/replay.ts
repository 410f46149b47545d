/** The replayer's message handler: every failure of a candidate's batch, replayed in its own ephemeral trial. */
import type { BatchStore } from "@moss/batch";
import type { BlobStore } from "@moss/blob";
import { isCredentialVariable, isLoaderVariable, type AgentConfig } from "@moss/config";
import type { HandlerContext } from "@moss/bus";
import { Cassette, Consumers, FailureEvent, Messages, type BlobRef, type CandidateReady, type Publish, type ReplayResult } from "@moss/contracts";
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
  concurrency: number;
  blob: BlobStore;
  runtime: TrialPort;
  batches: BatchStore;
  publish: Publish;
  log: Logger;
  /** Runs a grader command (default: as a process); tests pass their own. */
  grade?: Grade;
}

/** Replay timeout is the failure's own timeout times this. */
export const REPLAY_TIMEOUT_FACTOR = 1.5;

/** Replays every failure of the batch against the candidate, each in its own ephemeral pod. */
export async function replay(msg: CandidateReady, deps: ReplayerDeps, ctx?: Pick<HandlerContext, "deliveryCount">): Promise<void> {
  // The last delivery (or an error no retry can fix) ends the attempt with an `error` verdict rather than a dead
  // letter: a batch never waits in `replaying` for a replay that will not come.
  const lastDelivery = (ctx?.deliveryCount ?? 1) >= Consumers.replayer.maxDeliver;
  try {
    await replayBatch(msg, deps, lastDelivery);
  } catch (err) {
    if (!isTerminal(err) && !lastDelivery) throw err;
    const why = `the replay could not complete: ${(err as Error).message}`;
    deps.log.error("replay could not complete; the attempt ends with an error verdict", { batch: msg.batchId, attempt: msg.attempt, err: (err as Error).message });
    const results = msg.failures.map((ref): ReplayResult => errorResult(ref.id, why));
    const { failures, ...rest } = msg;
    await deps.publish(Messages.replayCompleted, { ...rest, failures, passed: false, results });
  }
}

/** A failure whose replay could not run: says nothing about the candidate; the reason says what to do. */
function errorResult(failureId: string, reason: string): ReplayResult {
  return { failureId, passed: false, verdict: "error", reason, failed: { check: "trial", expected: "a trial that runs", actual: reason }, durationMs: 0, timedOut: false };
}

async function replayBatch(msg: CandidateReady, deps: ReplayerDeps, lastDelivery: boolean): Promise<void> {
  const agent = deps.agent(msg.agent);
  await deps.batches.transition(msg.batchId, "replaying");
  // Each failure is replayed trialsPerFailure times (the depth tier's flakiness guard): all must pass.
  const trials = msg.failures.flatMap((ref) => Array.from({ length: msg.trialsPerFailure }, (_, i) => ({ ref, trial: i + 1 })));
  const runs = await mapLimit(trials, deps.concurrency, async ({ ref }): Promise<ReplayResult> => {
    try {
      return await replayOne(ref.event, msg, agent, deps);
    } catch (err) {
      // A failure that cannot be replayed (its evidence is bad, the image is gone) is an `error` verdict with the
      // reason; it never holds up the batch. An error retrying can fix (the engine or the blob store away) retries
      // the message, up to its last delivery.
      if (!isTerminal(err) && !lastDelivery) throw err;
      deps.log.warn("a failure could not be replayed", { batch: msg.batchId, failure: ref.id, err: (err as Error).message });
      return errorResult(ref.id, `could not be replayed: ${withRemedy(err)}`);
    }
  });
  const results = msg.failures.map((ref) => combineTrials(runs.filter((r) => r.failureId === ref.id)));
  const passed = results.every((r) => r.passed);
  const { failures, ...rest } = msg;
  await deps.publish(Messages.replayCompleted, { ...rest, failures, commit: msg.commit, image: msg.image, diff: msg.diff, passed, results });
  deps.log.info("replay finished", { batch: msg.batchId, attempt: msg.attempt, passed, fixed: results.filter((r) => r.passed).length, of: results.length, verdicts: results.map((r) => r.verdict).join(",") });
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

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
