import { createHash } from "node:crypto";
import type { CurationPolicy } from "@moss/config";
import { describeInput, type BatchState, type BlobRef, type FailureEvent, type SuccessEvent } from "@moss/contracts";
import type { Fingerprint } from "../fingerprint";
import { isFinal } from "@moss/batch";
import { addSeq, hasSeq } from "@moss/bus";
import type { ClosingBatch, CuratorState, OpenBatch, Sample } from "./state";

/** Batching policy of one agent (config `curator` defaults, overridden per agent: see resolveAgent). */
export type Policy = Omit<CurationPolicy, "breakerThreshold">;

/** The fingerprint key of an agent's overflow batch (real keys are 20 hex digits). */
export const OVERFLOW_KEY = "overflow";

/** The readable fingerprint of the overflow batch: what happened, and what an operator can do about it. */
export function overflowFingerprint(max: number): string {
  return `overflow: more than ${max} distinct fingerprints waiting at once; these failures did not group (add curator.fingerprint rules, or raise maxOpenFingerprints)`;
}

/** A failure ready to be filed: its stream sequence, fingerprint, and how it would be stored as a sample. */
export interface PreparedFailure {
  seq: number;
  ev: FailureEvent;
  fp: Fingerprint;
  /** Signature of the request (method, path, body): samples prefer different requests. */
  sig: string;
  /** The event as stored (inline snapshot replaced by a blob ref) and the refs; computed only for samples. */
  stored(): StoredFailure;
}

export interface StoredFailure<E extends FailureEvent | SuccessEvent = FailureEvent> {
  event: E;
  eventJson: string;
  eventRef: BlobRef;
  /** The parts that were inline in the event (snapshots, cassette), each to be stored as a blob of its own. */
  blobs: { bytes: Buffer; ref: BlobRef }[];
}

/** What the pipeline says about a batch the curator has sent out. */
export interface BatchLookup {
  state: BatchState;
  /** The candidate's commit, once it is promoted, promoting (baking) or rolled back. */
  promotedCommit?: string;
}

export interface ApplyResult {
  state: CuratorState;
  /** Failures that became evidence samples: their blobs must be stored before the state is written. */
  newSamples: PreparedFailure[];
  /** Failures of a fingerprint fixed by a promoted batch that came back on the promoted version. */
  regressions: Array<{ batchId: string; fingerprint: string; ev: FailureEvent }>;
  /**
   * Failures of another fingerprint on a candidate that is baking or was rolled back: evidence against that
   * candidate, attached to its batch, never a batch of their own (that batch would be rewritten on a version no one runs).
   */
  onCandidate: Array<{ batchId: string; ev: FailureEvent }>;
  applied: number;
}

/**
 * Files failures into the agent's state. Pure: the same state and failures give the same result, and failures
 * whose stream sequence is already applied are skipped — that is what makes redelivery and replicas safe.
 */
export function applyFailures(
  prev: CuratorState,
  items: readonly PreparedFailure[],
  policy: Policy,
  now: number,
  lookup: (batchId: string) => BatchLookup | undefined,
  newBatch: (item: PreparedFailure) => { batchId: string; trace: Record<string, string> },
): ApplyResult {
  const state: CuratorState = structuredClone(prev);
  const newSamples: PreparedFailure[] = [];
  const regressions: ApplyResult["regressions"] = [];
  const onCandidate: ApplyResult["onCandidate"] = [];
  let applied = 0;
  const at = new Date(now).toISOString();

  /**
   * A batch of `key` in the pipeline (or waiting for a human) takes the failure as attached evidence (true). One
   * that has reached a final state is retired instead, so the failure opens a new batch; a promoted one that fails
   * again on its own version is a regression signal.
   */
  const attachOrRetire = (key: string, fingerprint: string, item: PreparedFailure): boolean => {
    const active = state.active[key];
    if (!active) return false;
    const b = lookup(active.batchId);
    if (!b || !isFinal(b.state)) {
      // The candidate fails the same way while it bakes: evidence for the batch, and the promoter's signal to roll back.
      if (b?.state === "promoting" && b.promotedCommit && item.ev.version === b.promotedCommit) regressions.push({ batchId: active.batchId, fingerprint, ev: item.ev });
      active.attached++;
      return true;
    }
    if (b.state === "rolled-back" && item.ev.version === b.promotedCommit) {
      // A straggler of the candidate that was rolled back: evidence of why, on a version no one runs any more.
      active.attached++;
      return true;
    }
    if (b.state === "promoted" && item.ev.version !== b.promotedCommit && item.ev.version === active.baseVersion) {
      // Traffic still served by the old version while the fix rolled out: it belongs to the fixed batch.
      active.attached++;
      return true;
    }
    if (b.state === "promoted" && item.ev.version === b.promotedCommit) {
      regressions.push({ batchId: active.batchId, fingerprint, ev: item.ev });
    }
    delete state.active[key];
    return false;
  };

  /** The active batch whose candidate, baking or rolled back, is `version`, if any. */
  const candidateBatch = (version: string) => {
    for (const a of Object.values(state.active)) {
      const b = lookup(a.batchId);
      if (b?.promotedCommit === version && (b.state === "promoting" || b.state === "rolled-back")) return a;
    }
    return undefined;
  };

  const waiting = () => Object.keys(state.open).length + Object.keys(state.closing).length + state.queued.length;

  for (const item of items) {
    if (hasSeq(state.applied, item.seq)) continue;
    addSeq(state.applied, item.seq);
    applied++;
    let key = item.fp.key;
    let fingerprint = item.fp.fingerprint;
    if (attachOrRetire(key, fingerprint, item)) continue;
    const judged = state.open[key] ? undefined : candidateBatch(item.ev.version);
    if (judged) {
      judged.attached++;
      onCandidate.push({ batchId: judged.batchId, ev: item.ev });
      continue;
    }
    if (!state.open[key] && key !== OVERFLOW_KEY && waiting() >= policy.maxOpenFingerprints) {
      key = OVERFLOW_KEY;
      fingerprint = overflowFingerprint(policy.maxOpenFingerprints);
      if (attachOrRetire(key, fingerprint, item)) continue;
    }

    let ob = state.open[key];
    if (!ob) {
      const { batchId, trace } = newBatch(item);
      ob = {
        batchId,
        fingerprint,
        fingerprintVersion: item.fp.version,
        baseVersion: item.ev.version,
        openedAt: at,
        deadline: new Date(now + policy.batchWindowMs).toISOString(),
        count: 0,
        samples: [],
        trace,
      };
      state.open[key] = ob;
    }
    if (ob.samples.some((s) => s.id === item.ev.id)) continue; // the same failure twice counts once
    ob.count++;
    const sample = pickSample(ob, item, policy.maxSamples);
    if (sample) newSamples.push(item);
    if (ob.count >= policy.batchSize) close(state, key, at);
  }
  return { state, newSamples, regressions, onCandidate, applied };
}

/** Closes every open batch whose window has passed. Returns how many. */
export function closeExpired(state: CuratorState, now: number): number {
  let n = 0;
  const at = new Date(now).toISOString();
  for (const [key, ob] of Object.entries(state.open)) {
    if (Date.parse(ob.deadline) <= now && ob.count > 0) {
      close(state, key, at);
      n++;
    }
  }
  return n;
}

/**
 * Decides, once, what happens to each closed batch: `needs-human` if its fingerprint's breaker is open,
 * `queued` if the agent's rewrite rate limit is used up, else `ready`. Also releases queued batches the
 * window now allows. Mutates `state`; returns whether anything changed.
 */
export function decide(state: CuratorState, now: number, policy: Policy, breakerOpen: (fpKey: string) => boolean): boolean {
  let changed = false;
  const inWindow = state.announcedAt.filter((t) => t > now - policy.rateWindowMs);
  if (inWindow.length !== state.announcedAt.length) changed = true;
  state.announcedAt = inWindow;
  while (state.queued.length && state.announcedAt.length < policy.maxRewrites) {
    const q = state.queued.shift()!;
    state.closing[q.batchId] = { ...q, decision: breakerOpen(q.fpKey) ? "needs-human" : "ready" };
    if (state.closing[q.batchId]!.decision === "ready") state.announcedAt.push(now);
    changed = true;
  }
  for (const c of Object.values(state.closing)) {
    if (c.decision) continue;
    changed = true;
    if (breakerOpen(c.fpKey)) c.decision = "needs-human";
    else if (state.announcedAt.length >= policy.maxRewrites) c.decision = "queued";
    else {
      c.decision = "ready";
      state.announcedAt.push(now);
    }
  }
  return changed;
}

function close(state: CuratorState, key: string, at: string): void {
  const ob = state.open[key]!;
  delete state.open[key];
  state.closing[ob.batchId] = { ...ob, fpKey: key, closedAt: at };
  state.active[key] = { batchId: ob.batchId, attached: 0, baseVersion: ob.baseVersion };
}

/** Keeps up to max samples, preferring different requests: a new request replaces a repeated one. */
function pickSample(ob: OpenBatch, item: PreparedFailure, max: number): boolean {
  const s = (): Sample => ({ id: item.ev.id, event: item.stored().eventRef, sig: item.sig });
  if (ob.samples.length < max) {
    ob.samples.push(s());
    return true;
  }
  if (ob.samples.some((x) => x.sig === item.sig)) return false;
  const seen = new Set<string>();
  let repeated = -1;
  ob.samples.forEach((x, i) => {
    if (seen.has(x.sig)) repeated = i;
    seen.add(x.sig);
  });
  if (repeated < 0) return false;
  ob.samples[repeated] = s();
  return true;
}

/**
 * The request signature samples are diversified on: FNV-1a (64-bit, as two 32-bit halves) of method, path and
 * body. Not a security boundary, only "is this request different", and it runs once per failure in a storm.
 */
export function requestSig(ev: FailureEvent): string {
  // Head and tail of the body tell requests apart as well as the whole of it, at a fixed cost per failure.
  const body = ev.request?.body ?? ev.invocation?.stdin ?? "";
  const text = `${describeInput(ev)}\n${body.length}\n${body.length > 512 ? body.slice(0, 256) + body.slice(-256) : body}`;
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193 ^ text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
  }
  return (h1 >>> 0).toString(16).padStart(8, "0") + (h2 >>> 0).toString(16).padStart(8, "0");
}

/** The event as the blob store keeps it: inline snapshots and an inline cassette become blobs of their own. */
export function storeForm<E extends FailureEvent | SuccessEvent>(ev: E): StoredFailure<E> {
  let event: E = ev;
  const blobs: StoredFailure["blobs"] = [];
  const blobOf = (bytes: Buffer, contentType: string): BlobRef => {
    const ref: BlobRef = { sha256: createHash("sha256").update(bytes).digest("hex"), size: bytes.length, contentType };
    blobs.push({ bytes, ref });
    return ref;
  };
  if (ev.snapshot?.inlineBase64) event = { ...event, snapshot: { path: ev.snapshot.path, blob: blobOf(Buffer.from(ev.snapshot.inlineBase64, "base64"), "application/x-tar") } };
  if ("afterSnapshot" in ev && ev.afterSnapshot?.inlineBase64) event = { ...event, afterSnapshot: { path: ev.afterSnapshot.path, blob: blobOf(Buffer.from(ev.afterSnapshot.inlineBase64, "base64"), "application/x-tar") } };
  if (ev.cassette?.inline) event = { ...event, cassette: { blob: blobOf(Buffer.from(JSON.stringify(ev.cassette.inline)), "application/json") } };
  const eventJson = JSON.stringify(event);
  const buf = Buffer.from(eventJson);
  return { event, eventJson, eventRef: { sha256: createHash("sha256").update(buf).digest("hex"), size: buf.length, contentType: "application/json" }, blobs };
}

export type { ClosingBatch };
