import { BatchRecord, BatchTransitions, Buckets, type BatchState } from "@moss/contracts";
import { Codes, MossError } from "@moss/errors";
import type { KV } from "@nats-io/kv";
import { kvGet, kvUpdate, type Versioned } from "./kv";

/** A batch was asked to move along an edge the state machine does not have (e.g. promote a rejected batch). */
export class BatchTransitionError extends MossError {
  override name = "BatchTransitionError";
  constructor(batchId: string, from: BatchState, to: BatchState) {
    super(Codes.BATCH_TRANSITION, `batch ${batchId} is ${from}; it cannot become ${to}`);
  }
}

export class BatchNotFoundError extends MossError {
  override name = "BatchNotFoundError";
  constructor(batchId: string) {
    super(Codes.BATCH_NOT_FOUND, `no batch ${batchId} (list batches with \`moss batches\`)`);
  }
}

export async function getBatch(kv: KV, batchId: string): Promise<Versioned<BatchRecord> | undefined> {
  return kvGet(kv, batchId, BatchRecord);
}

/**
 * Moves a batch to `to` by compare-and-set, applying `patch`. Idempotent: a batch already in `to` gets the patch
 * again (a redelivered message repeats its write harmlessly). Returns the record and whether the state changed.
 */
export async function transitionBatch(
  kv: KV,
  batchId: string,
  to: BatchState,
  patch: Partial<BatchRecord> = {},
): Promise<{ record: BatchRecord; moved: boolean }> {
  let moved = false;
  const res = await kvUpdate(
    kv,
    batchId,
    BatchRecord,
    (cur) => {
      if (!cur) throw new BatchNotFoundError(batchId);
      moved = cur.state !== to;
      if (moved && !BatchTransitions[cur.state].includes(to)) throw new BatchTransitionError(batchId, cur.state, to);
      return { ...cur, ...patch, state: to, updatedAt: new Date().toISOString() };
    },
    Buckets.batches,
  );
  return { record: res!.value, moved };
}
