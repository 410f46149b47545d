import type { BatchState } from "@moss/contracts";
import { Codes, MossError } from "@moss/errors";

/** A batch was asked to move along an edge the state machine does not have (e.g. promote a rejected batch). */
export class BatchTransitionError extends MossError {
  override name = "BatchTransitionError";
  constructor(batchId: string, from: BatchState, to: BatchState) {
    super(Codes.BATCH_TRANSITION, `batch ${batchId} is ${from}; it cannot become ${to}`);
  }
}

/**
 * A stage tried to move a batch that has ended (an operator rejected it while the stage worked, or another replica
 * finished it). Moot: the bus drops the message with a log line; the batch's end stands.
 */
export class BatchEndedError extends MossError {
  override name = "BatchEndedError";
  readonly moot = true;
  constructor(batchId: string, from: BatchState, to: BatchState, why?: string) {
    super(Codes.BATCH_ENDED, `batch ${batchId} ended (${from}${why ? `: ${why}` : ""}) before it could become ${to}; this work on it is dropped`);
  }
}

export class BatchNotFoundError extends MossError {
  override name = "BatchNotFoundError";
  constructor(batchId: string) {
    super(Codes.BATCH_NOT_FOUND, `no batch ${batchId} (list batches with \`moss batches\`)`);
  }
}

/** A promotion was asked for a batch whose candidate never passed replay. */
export class NoCandidateError extends MossError {
  override name = "NoCandidateError";
  constructor(batchId: string) {
    super(Codes.NO_CANDIDATE, `batch ${batchId} has no candidate that passed replay`);
  }
}
