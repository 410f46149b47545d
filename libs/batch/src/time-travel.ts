/**
 * Time travel (`moss replay`): stored turns replayed against any version of an agent. Each request is one record in
 * `moss_time_travel`, written by the stage that has it — the operator API (requested), the rewriter (building, then
 * replaying once the version's image is there), the replayer (done), or whichever found it impossible (failed, with
 * why) — so an operator watching it always sees where it is.
 */
import { kvGet, kvKeys, kvUpdate, type KV } from "@moss/bus";
import { BatchRecord, BisectRecord, Buckets, ReviewRecord, TimeTravelRecord, type TimeTravelCase } from "@moss/contracts";
import type { z } from "zod";

/** A record of work in stages, one writer at a time by compare-and-set; once done or failed it never changes. */
export interface ProgressStore<R extends { id: string; state: string }> {
  get(id: string): Promise<R | undefined>;
  /** Writes the first record of a request; false when one exists already. */
  create(rec: R): Promise<boolean>;
  /** Changes a record by compare-and-set; `fn` returns undefined to leave it. A record that is done or failed is never changed. */
  update(id: string, fn: (cur: R) => Partial<R> | undefined): Promise<R | undefined>;
}

function progressStore<S extends typeof TimeTravelRecord | typeof BisectRecord | typeof ReviewRecord>(kv: KV, schema: S, bucket: string): ProgressStore<z.infer<S>> {
  type R = z.infer<S>;
  return {
    get: async (id) => (await kvGet(kv, id, schema))?.value as R | undefined,
    async create(rec) {
      let created = false;
      await kvUpdate(kv, rec.id, schema, (cur) => (cur ? undefined : ((created = true), rec)), bucket);
      return created;
    },
    async update(id, fn) {
      const res = await kvUpdate(
        kv,
        id,
        schema,
        (current: unknown) => {
          const cur = current as R | undefined;
          if (!cur || cur.state === "done" || cur.state === "failed") return undefined;
          const patch = fn(cur);
          return patch ? { ...cur, ...patch, updatedAt: new Date().toISOString() } : undefined;
        },
        bucket,
      );
      return res?.value as R | undefined;
    },
  };
}

export type TimeTravelStore = ProgressStore<TimeTravelRecord>;
export type BisectStore = ProgressStore<BisectRecord>;
export const timeTravelStore = (kv: KV): TimeTravelStore => progressStore(kv, TimeTravelRecord, Buckets.timeTravel);
export const bisectStore = (kv: KV): BisectStore => progressStore(kv, BisectRecord, Buckets.bisects);
export type ReviewStore = ProgressStore<ReviewRecord>;
export const reviewStore = (kv: KV): ReviewStore => progressStore(kv, ReviewRecord, Buckets.reviews);

/** Shortest failure id prefix `findFailures` looks up (ids are 32 hex digits; output shows 12). */
export const MIN_FAILURE_PREFIX = 8;

/**
 * The stored failures whose id is `idOrPrefix` or starts with it, from every batch they were kept in as evidence (a
 * failure only counted, never kept as a sample, has no stored event and cannot be replayed). Reads every batch record.
 */
export async function findFailures(batches: KV, idOrPrefix: string): Promise<Array<TimeTravelCase & { agent: string }>> {
  const found = new Map<string, TimeTravelCase & { agent: string }>();
  for (const key of await kvKeys(batches)) {
    const rec = (await kvGet(batches, key, BatchRecord).catch(() => undefined))?.value;
    for (const f of rec?.failures ?? []) {
      if (f.id.startsWith(idOrPrefix) && !found.has(f.id)) found.set(f.id, { kind: "failure", id: f.id, event: f.event, batchId: rec!.batchId, agent: rec!.agent });
    }
  }
  return [...found.values()];
}
