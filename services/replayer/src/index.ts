// The replayer's public face: the replay handler and its verdicts.
export { REPLAY_TIMEOUT_FACTOR, replay, replayTrial } from "./handlers/replay";
export type { ReplayAgent, ReplayerDeps, TrialPort } from "./handlers/replay";
export { checkJson, combineTrials, compareOutcome, judge, jsonEqual, jsonPath, resolveExpectation, runGrader } from "./verdict";
export type { Comparison, Grade, GraderInput, JudgedTrial, ResolvedExpectation, Verdict } from "./verdict";
