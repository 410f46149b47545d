/**
 * Time travel (`moss replay`): stored turns replayed against any version of an agent. Each request is one record in
 * `moss_time_travel`, written by the stage that has it — the operator API (requested), the rewriter (building, then
 * replaying once the version's image is there), the replayer (done), or whichever found it impossible (failed, with
 * why) — so an operator watching it always sees where it is.
 */
import { kvGet, kvKeys, kvUpdate, type KV } from "@moss/bus";
import { BatchRecord, Buckets, TimeTravelRecord, type TimeTravelCase } from "@moss/contracts";

export interface TimeTravelStore {
  get(id: string): Promise<TimeTravelRecord | undefined>;
  /** Writes the first record of a request; false when one exists already. */
  create(rec: TimeTravelRecord): Promise<boolean>;
  /** Changes a request's record by compare-and-set; `fn` returns undefined to leave it. A record that is done or failed is never changed. */
  update(id: string, fn: (cur: TimeTravelRecord) => Partial<TimeTravelRecord> | undefined): Promise<TimeTravelRecord | undefined>;
}

export function timeTravelStore(kv: KV): TimeTravelStore {
  return {
    get: async (id) => (await kvGet(kv, id, TimeTravelRecord))?.value,
    async create(rec) {
      let created = false;
      await kvUpdate(kv, rec.id, TimeTravelRecord, (cur) => (cur ? undefined : ((created = true), rec)), Buckets.timeTravel);
      return created;
    },
    async update(id, fn) {
      const res = await kvUpdate(
        kv,
        id,
        TimeTravelRecord,
        (cur) => {
          if (!cur || cur.state === "done" || cur.state === "failed") return undefined;
          const patch = fn(cur);
          return patch ? { ...cur, ...patch, updatedAt: new Date().toISOString() } : undefined;
        },
        Buckets.timeTravel,
      );
      return res?.value;
    },
  };
}

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
