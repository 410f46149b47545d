import type { BreakerReset } from "@moss/contracts";
import { breakerKey } from "./names";
import type { Stores } from "./stores";

/**
 * An operator's reset of a fingerprint's circuit breaker (`moss reset`): the breaker closes, and the fingerprint's
 * batches that waited for a human end (`released`): the next failure of it opens a new batch, which is rewritten.
 * Resolves with the record of the decision to publish (breaker.reset.v1), or undefined when the fingerprint has no
 * breaker (nothing is changed then).
 */
export async function resetBreaker(
  stores: Pick<Stores, "breakers" | "batches">,
  target: { agent: string; fingerprintKey: string; batchId?: string },
  by: string,
  now = new Date(),
): Promise<BreakerReset | undefined> {
  const at = now.toISOString();
  const reset = await stores.breakers.reset(target.agent, target.fingerprintKey, by, at);
  if (!reset) return undefined;
  const waiting = (await stores.batches.list()).filter((b) => b.state === "needs-human" && b.agent === target.agent && b.fingerprintKey === target.fingerprintKey);
  const released: string[] = [];
  for (const b of waiting) {
    const reason = `circuit breaker reset by ${by}: the next failure of this fingerprint opens a new batch`;
    const { moved } = await stores.batches.transition(b.batchId, "released", { reason });
    if (moved) released.push(b.batchId);
  }
  return {
    agent: reset.was.agent,
    fingerprint: reset.was.fingerprint,
    breaker: breakerKey(target.agent, target.fingerprintKey),
    ...(target.batchId ? { batchId: target.batchId } : {}),
    by,
    was: { consecutiveRejections: reset.was.consecutiveRejections, needsHuman: reset.was.needsHuman },
    released: released.sort(),
    at,
  };
}
