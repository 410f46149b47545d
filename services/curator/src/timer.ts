/**
 * The curator's timer, run for every agent from every replica (compare-and-set makes that safe): batches whose window
 * passed close, queued batches the rate limit now allows are released, applied sequences below the ack floor are
 * forgotten, finished fingerprints are pruned, attach counts are mirrored onto the batch records, and whatever is
 * closed goes through the outbox (crash recovery too).
 */
import { isFinal } from "@moss/batch";
import { isCasConflict, kvGet, kvKeys, pruneBelow } from "@moss/bus";
import { MAX_CAS_ROUNDS, type CuratorDeps } from "./deps";
import { drain } from "./outbox";
import { closeExpired, decide, type Policy } from "./state/apply";
import { CuratorState, STATE_KEYS, agentOfStateKey, stateKey } from "./state/state";

/** One tick of every agent the curator has state for. */
export async function tickAll(deps: CuratorDeps): Promise<void> {
  for (const key of await kvKeys(deps.state, STATE_KEYS)) await tick(agentOfStateKey(key), deps);
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
    const open = await deps.breakers.open(agent, fpKeys);
    changed = decide(state, now(), policy, (k) => open.has(k)) || changed;
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
        const rec = await deps.batches.get(a.batchId);
        if (rec && isFinal(rec.state) && rec.state !== "promoted") done.push(k);
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
      // A batch whose record the outbox has not written yet gets its count on the next tick.
      const written = await deps.batches.patch(a.batchId, (cur) => (cur.attached < a.attached ? { attached: a.attached } : undefined));
      if (!written) continue;
    }
    now.set(a.batchId, a.attached);
  }
  synced.set(state.agent, now);
}

