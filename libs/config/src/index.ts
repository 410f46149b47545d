export { loadConfig, parseConfig } from "./load";
export type { LoadedConfig } from "./load";
export { MossConfig, AgentConfig } from "./schema";
export type { MossConfigInput } from "./schema";
export { ConfigError } from "./errors";
export type { ConfigProblem } from "./errors";
