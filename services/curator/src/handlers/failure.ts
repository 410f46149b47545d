import { randomBytes } from "node:crypto";
import type { BlobStore } from "@moss/blob";
import { kvGet, kvUpdate, type KV } from "@moss/bus";
import { BatchRecord, Buckets, type BatchReady, type FailureEvent } from "@moss/contracts";
import { context, injectContext, mossTracer, trace, type Logger } from "@moss/telemetry";
import { FINGERPRINT_VERSION, fingerprintOf } from "./fingerprint";

export interface CuratorDeps {
  blob: BlobStore;
  batches: KV;
  open: KV;
  policy: { batchSize: number; batchWindowMs: number; maxSamples: number };
  publishReady: (msg: BatchReady, trace: Record<string, string>) => Promise<void>;
  log: Logger;
  now?: () => number;
}

const newBatchId = (now: number) => `b${now.toString(36)}${randomBytes(5).toString("hex")}`;

/**
 * Files one failure into the batch collecting for its fingerprint (opening one if none is), closing the batch
 * when it is full. Idempotent: the same failure twice is counted once, and a batch that is already closed is
 * (re)announced, so a crash anywhere in here only means redelivery.
 */
export async function handleFailure(ev: FailureEvent, deps: CuratorDeps): Promise<void> {
  const now = deps.now ?? Date.now;
  const event = await storeSnapshot(ev, deps.blob);
  const eventRef = await deps.blob.put(JSON.stringify(event), { contentType: "application/json" });
  const { fingerprint, key } = fingerprintOf(ev);
  const openKey = `${ev.agent}.${key}`;

  for (let round = 0; round < 50; round++) {
    const batchId = await openBatchFor(openKey, ev, fingerprint, deps, now());
    let outcome = "missing" as "filed" | "already" | "closed" | "missing";
    const res = await kvUpdate(
      deps.batches,
      batchId,
      BatchRecord,
      (cur): BatchRecord | undefined => {
        if (!cur) return void (outcome = "missing");
        if (cur.failures.some((f) => f.id === ev.id)) return void (outcome = "already");
        if (cur.state !== "collecting") return void (outcome = "closed");
        outcome = "filed";
        const failures = cur.failures.length < deps.policy.maxSamples ? [...cur.failures, { id: ev.id, event: eventRef }] : cur.failures;
        const count = cur.count + 1;
        const full = count >= deps.policy.batchSize;
        const at = new Date(now()).toISOString();
        return { ...cur, failures, count, state: full ? "ready" : "collecting", ...(full ? { closedAt: at } : {}), updatedAt: at };
      },
      Buckets.batches,
    );
    if ((outcome === "filed" || outcome === "already") && res) {
      // A redelivered failure of a closed batch re-announces it: the crash may have come before the publish.
      if (res.value.state !== "collecting") await announce(res.value, openKey, deps);
      return;
    }
    // The batch closed before this failure got in: forget the stale open key and open the next batch.
    if (outcome === "closed") await clearOpenKey(deps.open, openKey, batchId);
  }
  throw new Error(`could not file failure ${ev.id}: the batch for ${openKey} kept changing under it`);
}

/** Closes batches whose window has passed. Safe to run from every replica at once (CAS + publish dedup). */
export async function sweepExpired(deps: CuratorDeps): Promise<number> {
  const now = deps.now ?? Date.now;
  let closed = 0;
  const keys = await deps.open.keys();
  for await (const openKey of keys) {
    const entry = await deps.open.get(openKey);
    if (!entry || entry.operation !== "PUT") continue;
    const batchId = entry.string();
    const res = await kvUpdate(
      deps.batches,
      batchId,
      BatchRecord,
      (cur): BatchRecord | undefined => {
        if (!cur || cur.state !== "collecting" || Date.parse(cur.deadline) > now() || cur.count === 0) return undefined;
        const at = new Date(now()).toISOString();
        return { ...cur, state: "ready", closedAt: at, updatedAt: at };
      },
      Buckets.batches,
    );
    if (res?.value.state === "ready") {
      await announce(res.value, openKey, deps);
      closed++;
    }
  }
  return closed;
}

/** Publishes batch-ready in the batch's own trace, then frees the fingerprint for the next batch. */
async function announce(rec: BatchRecord, openKey: string, deps: CuratorDeps): Promise<void> {
  await deps.publishReady(
    { batchId: rec.batchId, agent: rec.agent, fingerprint: rec.fingerprint, baseVersion: rec.baseVersion, failures: rec.failures, count: rec.count, attempt: 1 },
    rec.trace,
  );
  await clearOpenKey(deps.open, openKey, rec.batchId);
  deps.log.info("batch ready", { batch: rec.batchId, agent: rec.agent, count: rec.count, fingerprint: rec.fingerprint });
}

async function clearOpenKey(open: KV, openKey: string, batchId: string): Promise<void> {
  const e = await open.get(openKey);
  if (e && e.operation === "PUT" && e.string() === batchId) {
    await open.delete(openKey, { previousSeq: e.revision }).catch(() => undefined);
  }
}

/** The batch collecting for this fingerprint; opens one (CAS on the open key) if there is none. */
async function openBatchFor(openKey: string, ev: FailureEvent, fingerprint: string, deps: CuratorDeps, now: number): Promise<string> {
  for (;;) {
    const e = await deps.open.get(openKey);
    if (e && e.operation === "PUT" && e.length > 0) {
      const batchId = e.string();
      if (await kvGet(deps.batches, batchId, BatchRecord)) return batchId;
      // Crash between claiming the key and writing the record: write the record now.
      await createRecord(batchId, ev, fingerprint, deps, now);
      return batchId;
    }
    const batchId = newBatchId(now);
    try {
      if (e) await deps.open.update(openKey, batchId, e.revision);
      else await deps.open.create(openKey, batchId);
    } catch {
      continue; // another replica opened it first
    }
    await createRecord(batchId, ev, fingerprint, deps, now);
    return batchId;
  }
}

async function createRecord(batchId: string, ev: FailureEvent, fingerprint: string, deps: CuratorDeps, now: number): Promise<void> {
  // The batch's root span: every later stage, however much later, joins this trace through `trace`.
  const span = mossTracer().startSpan(`batch ${batchId}`, { root: true, attributes: { "moss.batch": batchId, "moss.agent": ev.agent, "moss.fingerprint": fingerprint } });
  const carrier = injectContext({}, trace.setSpan(context.active(), span));
  span.end();
  const at = new Date(now).toISOString();
  const rec: BatchRecord = {
    batchId,
    agent: ev.agent,
    fingerprint,
    baseVersion: ev.version,
    state: "collecting",
    failures: [],
    count: 0,
    attached: 0,
    fingerprintVersion: FINGERPRINT_VERSION,
    openedAt: at,
    deadline: new Date(now + deps.policy.batchWindowMs).toISOString(),
    trace: carrier,
    attempt: 0,
    updatedAt: at,
  };
  await deps.batches.create(batchId, JSON.stringify(rec)).catch((err: Error) => {
    if (!/exists/i.test(err.message)) throw err;
  });
}

/** Moves an inline snapshot into the blob store so batch evidence stays small and content-addressed. */
async function storeSnapshot(ev: FailureEvent, blob: BlobStore): Promise<FailureEvent> {
  if (!ev.snapshot?.inlineBase64) return ev;
  const ref = await blob.put(Buffer.from(ev.snapshot.inlineBase64, "base64"), { contentType: "application/x-tar" });
  return { ...ev, snapshot: { path: ev.snapshot.path, blob: ref } };
}
