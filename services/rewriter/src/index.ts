// The rewriter's public face: the attempt handler, its stages and guardrails, and the coding-agent adapters.
export { attemptStage, rewrite } from "./handlers/rewrite";
export type { BuildPort, RewriteAgent, RewriterDeps } from "./handlers/rewrite";
export { onTimeTravel, resolveVersion, UnknownVersionError } from "./handlers/versions";
export type { VersionDeps } from "./handlers/versions";
export type { Evidence } from "./evidence";
export { runStages } from "./pipeline";
export type { AttemptContext, PipelineDeps, PipelineResult } from "./pipeline";
export { DEFAULT_FORBIDDEN, DEFAULT_GUARDRAIL_CONFIG, checkGuardrails, guardrailsReason } from "./guardrails";
export type { ChangedFile, GuardrailConfig, GuardrailReport, Violation, ViolationRule } from "./guardrails";
export { AdapterConfigError, GuardrailError, NoCodingAgentError, RuleSetError } from "./errors";
export { STAGES, createAdapter, renderTemplate, runProcess } from "./adapters";
export { CappedText } from "./adapters/process";
export type { AdapterConfig, AdapterResult, CodingAgentAdapter, ProcessOptions, ProcessRun, Stage, StageInvocation, ToolPreset } from "./adapters";
export { replaceIn } from "./adapters/symbolic";
export { exposedByMounts, readableByOthers, sandboxed } from "./sandbox";
export { openEgress, runInContainer } from "./container";
export type { ContainerSpec } from "./container";
export type { SandboxConfig } from "./sandbox";
