import { getBatch, kvUpdate, type KV } from "@moss/bus";
import { Buckets, FingerprintBreaker, type BatchVerdict, type CandidateFailed, type PromotionOutcome, type ReplayCompleted } from "@moss/contracts";
import type { Logger } from "@moss/telemetry";

export interface BreakerDeps {
  batches: KV;
  breakers: KV;
  /** Consecutive rejected candidates that open a fingerprint's breaker, per agent. */
  thresholdFor(agent: string): number;
  log: Logger;
}

type Outcome =
  | { kind: "replay"; msg: ReplayCompleted }
  | { kind: "candidate"; msg: CandidateFailed }
  | { kind: "verdict"; msg: BatchVerdict }
  | { kind: "promotion"; msg: PromotionOutcome };

/**
 * Counts rejected candidates per fingerprint: replay failed, no candidate (coding agent failed, no change, build
 * failed), operator reject, rollback. A promotion resets the count. At the threshold the fingerprint needs a
 * human: no further rewrites start for it until `moss reset`.
 */
export async function onOutcome(o: Outcome, deps: BreakerDeps): Promise<void> {
  const { batchId } = o.msg;
  const attempt = o.msg.attempt;
  let rejected: boolean;
  switch (o.kind) {
    case "replay":
      if (o.msg.passed) return;
      rejected = true;
      break;
    case "candidate":
      rejected = true;
      break;
    case "verdict":
      if (o.msg.verdict !== "rejected") return;
      rejected = true;
      break;
    case "promotion":
      rejected = o.msg.outcome !== "promoted";
      break;
  }
  const rec = await getBatch(deps.batches, batchId);
  if (!rec?.value.fingerprintKey) return; // batches from before breakers existed, or unknown
  const { agent, fingerprint, fingerprintKey } = rec.value;
  const mark = `${batchId}:${attempt}:${o.kind}`;
  const threshold = deps.thresholdFor(agent);
  await kvUpdate(
    deps.breakers,
    `${agent}.${fingerprintKey}`,
    FingerprintBreaker,
    (cur) => {
      if (cur?.counted.includes(mark)) return undefined; // redelivered outcome
      const consecutive = rejected ? (cur?.consecutiveRejections ?? 0) + 1 : 0;
      const needsHuman = (cur?.needsHuman ?? false) || consecutive >= threshold;
      if (needsHuman && !cur?.needsHuman) deps.log.warn("fingerprint needs a human: breaker open", { agent, fingerprint, consecutive });
      return {
        agent,
        fingerprint,
        consecutiveRejections: consecutive,
        needsHuman,
        counted: [...(cur?.counted ?? []), mark].slice(-100),
        updatedAt: new Date().toISOString(),
        resetBy: cur?.resetBy,
      };
    },
    Buckets.fingerprints,
  );
}

export type { Outcome };
