// The CLI's public face: the command, the demo, the stack `moss up` starts, and the text rendering of a timeline.
export { main } from "./main";
export { runDemo, FAILING_REQUEST, FIXED_ANSWER } from "./demo/run";
export type { DemoOptions, DemoResult } from "./demo/run";
export { prepareAgentRepo, EXAMPLE_AGENT } from "./demo/prepare";
export { startModelStandIn, type ModelStandIn } from "./demo/model";
export { startStack, freePort, reachable, SERVICES } from "./stack";
export type { Stack, StackOptions } from "./stack";
export { deployAgent, waitHealthy } from "./deploy";
export { requestRollback } from "./commands/rollback";
export { describeProgress, followReplay, requestReplay } from "./commands/replay";
export type { ReplaySet } from "./commands/replay";
export { describeBisect, requestBisect } from "./commands/bisect";
export { renderDiff, renderReconcile, requestReview } from "./commands/review";
export type { BisectAsk } from "./commands/bisect";
export { renderTimeline } from "./render";
export { operatorGet, operatorPost } from "./shared";
