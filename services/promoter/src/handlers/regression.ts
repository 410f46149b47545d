/**
 * The curator's regression signal (`moss.regression.v1`): a batch's fingerprint failed again on its candidate's
 * version. While the candidate bakes, the recurrence goes on the batch's promotion journal, and the bake (whichever
 * replica runs it) rolls back at its next probe. After the bake it rolls the agent back when it comes within
 * `promoter.rollbackOnRecurrenceMs` of the promotion and that version is still the live one; a repeated or late
 * signal finds another version live and does nothing.
 */
import type { Regression } from "@moss/contracts";
import type { PromoterDeps } from "../deps";
import { onRollbackRequest } from "./rollback";

export async function onRegression(msg: Regression, deps: PromoterDeps): Promise<void> {
  const rec = await deps.batches.get(msg.batchId);
  if (!rec || rec.candidate?.commit !== msg.version) return;
  const log = deps.log.child({ batch: msg.batchId, agent: msg.agent, failure: msg.failureId });
  if (rec.state === "promoting") {
    await deps.batches.change(msg.batchId, (cur) =>
      cur.state !== "promoting" || !cur.promotion || cur.promotion.recurrence ? undefined : { ...cur, promotion: { ...cur.promotion, recurrence: { failureId: msg.failureId, at: msg.at } } },
    );
    log.warn("the fixed fingerprint failed again on the candidate during its bake: it will be rolled back");
    return;
  }
  if (rec.state !== "promoted") return;
  const dep = await deps.deployments.get(msg.agent);
  if (!dep || dep.version !== msg.version) return log.info("a recurrence on a version that is no longer live: nothing to do");
  const age = Date.parse(msg.at) - Date.parse(dep.updatedAt);
  if (!deps.rollbackOnRecurrenceMs || age > deps.rollbackOnRecurrenceMs) {
    return log.warn("the fixed fingerprint failed again on the promoted version, after the rollback window: not rolling back (promoter.rollbackOnRecurrenceMs)", { ageMs: age });
  }
  // It did not hold: no longer a version to come back to.
  await deps.deployments.record(msg.agent, (cur) => (cur && cur.lastGood.some((g) => g.version === msg.version) ? { ...cur, lastGood: cur.lastGood.filter((g) => g.version !== msg.version) } : undefined));
  await onRollbackRequest(
    {
      id: `recurrence-${msg.failureId}`.slice(0, 128),
      agent: msg.agent,
      by: "policy:rollbackOnRecurrence",
      reason: `batch ${msg.batchId}'s fingerprint failed again on ${msg.version.slice(0, 12)} (failure ${msg.failureId}), ${Math.round(age / 1000)} s after its promotion`,
      at: msg.at,
    },
    deps,
  );
}
