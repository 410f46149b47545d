// The replayer's public face: the replay handler and its verdict.
export { REPLAY_TIMEOUT_FACTOR, judge, replay } from "./handlers/replay";
export type { ReplayAgent, ReplayerDeps, TrialPort } from "./handlers/replay";
