import type { BlobStore } from "@moss/blob";
import { getBatch, isCasConflict, kvGet, kvUpdate, transitionBatch, type ChunkItem, type KV } from "@moss/bus";
import { BatchRecord, Buckets, FingerprintBreaker, type BatchReady, type BatchVerdict, type FailureEvent, type Regression } from "@moss/contracts";
import { Codes, MossError } from "@moss/errors";
import { context, injectContext, mossTracer, trace, type Logger } from "@moss/telemetry";
import { randomBytes } from "node:crypto";
import { FINAL, applyFailures, closeExpired, decide, requestSig, storeForm, type BatchLookup, type Policy, type PreparedFailure, type StoredFailure } from "../state/apply";
import { pruneBelow } from "../state/seqset";
import { CuratorState, emptyState, stateKey, type ClosingBatch } from "../state/state";

export interface Fingerprint {
  fingerprint: string;
  key: string;
  version: string;
}

export interface CuratorDeps {
  blob: BlobStore;
  /** `moss_curator`: one state entry per agent. */
  state: KV;
  batches: KV;
  breakers: KV;
  policyFor(agent: string): Policy;
  fingerprint(ev: FailureEvent): Fingerprint;
  /** The curator consumer's ack floor (stream seq); applied sequences at or below it are forgotten. */
  ackFloor(): number;
  publishReady(msg: BatchReady, trace: Record<string, string>): Promise<void>;
  publishVerdict(msg: BatchVerdict): Promise<void>;
  publishRegression(msg: Regression): Promise<void>;
  log: Logger;
  now?: () => number;
  /** Largest value one KV entry may hold (the server's max payload); the agent's whole state must fit. */
  maxStateBytes?: number;
}

const MAX_CAS_ROUNDS = 100;

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
    // What the pipeline says about batches these failures may attach to.
    const keys = new Set(items.map((i) => i.fp.key));
    await Promise.all(
      Object.entries(state.active)
        .filter(([k, a]) => keys.has(k) && !lookups.has(a.batchId))
        .map(async ([, a]) => {
          const rec = await getBatch(deps.batches, a.batchId);
          lookups.set(a.batchId, rec ? { state: rec.value.state, promotedCommit: rec.value.state === "promoted" ? rec.value.candidate?.commit : undefined } : undefined);
        }),
    );
    const res = applyFailures(state, items, policy, now(), (id) => lookups.get(id), (item) => openBatchSpan(agent, item));
    if (res.applied === 0) {
      // All of it was applied before (redelivery); the crash may have come before the outbox emptied.
      if (Object.keys(state.closing).length) await drain(agent, deps);
      return;
    }
    pruneBelow(res.state.applied, deps.ackFloor());
    const breakerOpen = await breakerReader(agent, Object.values(res.state.closing).map((c) => c.fpKey), deps);
    decide(res.state, now(), policy, breakerOpen);

    // Evidence first: the state never points at a blob that is not there.
    await Promise.all(
      res.newSamples.map(async (s) => {
        const st = s.stored();
        if (st.snapshot) await deps.blob.put(st.snapshot.bytes, { contentType: "application/x-tar" });
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
    for (const r of res.regressions) {
      await deps.publishRegression({ agent, fingerprint: r.fingerprint, batchId: r.batchId, version: r.ev.version, failureId: r.ev.id, at: new Date(now()).toISOString() });
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

/**
 * The timer's work for one agent: close batches whose window passed, release queued batches the rate limit now
 * allows, forget applied sequences below the ack floor, and announce whatever is closed (crash recovery too).
 */
export async function tick(agent: string, deps: CuratorDeps): Promise<void> {
  const now = deps.now ?? Date.now;
  const policy = deps.policyFor(agent);
  for (let round = 0; round < MAX_CAS_ROUNDS; round++) {
    const cur = await kvGet(deps.state, stateKey(agent), CuratorState);
    if (!cur) return;
    const state = structuredClone(cur.value);
    let changed = pruneBelow(state.applied, deps.ackFloor());
    changed = closeExpired(state, now()) > 0 || changed;
    const fpKeys = [...Object.values(state.closing).map((c) => c.fpKey), ...state.queued.map((q) => q.fpKey)];
    changed = decide(state, now(), policy, await breakerReader(agent, fpKeys, deps)) || changed;
    for (const k of await finishedActive(state, policy, deps, now())) {
      delete state.active[k];
      changed = true;
    }
    if (changed) {
      try {
        await deps.state.update(stateKey(agent), JSON.stringify(state), cur.revision);
      } catch (err) {
        if (isCasConflict(err)) continue;
        throw err;
      }
    }
    if (Object.keys(state.closing).length) await drain(agent, deps);
    await syncAttached(state, deps);
    return;
  }
}

const PRUNE_EVERY_MS = 60_000;
/** Per curator (its deps) and agent: when finished entries were last looked for. */
const lastPrune = new WeakMap<CuratorDeps, Map<string, number>>();

/**
 * Active entries whose batch ended other than promoted. The next failure of such a fingerprint would retire the
 * entry anyway and open a new batch, so dropping it changes nothing but the size of the agent's state, which
 * otherwise grows by one entry for every fingerprint that ever had a batch. Promoted ones stay: they watch for
 * regressions. Looked at when the agent has more active entries than maxOpenFingerprints, at most once a minute.
 */
async function finishedActive(state: CuratorState, policy: Policy, deps: CuratorDeps, now: number): Promise<string[]> {
  const entries = Object.entries(state.active);
  if (entries.length <= policy.maxOpenFingerprints) return [];
  const last = lastPrune.get(deps) ?? new Map<string, number>();
  lastPrune.set(deps, last);
  if (now - (last.get(state.agent) ?? -Infinity) < PRUNE_EVERY_MS) return [];
  last.set(state.agent, now);
  // Attach counts go onto the records first: an entry is forgotten only with its count kept where operators read
  // it. The state is written by compare-and-set after this, so the counts synced here are the final ones.
  await syncAttached(state, deps);
  const done: string[] = [];
  for (let i = 0; i < entries.length; i += 50) {
    await Promise.all(
      entries.slice(i, i + 50).map(async ([k, a]) => {
        const rec = await getBatch(deps.batches, a.batchId);
        if (rec && FINAL.has(rec.value.state) && rec.value.state !== "promoted") done.push(k);
      }),
    );
  }
  return done;
}

/** Per agent: the attach count last written to each active batch's record (only active batches are kept). */
const synced = new Map<string, Map<string, number>>();

/** Mirrors the exact attach counts (kept in the curator state) onto the batch records operators read. */
async function syncAttached(state: CuratorState, deps: CuratorDeps): Promise<void> {
  const before = synced.get(state.agent);
  const now = new Map<string, number>();
  for (const a of Object.values(state.active)) {
    if (before?.get(a.batchId) !== a.attached) {
      await kvUpdate(deps.batches, a.batchId, BatchRecord, (cur) => (cur && cur.attached < a.attached ? { ...cur, attached: a.attached } : undefined), Buckets.batches);
    }
    now.set(a.batchId, a.attached);
  }
  synced.set(state.agent, now);
}

/** Writes each decided closing batch's record, announces it, then drops it from the outbox (all redo-safe). */
async function drain(agent: string, deps: CuratorDeps): Promise<void> {
  const cur = await kvGet(deps.state, stateKey(agent), CuratorState);
  if (!cur) return;
  const done: ClosingBatch[] = [];
  for (const c of Object.values(cur.value.closing)) {
    if (!c.decision) continue;
    await ensureRecord(agent, c, deps);
    if (c.decision === "ready") {
      await deps.publishReady(
        { batchId: c.batchId, agent, fingerprint: c.fingerprint, baseVersion: c.baseVersion, failures: c.samples.map((s) => ({ id: s.id, event: s.event })), count: c.count, attempt: 1 },
        c.trace,
      );
      deps.log.info("batch ready", { batch: c.batchId, agent, count: c.count, fingerprint: c.fingerprint });
    } else {
      const policy = deps.policyFor(agent);
      await deps.publishVerdict({
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
      if (c.decision === "queued") state.queued.push({ ...c, decision: undefined });
      if (c.decision === "needs-human") delete state.active[c.fpKey];
    }
    try {
      await deps.state.update(stateKey(agent), JSON.stringify(state), now.revision);
      return;
    } catch (err) {
      if (!isCasConflict(err)) throw err;
    }
  }
}

async function ensureRecord(agent: string, c: ClosingBatch, deps: CuratorDeps): Promise<void> {
  const existing = await getBatch(deps.batches, c.batchId);
  if (existing) {
    if (existing.value.state === "queued" && c.decision !== "queued") await transitionBatch(deps.batches, c.batchId, c.decision!);
    return;
  }
  const now = new Date((deps.now ?? Date.now)()).toISOString();
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
    updatedAt: now,
  };
  await deps.batches.create(c.batchId, JSON.stringify(BatchRecord.parse(rec))).catch((err: Error) => {
    if (!isCasConflict(err)) throw err;
  });
}

/** Reads the breakers of the given fingerprints once; answers whether each one is open. */
async function breakerReader(agent: string, fpKeys: string[], deps: CuratorDeps): Promise<(fpKey: string) => boolean> {
  const open = new Set<string>();
  await Promise.all(
    [...new Set(fpKeys)].map(async (k) => {
      const b = await kvGet(deps.breakers, `${agent}.${k}`, FingerprintBreaker);
      if (b?.value.needsHuman) open.add(k);
    }),
  );
  return (k) => open.has(k);
}

/** The batch's root span: every later stage, however much later, joins this trace through the carrier. */
function openBatchSpan(agent: string, item: PreparedFailure): { batchId: string; trace: Record<string, string> } {
  const batchId = `b${Date.now().toString(36)}${randomBytes(5).toString("hex")}`;
  const span = mossTracer().startSpan(`batch ${batchId}`, { root: true, attributes: { "moss.batch": batchId, "moss.agent": agent, "moss.fingerprint": item.fp.fingerprint } });
  const carrier = injectContext({}, trace.setSpan(context.active(), span));
  span.end();
  return { batchId, trace: carrier };
}
