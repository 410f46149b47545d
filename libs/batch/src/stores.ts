/**
 * The batch domain's stores, each over its KV bucket and the only code that writes it: batch records (moved along
 * the state machine only), circuit breakers (one writer of counts, one of resets), candidates that were not
 * promoted, and live deployments. Every write is a compare-and-set.
 */
import { kvGet, kvUpdate, kvValues, type KV } from "@moss/bus";
import { BatchRecord, Buckets, Deployment, FingerprintBreaker, RejectedCandidate, type BatchState } from "@moss/contracts";
import { BatchEndedError, BatchNotFoundError, BatchTransitionError } from "./errors";
import { breakerKey, candidateFilter, candidateKey, deploymentKey } from "./names";
import { canMove, isFinal } from "./states";

export interface BatchStore {
  get(batchId: string): Promise<BatchRecord | undefined>;
  /** Writes a new record; one that exists already (a redo, another replica) is left as it is. Resolves whether this call created it. */
  create(record: BatchRecord): Promise<boolean>;
  /**
   * Changes a record by compare-and-set: `change` gets the current record and returns the next one, or undefined to
   * leave it. A change of state must be an edge of the state machine (BatchTransitionError otherwise; BatchEndedError,
   * which the bus drops quietly, when the batch has ended meanwhile).
   */
  change(batchId: string, change: (cur: BatchRecord) => BatchRecord | undefined): Promise<{ record: BatchRecord; moved: boolean }>;
  /**
   * Moves a batch to `to`, applying `patch`. Idempotent: a batch already in `to` gets the patch again (a redelivered
   * message repeats its write harmlessly).
   */
  transition(batchId: string, to: BatchState, patch?: Partial<BatchRecord>): Promise<{ record: BatchRecord; moved: boolean }>;
  /**
   * Changes fields of a record without moving its state: `patch` returns the fields to change, or undefined to leave
   * it. A record that does not exist (yet) is left alone; resolves with the record, if there is one.
   */
  patch(batchId: string, patch: (cur: BatchRecord) => Partial<Omit<BatchRecord, "state">> | undefined): Promise<BatchRecord | undefined>;
  list(): Promise<BatchRecord[]>;
}

export function batchStore(kv: KV): BatchStore {
  const change: BatchStore["change"] = async (batchId, fn) => {
    let from: BatchState | undefined;
    const res = await kvUpdate(
      kv,
      batchId,
      BatchRecord,
      (cur) => {
        if (!cur) throw new BatchNotFoundError(batchId);
        from = cur.state;
        const next = fn(cur);
        if (!next) return undefined;
        if (next.state !== cur.state && !canMove(cur.state, next.state)) {
          throw isFinal(cur.state) ? new BatchEndedError(batchId, cur.state, next.state, cur.reason) : new BatchTransitionError(batchId, cur.state, next.state);
        }
        return { ...next, updatedAt: new Date().toISOString() };
      },
      Buckets.batches,
    );
    return { record: res!.value, moved: res!.value.state !== from };
  };
  return {
    get: async (batchId) => (await kvGet(kv, batchId, BatchRecord))?.value,
    async create(record) {
      let created = false;
      await kvUpdate(kv, record.batchId, BatchRecord, (cur) => (cur ? undefined : ((created = true), record)), Buckets.batches);
      return created;
    },
    change,
    transition: (batchId, to, patch = {}) => change(batchId, (cur) => ({ ...cur, ...patch, state: to })),
    async patch(batchId, patch) {
      const res = await kvUpdate(
        kv,
        batchId,
        BatchRecord,
        (cur) => {
          const p = cur && patch(cur);
          return p ? { ...cur, ...p, state: cur.state, updatedAt: new Date().toISOString() } : undefined;
        },
        Buckets.batches,
      );
      return res?.value;
    },
    list: async () => (await kvValues(kv, BatchRecord)).map((e) => e.value),
  };
}

/** The outcome of an attempt a circuit breaker counts: a replay, a missing candidate, a verdict, a promotion. */
export interface CountedOutcome {
  agent: string;
  fingerprint: string;
  fingerprintKey: string;
  batchId: string;
  attempt: number;
  kind: "replay" | "candidate" | "verdict" | "promotion";
  /** A rejected candidate adds one; anything else (a promotion) closes the count. */
  rejected: boolean;
}

export interface BreakerStore {
  get(agent: string, fingerprintKey: string): Promise<FingerprintBreaker | undefined>;
  /** Which of these fingerprints' breakers are open (one read each). */
  open(agent: string, fingerprintKeys: Iterable<string>): Promise<Set<string>>;
  /**
   * Counts one outcome, once (an outcome delivered twice is counted once): a rejected candidate adds one, a promotion
   * sets the count back to 0, and at `threshold` rejections in a row the fingerprint needs a human until reset.
   * The only writer of counts. Resolves with the breaker as it now is.
   */
  count(o: CountedOutcome, threshold: number): Promise<FingerprintBreaker>;
  /** Closes a breaker (a human looked): the only writer of resets. Undefined when the fingerprint has no breaker. */
  reset(agent: string, fingerprintKey: string, by: string, at: string): Promise<{ was: FingerprintBreaker; now: FingerprintBreaker } | undefined>;
}

export function breakerStore(kv: KV): BreakerStore {
  const get = async (agent: string, fpKey: string) => (await kvGet(kv, breakerKey(agent, fpKey), FingerprintBreaker))?.value;
  return {
    get,
    async open(agent, fpKeys) {
      const open = new Set<string>();
      await Promise.all([...new Set(fpKeys)].map(async (k) => ((await get(agent, k))?.needsHuman ? open.add(k) : undefined)));
      return open;
    },
    async count(o, threshold) {
      const mark = `${o.batchId}:${o.attempt}:${o.kind}`;
      const res = await kvUpdate(
        kv,
        breakerKey(o.agent, o.fingerprintKey),
        FingerprintBreaker,
        (cur) => {
          if (cur?.counted.includes(mark)) return undefined; // counted on an earlier delivery
          const consecutive = o.rejected ? (cur?.consecutiveRejections ?? 0) + 1 : 0;
          return {
            agent: o.agent,
            fingerprint: o.fingerprint,
            consecutiveRejections: consecutive,
            needsHuman: (cur?.needsHuman ?? false) || consecutive >= threshold,
            counted: [...(cur?.counted ?? []), mark].slice(-100),
            updatedAt: new Date().toISOString(),
            resetBy: cur?.resetBy,
          };
        },
        Buckets.fingerprints,
      );
      return res!.value;
    },
    async reset(agent, fpKey, by, at) {
      let was: FingerprintBreaker | undefined;
      // Outcomes already counted stay counted: a redelivered old rejection must not trip it again.
      const res = await kvUpdate(
        kv,
        breakerKey(agent, fpKey),
        FingerprintBreaker,
        (cur) => ((was = cur), cur ? { ...cur, consecutiveRejections: 0, needsHuman: false, resetBy: by, updatedAt: at } : undefined),
        Buckets.fingerprints,
      );
      return was && res ? { was, now: res.value } : undefined;
    },
  };
}

export interface CandidateStore {
  /** Keeps a candidate that was not promoted (its branch stays in the agent repo), where later batches learn from it. */
  keep(fingerprintKey: string, c: RejectedCandidate): Promise<void>;
  /**
   * The candidates of an agent (or of one of its fingerprints), newest first. An entry that does not parse throws,
   * unless `onInvalid` is given, which is told about it while the rest are returned.
   */
  list(agent?: string, fingerprintKey?: string, onInvalid?: (key: string, err: Error) => void): Promise<RejectedCandidate[]>;
}

export function candidateStore(kv: KV): CandidateStore {
  return {
    async keep(fingerprintKey, c) {
      await kv.put(candidateKey(c.agent, fingerprintKey, c.batchId, c.attempt), JSON.stringify(RejectedCandidate.parse(c)));
    },
    async list(agent, fingerprintKey, onInvalid) {
      const rows = (await kvValues(kv, RejectedCandidate, candidateFilter(agent, fingerprintKey), onInvalid)).map((e) => e.value);
      return rows.sort((a, b) => b.at.localeCompare(a.at));
    },
  };
}

export interface DeploymentStore {
  get(agent: string): Promise<Deployment | undefined>;
  /** Changes an agent's deployment record by compare-and-set; `change` returns undefined to leave it. */
  record(agent: string, change: (cur: Deployment | undefined) => Deployment | undefined): Promise<Deployment | undefined>;
  list(): Promise<Deployment[]>;
}

/** The last-known-good list with `entry` first (a version already in it moves up), at most `depth` long. */
export function withLastGood(list: Deployment["lastGood"] | undefined, entry: Deployment["lastGood"][number], depth: number): Deployment["lastGood"] {
  return [entry, ...(list ?? []).filter((g) => g.version !== entry.version)].slice(0, Math.max(1, depth));
}

export function deploymentStore(kv: KV): DeploymentStore {
  return {
    get: async (agent) => (await kvGet(kv, deploymentKey(agent), Deployment))?.value,
    record: async (agent, change) => (await kvUpdate(kv, deploymentKey(agent), Deployment, change, Buckets.deployments))?.value,
    list: async () => (await kvValues(kv, Deployment)).map((e) => e.value),
  };
}

/** Every store of the batch domain, over the buckets of one bus. */
export interface Stores {
  batches: BatchStore;
  breakers: BreakerStore;
  candidates: CandidateStore;
  deployments: DeploymentStore;
}

export async function openStores(bus: { kv(bucket: string): Promise<KV> }): Promise<Stores> {
  return {
    batches: batchStore(await bus.kv(Buckets.batches)),
    breakers: breakerStore(await bus.kv(Buckets.fingerprints)),
    candidates: candidateStore(await bus.kv(Buckets.candidates)),
    deployments: deploymentStore(await bus.kv(Buckets.deployments)),
  };
}
