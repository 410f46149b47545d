/**
 * The curator's message handler: chunks of failure events filed into each agent's state (the pure core in
 * state/apply.ts), the evidence stored, regressions announced, and closed batches sent through the outbox.
 */
import { newBatchId } from "@moss/batch";
import { isCasConflict, kvGet, pruneBelow, type ChunkItem } from "@moss/bus";
import { Messages, type FailureEvent } from "@moss/contracts";
import { Codes, MossError } from "@moss/errors";
import { context, injectContext, mossTracer, trace } from "@moss/telemetry";
import { MAX_CAS_ROUNDS, type CuratorDeps } from "../deps";
import type { Fingerprint } from "../fingerprint";
import { drain } from "../outbox";
import { applyFailures, decide, requestSig, storeForm, type BatchLookup, type Policy, type PreparedFailure, type StoredFailure } from "../state/apply";
import { CuratorState, emptyState, stateKey } from "../state/state";

/**
 * Files a chunk of failure events: one compare-and-set per agent per chunk, with the applied stream sequences in
 * the same write. A redelivered chunk, or one a second replica applies concurrently, changes nothing twice.
 */
export async function ingestChunk(items: ReadonlyArray<ChunkItem<FailureEvent>>, deps: CuratorDeps): Promise<void> {
  const byAgent = new Map<string, PreparedFailure[]>();
  for (const it of items) {
    const p = new Prepared(it.streamSeq, it.msg, deps.fingerprint(it.msg));
    const list = byAgent.get(p.ev.agent);
    if (list) list.push(p);
    else byAgent.set(p.ev.agent, [p]);
  }
  await Promise.all([...byAgent].map(([agent, list]) => applyAgent(agent, list, deps)));
}

/** A failure as the state code sees it. A storm's tail only counts: its request signature and stored form are computed only for samples. */
class Prepared implements PreparedFailure {
  #sig: string | undefined;
  #stored: StoredFailure | undefined;
  constructor(
    readonly seq: number,
    readonly ev: FailureEvent,
    readonly fp: Fingerprint,
  ) {}
  get sig(): string {
    return (this.#sig ??= requestSig(this.ev));
  }
  stored(): StoredFailure {
    return (this.#stored ??= storeForm(this.ev));
  }
}

async function applyAgent(agent: string, items: PreparedFailure[], deps: CuratorDeps): Promise<void> {
  const now = deps.now ?? Date.now;
  const policy = deps.policyFor(agent);
  const lookups = new Map<string, BatchLookup | undefined>();
  for (let round = 0; round < MAX_CAS_ROUNDS; round++) {
    const cur = await kvGet(deps.state, stateKey(agent), CuratorState);
    const state = cur?.value ?? emptyState(agent);
    // What the pipeline says about batches these failures may attach to: those of their fingerprints, and — for a
    // failure on a version no batch was opened on, maybe a candidate being judged — every active one.
    const keys = new Set(items.map((i) => i.fp.key));
    const known = new Set([...Object.values(state.active), ...Object.values(state.open)].map((b) => b.baseVersion));
    const all = items.some((i) => !known.has(i.ev.version));
    await Promise.all(
      Object.entries(state.active)
        .filter(([k, a]) => (all || keys.has(k)) && !lookups.has(a.batchId))
        .map(async ([, a]) => {
          const rec = await deps.batches.get(a.batchId);
          const judged = rec?.state === "promoted" || rec?.state === "promoting" || rec?.state === "rolled-back";
          lookups.set(a.batchId, rec ? { state: rec.state, promotedCommit: judged ? rec.candidate?.commit : undefined } : undefined);
        }),
    );
    const res = applyFailures(state, items, policy, now(), (id) => lookups.get(id), (item) => openBatchSpan(agent, item));
    if (res.applied === 0) {
      // All of it was applied before (redelivery); the crash may have come before the outbox emptied.
      if (Object.keys(state.closing).length) await drain(agent, deps);
      return;
    }
    pruneBelow(res.state.applied, deps.ackFloor());
    const open = await deps.breakers.open(agent, Object.values(res.state.closing).map((c) => c.fpKey));
    decide(res.state, now(), policy, (k) => open.has(k));

    // Evidence first: the state never points at a blob that is not there.
    await Promise.all(
      res.newSamples.map(async (s) => {
        const st = s.stored();
        for (const b of st.blobs) await deps.blob.put(b.bytes, b.ref.contentType ? { contentType: b.ref.contentType } : {});
        await deps.blob.put(st.eventJson, { contentType: "application/json" });
      }),
    );
    const data = JSON.stringify(res.state);
    checkStateSize(agent, data, policy, deps);
    try {
      if (cur) await deps.state.update(stateKey(agent), data, cur.revision);
      else await deps.state.create(stateKey(agent), data);
    } catch (err) {
      if (isCasConflict(err)) continue;
      throw err;
    }
    for (const c of res.onCandidate) deps.log.info("a failure on a candidate under judgement: attached to its batch as evidence, no batch of its own", { agent, batch: c.batchId, version: c.ev.version, failure: c.ev.id });
    for (const r of res.regressions) {
      await deps.publish(Messages.regression, { agent, fingerprint: r.fingerprint, batchId: r.batchId, version: r.ev.version, failureId: r.ev.id, at: new Date(now()).toISOString() });
    }
    if (Object.keys(res.state.closing).length) await drain(agent, deps);
    return;
  }
  throw new MossError(Codes.CURATOR_STATE_CONTENDED, `curator state of agent ${agent} kept changing under ${MAX_CAS_ROUNDS} attempts; will retry the chunk`);
}

/** An agent's state that outgrew one KV entry would fail every chunk with an opaque NATS error: say what to change. */
function checkStateSize(agent: string, data: string, policy: Policy, deps: CuratorDeps): void {
  const max = deps.maxStateBytes;
  if (max === undefined || data.length < max / 4) return; // UTF-16 length x 4 bounds the UTF-8 size
  const bytes = Buffer.byteLength(data);
  if (bytes <= max - 1_024) return; // the KV put adds headers to the message
  throw new MossError(
    Codes.CURATOR_STATE_TOO_LARGE,
    `the curator state of agent ${agent} would be ${bytes} bytes, over the ${max}-byte limit of one KV entry (the NATS max payload): ` +
      `lower curator.maxOpenFingerprints (now ${policy.maxOpenFingerprints}) or curator.maxSamples (now ${policy.maxSamples}) for this agent, or raise max_payload on the server`,
  );
}

/** The batch's root span: every later stage, however much later, joins this trace through the carrier. */
function openBatchSpan(agent: string, item: PreparedFailure): { batchId: string; trace: Record<string, string> } {
  const batchId = newBatchId();
  const span = mossTracer().startSpan(`batch ${batchId}`, { root: true, attributes: { "moss.batch": batchId, "moss.agent": agent, "moss.fingerprint": item.fp.fingerprint } });
  const carrier = injectContext({}, trace.setSpan(context.active(), span));
  span.end();
  return { batchId, trace: carrier };
}
