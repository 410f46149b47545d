import type { BatchStore, BreakerStore } from "@moss/batch";
import type { BlobStore } from "@moss/blob";
import type { KV } from "@moss/bus";
import type { FailureEvent, Publish } from "@moss/contracts";
import type { Logger } from "@moss/telemetry";
import type { FingerprintResult } from "./fingerprint";
import type { Policy } from "./state/apply";

/** What the curator's handler, outbox and timer work with; main.ts wires it. */
export interface CuratorDeps {
  blob: BlobStore;
  /** `moss_curator`: one state entry per agent. */
  state: KV;
  batches: BatchStore;
  /** The curator reads breakers (the promoter, who judges attempts, counts them). */
  breakers: Pick<BreakerStore, "open">;
  policyFor(agent: string): Policy;
  fingerprint(ev: FailureEvent): FingerprintResult;
  /** The curator consumer's ack floor (stream seq); applied sequences at or below it are forgotten. */
  ackFloor(): number;
  publish: Publish;
  log: Logger;
  now?: () => number;
  /** Largest value one KV entry may hold (the server's max payload); the agent's whole state must fit. */
  maxStateBytes?: number;
}

/** Compare-and-set rounds on one agent's state before a chunk (or a tick) gives up and is retried. */
export const MAX_CAS_ROUNDS = 100;
