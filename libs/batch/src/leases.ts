/**
 * Leases (`moss_leases`): one holder of a named piece of work at a time, across replicas and machines. A lease is a KV
 * record renewed by compare-and-set on its revision; one not renewed within its ttl may be taken by anyone. The
 * promoter holds `promoter.<agent>` for a whole promotion, so two replicas never swap one agent at once, and a replica
 * that died mid-bake is taken over once its lease ran out.
 */
import { hostname } from "node:os";
import { isCasConflict, kvGet, type KV } from "@moss/bus";
import { Lease } from "@moss/contracts";
import { Codes, MossError } from "@moss/errors";

/** Someone else holds the lease: retry later (the bus redelivers after a delay). */
export class LeaseHeldError extends MossError {
  override name = "LeaseHeldError";
  constructor(key: string, held: Lease, waitMs: number) {
    super(Codes.LEASE_HELD, `${key} is held by ${held.holder}${held.work ? ` (${held.work})` : ""} for another ${Math.max(0, Math.round(waitMs / 1000))} s unless renewed; trying again later`);
  }
}

/** The lease was taken by another holder while this one still worked: it must stop acting. */
export class LeaseLostError extends MossError {
  override name = "LeaseLostError";
  constructor(key: string, by: string) {
    super(Codes.LEASE_HELD, `${key} was taken over by ${by} (this holder did not renew it within its ttl): stopping without acting further`);
  }
}

export interface HeldLease {
  readonly key: string;
  readonly holder: string;
  /** Throws LeaseLostError once a renewal found the lease taken: call it before every act. */
  check(): void;
  release(): Promise<void>;
}

export interface LeaseStore {
  /** Takes the lease, renewing it every ttl/3 until released; LeaseHeldError while another live holder has it. */
  acquire(key: string, work: string, ttlMs: number): Promise<HeldLease>;
  get(key: string): Promise<Lease | undefined>;
}

/** Who this process is, as a lease holder. */
export const LEASE_HOLDER = `${hostname()}:${process.pid}:${Date.now().toString(36)}`;

export function leaseStore(kv: KV, holder = LEASE_HOLDER): LeaseStore {
  const write = async (key: string, lease: Lease, revision: number | undefined) =>
    revision === undefined ? kv.create(key, JSON.stringify(lease)) : kv.update(key, JSON.stringify(lease), revision);
  return {
    async get(key) {
      return (await kvGet(kv, key, Lease))?.value;
    },
    async acquire(key, work, ttlMs) {
      let revision: number;
      for (let i = 0; ; i++) {
        const cur = await kvGet(kv, key, Lease);
        const now = Date.now();
        if (cur && cur.value.holder !== holder && Date.parse(cur.value.renewedAt) + cur.value.ttlMs > now) {
          throw new LeaseHeldError(key, cur.value, Date.parse(cur.value.renewedAt) + cur.value.ttlMs - now);
        }
        const lease: Lease = { holder, work, renewedAt: new Date(now).toISOString(), ttlMs, ...(cur && cur.value.holder !== holder ? { takenFrom: cur.value.holder } : {}) };
        try {
          revision = await write(key, lease, cur?.revision);
          break;
        } catch (err) {
          if (!isCasConflict(err) || i >= 5) throw err;
        }
      }
      let lost: string | undefined;
      let renewing = Promise.resolve();
      const timer = setInterval(() => {
        renewing = renewing.then(async () => {
          if (lost) return;
          try {
            revision = await write(key, { holder, work, renewedAt: new Date().toISOString(), ttlMs }, revision);
          } catch (err) {
            if (!isCasConflict(err)) return; // the bus is away: try again at the next tick, the ttl has room for it
            lost = (await kvGet(kv, key, Lease).catch(() => undefined))?.value.holder ?? "someone";
          }
        });
      }, Math.max(100, Math.floor(ttlMs / 3)));
      timer.unref();
      return {
        key,
        holder,
        check() {
          if (lost) throw new LeaseLostError(key, lost);
        },
        async release() {
          clearInterval(timer);
          await renewing;
          if (lost) return;
          try {
            await kv.delete(key, { previousSeq: revision });
          } catch (err) {
            if (!isCasConflict(err)) throw err;
          }
        },
      };
    },
  };
}
