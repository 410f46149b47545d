// The promoter's public face: the judge of every attempt, the consent handler, and the promotion procedure.
export { onCandidateFailed, onReplayCompleted, plateauOf } from "./handlers/attempts";
export { onApproval } from "./handlers/approvals";
export { onRegression } from "./handlers/regression";
export { onRollbackRequest } from "./handlers/rollback";
export { PROMOTION_ENDS, promote } from "./promotion/promote";
export type { LivePort, PromoterDeps, PromotionDeps } from "./deps";
