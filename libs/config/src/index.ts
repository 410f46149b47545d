export { loadConfig, parseConfig } from "./load";
export type { LoadedConfig } from "./load";
export { MossConfig, AgentConfig } from "./schema";
export type { MossConfigInput } from "./schema";
export { ConfigError, UnknownAgentError } from "./errors";
export type { ConfigProblem } from "./errors";
export { FingerprintConfig, FingerprintRule, DEFAULT_LIBRARY_PATTERNS, DEFAULT_ROOT_PATTERNS } from "./fingerprint";
export type { FingerprintConfigInput } from "./fingerprint";
export { AdapterConfig, DEFAULT_TIERS, Guardrails, Signing, Stages, Tier } from "./rewriter";
