export { Transitions, FINAL_STATES, canMove, isFinal } from "./states";
export { branchName, breakerKey, candidateFilter, candidateKey, deploymentKey, imageTag, newBatchId, parseBreakerKey } from "./names";
export { BatchNotFoundError, BatchTransitionError, NoCandidateError } from "./errors";
export { batchStore, breakerStore, candidateStore, deploymentStore, openStores } from "./stores";
export type { BatchStore, BreakerStore, CandidateStore, CountedOutcome, DeploymentStore, Stores } from "./stores";
export { resetBreaker } from "./reset";
export { admit, caseOf, chooseCases, questionKey, regressionStore, routeOf } from "./regressions";
export type { Admission, RegressionPolicy, RegressionStore } from "./regressions";
