import type { BatchState } from "@moss/contracts";
import { Codes, MossError } from "@moss/errors";

/** A batch was asked to move along an edge the state machine does not have (e.g. promote a rejected batch). */
export class BatchTransitionError extends MossError {
  override name = "BatchTransitionError";
  constructor(batchId: string, from: BatchState, to: BatchState) {
    super(Codes.BATCH_TRANSITION, `batch ${batchId} is ${from}; it cannot become ${to}`);
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
