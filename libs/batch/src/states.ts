import type { BatchState } from "@moss/contracts";

/**
 * The batch state machine: which states may follow each state (retries and rollback included). A state with no way
 * out is final; everything else about finality is derived from this table.
 *
 * `needs-human` is not final: it waits for an operator, and failures of its fingerprint attach to it meanwhile;
 * `moss reset` ends the wait (`released`).
 *
 * An operator may reject a batch in any state that has a record and is not final (`collecting` lives only in the
 * curator's state until it closes); a stage still working on it then finds it ended and drops its work (BatchEndedError).
 */
export const Transitions: Readonly<Record<BatchState, readonly BatchState[]>> = Object.freeze({
  collecting: ["ready", "queued", "needs-human"],
  queued: ["ready", "needs-human", "rejected"],
  "needs-human": ["released", "rejected"],
  ready: ["rewriting", "exhausted", "needs-human", "rejected"],
  rewriting: ["rewriting", "candidate", "exhausted", "needs-human", "rejected"],
  candidate: ["replaying", "rewriting", "exhausted", "needs-human", "rejected"],
  replaying: ["awaiting-approval", "rewriting", "exhausted", "needs-human", "rejected"],
  "awaiting-approval": ["promoting", "rejected"],
  /**
   * `rejected`: the candidate failed its last check before the swap (signatures, image); nothing was deployed. An
   * operator's reject of a promoting batch ends its bake in a rollback instead (`rolled-back`).
   */
  promoting: ["promoted", "rolled-back", "rejected"],
  promoted: [],
  "rolled-back": [],
  rejected: [],
  exhausted: [],
  released: [],
});

/** Whether a batch in this state is over: no stage acts on it again, and the next failure of its fingerprint opens a new batch. */
export function isFinal(state: BatchState): boolean {
  return Transitions[state].length === 0;
}

/** Whether the state machine has the edge `from → to` (staying in a state is not an edge; see transition()). */
export function canMove(from: BatchState, to: BatchState): boolean {
  return Transitions[from].includes(to);
}

/** Every final state, in table order. */
export const FINAL_STATES: readonly BatchState[] = Object.freeze((Object.keys(Transitions) as BatchState[]).filter(isFinal));
