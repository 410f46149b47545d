// The replayer's public face: the replay handler and its verdicts.
export { REPLAY_TIMEOUT_FACTOR, replay, replayTrial } from "./handlers/replay";
export type { ReplayAgent, ReplayerDeps, Target, TrialPort } from "./handlers/replay";
export { onTimeTravelReady } from "./handlers/time-travel";
export type { TimeTravelDeps } from "./handlers/time-travel";
export { checkJson, combineTrials, compareOutcome, judge, jsonEqual, jsonPath, resolveExpectation, runGrader } from "./verdict";
export type { Comparison, Grade, GraderInput, JudgedTrial, ResolvedExpectation, Verdict } from "./verdict";
