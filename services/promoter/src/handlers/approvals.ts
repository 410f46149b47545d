/** An operator's consent (or refusal) of a batch whose candidate passed replay. */
import { BatchNotFoundError, canMove } from "@moss/batch";
import { Messages, type Approval } from "@moss/contracts";
import type { PromoterDeps } from "../deps";
import { promote } from "../promotion/promote";

export async function onApproval(msg: Approval, deps: PromoterDeps): Promise<void> {
  const cur = await deps.batches.get(msg.batchId);
  if (!cur) throw new BatchNotFoundError(msg.batchId);
  if (msg.decision === "reject") {
    // The refusal counts against the fingerprint (once), before the batch ends; a batch that cannot be rejected any
    // more is refused by the state machine below, uncounted.
    if (cur.fingerprintKey && (cur.state === "rejected" || canMove(cur.state, "rejected"))) {
      const threshold = deps.agent(cur.agent).curation.breakerThreshold;
      await deps.breakers.count({ agent: cur.agent, fingerprint: cur.fingerprint, fingerprintKey: cur.fingerprintKey, batchId: cur.batchId, attempt: cur.attempt, kind: "verdict", rejected: true }, threshold);
    }
    // The record keeps the verdict's reason, so a redelivery (the publish may have been lost after the transition)
    // announces the same verdict again, whoever sent this one; its msgId makes the repeat a no-op when it got out.
    const rec = cur.state === "rejected" ? cur : (await deps.batches.transition(msg.batchId, "rejected", { reason: `rejected by ${msg.by}${msg.reason ? `: ${msg.reason}` : ""}` })).record;
    await deps.publish(Messages.batchVerdict, { batchId: msg.batchId, agent: rec.agent, attempt: rec.attempt, commit: rec.candidate?.commit, image: rec.candidate?.image, verdict: "rejected", reason: rec.reason ?? `rejected by ${msg.by}` });
    return;
  }
  // Approving twice, or a redelivered approval of a batch already promoted, changes nothing.
  if (cur.state !== "awaiting-approval" && cur.state !== "promoting") {
    deps.log.warn("approval ignored", { batch: msg.batchId, state: cur.state });
    return;
  }
  await promote(cur, msg.by, deps);
}
