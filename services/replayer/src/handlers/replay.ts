/** The replayer's message handler: every failure of a candidate's batch, replayed in its own ephemeral trial. */
import type { BatchStore } from "@moss/batch";
import type { BlobStore } from "@moss/blob";
import { isCredentialVariable, isLoaderVariable, type AgentConfig } from "@moss/config";
import { Cassette, Expectation, FailureEvent, Messages, type BlobRef, type CandidateReady, type Publish, type ReplayResult } from "@moss/contracts";
import { isTerminal } from "@moss/errors";
import type { Runtime, TrialResult } from "@moss/runtime";
import type { Logger } from "@moss/telemetry";
import { UnreplayableError } from "../errors";

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
}

/** Replay timeout is the failure's own timeout times this. */
export const REPLAY_TIMEOUT_FACTOR = 1.5;

/** Replays every failure of the batch against the candidate, each in its own ephemeral container. */
export async function replay(msg: CandidateReady, deps: ReplayerDeps): Promise<void> {
  const agent = deps.agent(msg.agent);
  await deps.batches.transition(msg.batchId, "replaying");
  // Each failure is replayed trialsPerFailure times (the depth tier's flakiness guard); one failed trial fails it.
  const trials = msg.failures.flatMap((ref) => Array.from({ length: msg.trialsPerFailure }, (_, i) => ({ ref, trial: i + 1 })));
  const runs = await mapLimit(trials, deps.concurrency, async ({ ref }): Promise<ReplayResult> => {
    try {
      return await replayOne(ref.event, msg, agent, deps);
    } catch (err) {
      // One failure that cannot be replayed (its evidence is bad) fails its own trial, with the reason; it never
      // holds up the batch. An error retrying can fix (the engine or the blob store away) retries the message.
      if (!isTerminal(err)) throw err;
      deps.log.warn("a failure could not be replayed", { batch: msg.batchId, failure: ref.id, err: (err as Error).message });
      return { failureId: ref.id, passed: false, reason: `could not be replayed: ${(err as Error).message}`, durationMs: 0, timedOut: false };
    }
  });
  const results = msg.failures.map((ref) => {
    const mine = runs.filter((r) => r.failureId === ref.id);
    const bad = mine.find((r) => !r.passed);
    if (!bad) return mine[0]!;
    return mine.length > 1 ? { ...bad, reason: `${mine.filter((r) => !r.passed).length} of ${mine.length} trials failed; ${bad.reason}` } : bad;
  });
  const passed = results.every((r) => r.passed);
  const { failures, ...rest } = msg;
  await deps.publish(Messages.replayCompleted, { ...rest, failures, commit: msg.commit, image: msg.image, diff: msg.diff, passed, results });
  deps.log.info("replay finished", { batch: msg.batchId, attempt: msg.attempt, passed, fixed: results.filter((r) => r.passed).length, of: results.length });
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
  const verdict = judge(ev, trial, timeoutMs);
  return {
    failureId: ev.id,
    passed: verdict.passed,
    reason: verdict.reason,
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

/** Pass = answered in time, with a status the failure expects, and the agent reported no failure of its own. */
export function judge(
  ev: FailureEvent,
  trial: Pick<TrialResult, "timedOut" | "error" | "reportedFailures"> & { response?: { status: number; body: string }; diverged?: string; exitCode?: number; stdout?: string },
  timeoutMs: number,
): { passed: boolean; reason: string } {
  // Not the same inputs: whatever the answer, it says nothing about the failure.
  if (trial.diverged) return { passed: false, reason: `diverged: ${trial.diverged}` };
  if (ev.invocation) return judgeCommand(trial, timeoutMs);
  if (trial.timedOut) return { passed: false, reason: `no answer within ${timeoutMs} ms (1.5x the failure's timeout)` };
  if (!trial.response) return { passed: false, reason: `no answer: ${trial.error ?? "the agent did not respond"}` };
  const expect = Expectation.parse(ev.expect ?? {});
  const { status, body } = trial.response;
  if (status < expect.statusMin || status > expect.statusMax) {
    return { passed: false, reason: `answered ${status} (expected ${expect.statusMin}-${expect.statusMax}): ${body.slice(0, 200)}` };
  }
  if (trial.reportedFailures.length > 0) return { passed: false, reason: `answered ${status} but reported a failure: ${firstReported(trial.reportedFailures)}` };
  return { passed: true, reason: `answered ${status}: ${body.slice(0, 200)}` };
}

/** The first failure the agent reported in its trial, as `Type: message`. */
function firstReported(reported: readonly unknown[]): string {
  const f = reported[0] as { error?: { type?: string; message?: string } };
  return `${f.error?.type ?? "Error"}: ${f.error?.message ?? "?"}`;
}

/** A command agent passes by exiting 0 in time, with no failure reported of its own. */
function judgeCommand(trial: Pick<TrialResult, "timedOut" | "error" | "reportedFailures"> & { exitCode?: number; stdout?: string }, timeoutMs: number): { passed: boolean; reason: string } {
  if (trial.timedOut) return { passed: false, reason: `did not finish within ${timeoutMs} ms (1.5x the failure's timeout)` };
  if (trial.error) return { passed: false, reason: trial.error };
  const out = (trial.stdout ?? "").trim().slice(-200);
  if (trial.exitCode !== 0) return { passed: false, reason: `exited ${trial.exitCode ?? "?"}${out ? `: ${out}` : ""}` };
  if (trial.reportedFailures.length > 0) return { passed: false, reason: `exited 0 but reported a failure: ${firstReported(trial.reportedFailures)}` };
  return { passed: true, reason: `exited 0${out ? `: ${out}` : ""}` };
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
