export { main } from "./main";
export { runDemo, FAILING_REQUEST, FIXED_ANSWER } from "./demo";
export type { DemoOptions, DemoResult } from "./demo";
export { startStack, freePort, reachable, SERVICES } from "./stack";
export type { Stack, StackOptions } from "./stack";
export { deployAgent, waitHealthy } from "./deploy";
export { renderTimeline } from "./render";
