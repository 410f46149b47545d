import { AgentName, BlobRef, GitSha, Id, TraceCarrier } from "@moss/contracts";
import { z } from "zod";

/** One evidence sample: the failure id, its stored event, and a signature of its request (for diversity). */
export const Sample = z.object({ id: Id, event: BlobRef, sig: z.string() });
export type Sample = z.infer<typeof Sample>;

/** A batch still collecting failures. */
export const OpenBatch = z.object({
  batchId: Id,
  fingerprint: z.string(),
  fingerprintVersion: z.string(),
  baseVersion: GitSha,
  openedAt: z.string(),
  deadline: z.string(),
  count: z.number().int().nonnegative(),
  samples: z.array(Sample),
  trace: TraceCarrier,
});
export type OpenBatch = z.infer<typeof OpenBatch>;

/** A closed batch on its way out (the outbox): written to `moss_batches` and announced, then dropped from here. */
export const ClosingBatch = OpenBatch.extend({
  fpKey: z.string(),
  closedAt: z.string(),
  /** Decided once, under CAS, so a redo after a crash announces the same thing. */
  decision: z.enum(["ready", "queued", "needs-human"]).optional(),
});
export type ClosingBatch = z.infer<typeof ClosingBatch>;

/** A closed batch in the pipeline: new failures of its fingerprint attach to it instead of opening another. */
export const ActiveBatch = z.object({ batchId: Id, attached: z.number().int().nonnegative(), baseVersion: GitSha });
export type ActiveBatch = z.infer<typeof ActiveBatch>;

/**
 * Everything the curator knows about one agent, in one KV entry (`agent.<name>` in `moss_curator`), moved by
 * compare-and-set only: any number of curator replicas can apply chunks concurrently without losing or
 * duplicating a failure, because the applied stream sequences are part of the same write.
 */
export const CuratorState = z.object({
  agent: AgentName,
  /** Stream sequences applied and not yet below the consumer's ack floor. */
  applied: z.array(z.tuple([z.number().int(), z.number().int()])),
  open: z.record(z.string(), OpenBatch),
  active: z.record(z.string(), ActiveBatch),
  closing: z.record(z.string(), ClosingBatch),
  /** Batches closed while the rewrite rate limit was exhausted, oldest first. */
  queued: z.array(ClosingBatch),
  /** When batches were sent to the rewriter (ms), for the rate limit window. */
  announcedAt: z.array(z.number()),
});
export type CuratorState = z.infer<typeof CuratorState>;

export const stateKey = (agent: string) => `agent.${agent}`;
/** The `moss_curator` key filter of every agent's state, and the agent a state key belongs to. */
export const STATE_KEYS = "agent.*";
export const agentOfStateKey = (key: string) => key.slice("agent.".length);

export function emptyState(agent: string): CuratorState {
  return { agent, applied: [], open: {}, active: {}, closing: {}, queued: [], announcedAt: [] };
}
