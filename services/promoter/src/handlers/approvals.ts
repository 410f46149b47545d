/** An operator's consent (or refusal) of a batch whose candidate passed replay. */
import { BatchNotFoundError, isFinal } from "@moss/batch";
import { Messages, type Approval, type BatchRecord } from "@moss/contracts";
import type { PromoterDeps } from "../deps";
import { promote } from "../promotion/promote";

export async function onApproval(msg: Approval, deps: PromoterDeps): Promise<void> {
  const cur = await deps.batches.get(msg.batchId);
  if (!cur) throw new BatchNotFoundError(msg.batchId);
  if (msg.decision === "reject") return reject(cur, msg, deps);
  // Approving twice, or a redelivered approval of a batch already promoted, changes nothing.
  if (cur.state !== "awaiting-approval" && cur.state !== "promoting") {
    deps.log.warn("approval ignored", { batch: msg.batchId, state: cur.state });
    return;
  }
  await promote(cur, msg.by, deps);
}

/**
 * An operator's reject, from any state that is not final. A batch whose candidate bakes is not rejected under the
 * bake: the rejection goes on its promotion journal, and the bake (whichever replica runs it) rolls back at its next
 * probe, so the batch ends `rolled-back` with the operator's reason. Any other batch ends `rejected` now; a stage still
 * working on it finds it ended and drops its work.
 */
async function reject(cur: BatchRecord, msg: Approval, deps: PromoterDeps): Promise<void> {
  const why = `rejected by ${msg.by}${msg.reason ? `: ${msg.reason}` : ""}`;
  const log = deps.log.child({ batch: msg.batchId, by: msg.by });
  if (cur.state === "promoting") {
    const { record } = await deps.batches.change(msg.batchId, (b) =>
      b.state !== "promoting" || !b.promotion || b.promotion.decision || b.promotion.rejected ? undefined : { ...b, promotion: { ...b.promotion, rejected: { by: msg.by, reason: msg.reason, at: new Date().toISOString() } } },
    );
    if (record.promotion?.decision && !record.promotion.rejected) log.warn("reject came after the bake decided; the promotion ends as decided", { outcome: record.promotion.decision.outcome.outcome });
    else log.warn("rejected while its candidate bakes: the bake rolls it back at its next probe");
    return;
  }
  if (cur.state !== "rejected" && isFinal(cur.state)) {
    log.warn("reject ignored: the batch has ended", { state: cur.state });
    return;
  }
  // The refusal counts against the fingerprint (once), before the batch ends.
  if (cur.fingerprintKey) {
    const threshold = deps.agent(cur.agent).curation.breakerThreshold;
    await deps.breakers.count({ agent: cur.agent, fingerprint: cur.fingerprint, fingerprintKey: cur.fingerprintKey, batchId: cur.batchId, attempt: cur.attempt, kind: "verdict", rejected: true }, threshold);
  }
  // The record keeps the verdict's reason, so a redelivery (the publish may have been lost after the transition)
  // announces the same verdict again, whoever sent this one; its msgId makes the repeat a no-op when it got out.
  const rec = cur.state === "rejected" ? cur : (await deps.batches.transition(msg.batchId, "rejected", { reason: why })).record;
  const c = rec.candidate ?? rec.built;
  await deps.publish(Messages.batchVerdict, { batchId: msg.batchId, agent: rec.agent, attempt: rec.attempt, commit: c?.commit, image: c?.image, verdict: "rejected", reason: rec.reason ?? why });
  log.info("rejected", { from: cur.state });
}
