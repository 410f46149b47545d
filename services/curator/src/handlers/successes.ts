/**
 * Recorded successes into each agent's regression set: the evidence stored first (inline snapshot and cassette moved
 * to the blob store, then the event itself), then the case admitted by compare-and-set. A success of an agent the
 * config does not name is acknowledged and dropped with a warning: there is nothing to replay it against.
 */
import type { RegressionPolicy, RegressionStore } from "@moss/batch";
import type { BlobStore } from "@moss/blob";
import type { SuccessEvent } from "@moss/contracts";
import type { Logger } from "@moss/telemetry";
import { storeForm } from "../state/apply";

export interface SuccessDeps {
  blob: BlobStore;
  regressions: Pick<RegressionStore, "admit">;
  /** The agent's regression set policy; undefined for an agent the config does not name. */
  policyFor(agent: string): RegressionPolicy | undefined;
  log: Logger;
}

export async function ingestSuccess(ev: SuccessEvent, deps: SuccessDeps): Promise<void> {
  const policy = deps.policyFor(ev.agent);
  if (!policy) {
    deps.log.warn("recorded success of an agent the config does not name: dropped (add it under agents to keep its successes)", { agent: ev.agent, id: ev.id });
    return;
  }
  const st = storeForm(ev);
  for (const b of st.blobs) await deps.blob.put(b.bytes, b.ref.contentType ? { contentType: b.ref.contentType } : {});
  const ref = await deps.blob.put(st.eventJson, { contentType: "application/json" });
  const a = await deps.regressions.admit(st.event, ref, policy);
  if (a.kept) deps.log.info("recorded success kept in the regression set", { agent: ev.agent, id: ev.id, route: ev.route, ...(a.replaced ? { replaced: a.replaced } : {}), ...(a.evicted ? { evicted: a.evicted } : {}) });
  else deps.log.debug("recorded success not kept", { agent: ev.agent, id: ev.id, why: a.why });
}
