/**
 * The names Moss gives to a batch's things, spelled here only: KV keys, git branches, image tags and batch ids.
 * Agent names, batch ids and fingerprint keys are NATS-token safe (see @moss/contracts), so every key is too.
 */
import { randomBytes } from "node:crypto";

/** `moss_fingerprints` key of a fingerprint's circuit breaker: `<agent>.<fingerprint key>`. */
export function breakerKey(agent: string, fingerprintKey: string): string {
  return `${agent}.${fingerprintKey}`;
}

/** The agent and fingerprint key a breaker key names, or undefined when it is not one (`moss reset AGENT.FPKEY`). */
export function parseBreakerKey(key: string): { agent: string; fingerprintKey: string } | undefined {
  const m = /^([a-z0-9][a-z0-9_-]{0,62})\.([A-Za-z0-9_-]{1,64})$/.exec(key);
  return m ? { agent: m[1]!, fingerprintKey: m[2]! } : undefined;
}

/** `moss_candidates` key of a candidate that was not promoted: `<agent>.<fingerprint key>.<batch>.<attempt>`. */
export function candidateKey(agent: string, fingerprintKey: string, batchId: string, attempt: number): string {
  return `${agent}.${fingerprintKey}.${batchId}.${attempt}`;
}

/** The `moss_candidates` key filter of an agent's candidates, or of one fingerprint's. */
export function candidateFilter(agent?: string, fingerprintKey?: string): string {
  if (!agent) return ">";
  return fingerprintKey ? `${agent}.${fingerprintKey}.>` : `${agent}.>`;
}

/** `moss_deployments` key of an agent's live deployment. */
export function deploymentKey(agent: string): string {
  return agent;
}

/** The git branch that holds attempt `attempt` of a batch, in the agent's repository. */
export function branchName(batchId: string, attempt: number): string {
  return `moss/${batchId}/${attempt}`;
}

/** The image tag of an agent built from a commit: `moss/<agent>:<first 12 hex digits>`. */
export function imageTag(agent: string, commit: string): string {
  return `moss/${agent}:${commit.slice(0, 12)}`;
}

/** A new batch id: time-ordered (base 36 ms) and unique (40 random bits). */
export function newBatchId(now = Date.now()): string {
  return `b${now.toString(36)}${randomBytes(5).toString("hex")}`;
}
