/**
 * The curator's outbox: batches that closed (and were decided: ready, queued or needs-human) are written to
 * `moss_batches` and announced, then dropped from the agent's state. Every step is redo-safe, so a crash anywhere
 * means the next chunk or tick finishes the job.
 */
import { isFinal } from "@moss/batch";
import { kvGet, isCasConflict } from "@moss/bus";
import { Messages, type BatchRecord } from "@moss/contracts";
import { MAX_CAS_ROUNDS, type CuratorDeps } from "./deps";
import { CuratorState, stateKey, type ClosingBatch } from "./state/state";

/** Writes each decided closing batch's record, announces it, then drops it from the outbox. */
export async function drain(agent: string, deps: CuratorDeps): Promise<void> {
  const cur = await kvGet(deps.state, stateKey(agent), CuratorState);
  if (!cur) return;
  const done: ClosingBatch[] = [];
  const ended = new Set<string>();
  for (const c of Object.values(cur.value.closing)) {
    if (!c.decision) continue;
    if ((await ensureRecord(agent, c, deps)) === "ended") {
      // An operator rejected it while it waited in the queue: nothing to announce; it leaves the outbox.
      deps.log.info("queued batch ended before its release; not announced", { batch: c.batchId, agent });
      ended.add(c.batchId);
      done.push(c);
      continue;
    }
    if (c.decision === "ready") {
      await deps.publish(
        Messages.batchReady,
        {
          batchId: c.batchId,
          agent,
          fingerprint: c.fingerprint,
          fingerprintKey: c.fpKey,
          baseVersion: c.baseVersion,
          failures: c.samples.map((s) => ({ id: s.id, event: s.event })),
          count: c.count,
          attempt: 1,
        },
        { trace: c.trace },
      );
      deps.log.info("batch ready", { batch: c.batchId, agent, count: c.count, fingerprint: c.fingerprint });
    } else {
      const policy = deps.policyFor(agent);
      await deps.publish(Messages.batchVerdict, {
        batchId: c.batchId,
        agent,
        attempt: 1,
        verdict: c.decision,
        reason:
          c.decision === "queued"
            ? `rate limit: at most ${policy.maxRewrites} rewrites per ${policy.rateWindowMs} ms for agent ${agent}; it starts when the window allows`
            : `fingerprint ${c.fingerprint} needs a human: its circuit breaker is open after repeated rejected candidates (reset with \`moss reset ${c.batchId}\`)`,
      });
    }
    done.push(c);
  }
  if (!done.length) return;
  for (let round = 0; round < MAX_CAS_ROUNDS; round++) {
    const now = await kvGet(deps.state, stateKey(agent), CuratorState);
    if (!now) return;
    const state = structuredClone(now.value);
    for (const c of done) {
      if (!state.closing[c.batchId]) continue;
      delete state.closing[c.batchId];
      // A batch that waits for a human stays the fingerprint's active batch: its failures attach to it.
      if (c.decision === "queued" && !ended.has(c.batchId)) state.queued.push({ ...c, decision: undefined });
    }
    try {
      await deps.state.update(stateKey(agent), JSON.stringify(state), now.revision);
      return;
    } catch (err) {
      if (!isCasConflict(err)) throw err;
    }
  }
}

/** The batch's record, as the decision says (a queued batch released later moves on from `queued`). */
async function ensureRecord(agent: string, c: ClosingBatch, deps: CuratorDeps): Promise<"ended" | undefined> {
  const existing = await deps.batches.get(c.batchId);
  if (existing) {
    if (isFinal(existing.state)) return "ended";
    if (existing.state === "queued" && c.decision !== "queued") await deps.batches.transition(c.batchId, c.decision!);
    return undefined;
  }
  const rec: BatchRecord = {
    batchId: c.batchId,
    agent,
    fingerprint: c.fingerprint,
    fingerprintVersion: c.fingerprintVersion,
    fingerprintKey: c.fpKey,
    baseVersion: c.baseVersion,
    state: c.decision!,
    failures: c.samples.map((s) => ({ id: s.id, event: s.event })),
    count: c.count,
    attached: 0,
    openedAt: c.openedAt,
    deadline: c.deadline,
    closedAt: c.closedAt,
    trace: c.trace,
    attempt: 0,
    updatedAt: new Date((deps.now ?? Date.now)()).toISOString(),
  };
  await deps.batches.create(rec);
  return undefined;
}
