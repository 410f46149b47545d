/** The replayer's message handler: every failure of a candidate's batch, replayed in its own ephemeral trial. */
import type { BatchStore } from "@moss/batch";
import type { BlobStore } from "@moss/blob";
import type { AgentConfig } from "@moss/config";
import { Expectation, FailureEvent, Messages, type CandidateReady, type Publish, type ReplayResult } from "@moss/contracts";
import type { Runtime, TrialResult } from "@moss/runtime";
import type { Logger } from "@moss/telemetry";

/** What the replayer runs trials with: the runtime's trial. */
export type TrialPort = Pick<Runtime, "runTrial">;

/** What the replayer needs of an agent: the port it listens on in a trial, and its extra env. */
export type ReplayAgent = Pick<AgentConfig, "port" | "env">;

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
    const ev = FailureEvent.parse(JSON.parse((await deps.blob.get(ref.event.sha256)).toString("utf8")));
    return replayOne(ev, msg, agent, deps);
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

async function replayOne(ev: FailureEvent, msg: CandidateReady, agent: ReplayAgent, deps: ReplayerDeps): Promise<ReplayResult> {
  const snapshot = ev.snapshot
    ? { path: ev.snapshot.path, tar: ev.snapshot.blob ? await deps.blob.get(ev.snapshot.blob.sha256) : Buffer.from(ev.snapshot.inlineBase64 ?? "", "base64") }
    : undefined;
  const timeoutMs = Math.round(ev.timeoutMs * REPLAY_TIMEOUT_FACTOR);
  const trial = await deps.runtime.runTrial({
    image: msg.image,
    request: { method: ev.request.method, path: ev.request.path, headers: endToEnd(ev.request.headers), body: ev.request.body },
    port: agent.port,
    env: { ...agent.env, ...ev.env, MOSS_AGENT_VERSION: msg.commit },
    timeoutMs,
    snapshot,
    network: ev.request.needsNetwork,
    labels: { "moss.batch": msg.batchId, "moss.failure": ev.id },
  });
  const logs = await deps.blob.put(trial.logs, { contentType: "text/plain" });
  const verdict = judge(ev, trial, timeoutMs);
  return {
    failureId: ev.id,
    passed: verdict.passed,
    reason: verdict.reason,
    status: trial.response?.status,
    body: trial.response?.body.slice(0, 4_000),
    durationMs: trial.durationMs,
    timedOut: trial.timedOut,
    logs,
  };
}

/** Hop-by-hop and framing headers belong to the original connection, not to the request being replayed. */
const HOP_BY_HOP = new Set(["host", "connection", "keep-alive", "content-length", "transfer-encoding", "upgrade", "proxy-connection", "te", "trailer"]);
function endToEnd(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([k]) => !HOP_BY_HOP.has(k.toLowerCase())));
}

/** Pass = answered in time, with a status the failure expects, and the agent reported no failure of its own. */
export function judge(
  ev: FailureEvent,
  trial: Pick<TrialResult, "timedOut" | "error" | "reportedFailures"> & { response?: { status: number; body: string } },
  timeoutMs: number,
): { passed: boolean; reason: string } {
  if (trial.timedOut) return { passed: false, reason: `no answer within ${timeoutMs} ms (1.5x the failure's timeout)` };
  if (!trial.response) return { passed: false, reason: `no answer: ${trial.error ?? "the agent did not respond"}` };
  const expect = Expectation.parse(ev.expect ?? {});
  const { status, body } = trial.response;
  if (status < expect.statusMin || status > expect.statusMax) {
    return { passed: false, reason: `answered ${status} (expected ${expect.statusMin}-${expect.statusMax}): ${body.slice(0, 200)}` };
  }
  if (trial.reportedFailures.length > 0) {
    const f = trial.reportedFailures[0] as { error?: { type?: string; message?: string } };
    return { passed: false, reason: `answered ${status} but reported a failure: ${f.error?.type ?? "Error"}: ${f.error?.message ?? "?"}` };
  }
  return { passed: true, reason: `answered ${status}: ${body.slice(0, 200)}` };
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
