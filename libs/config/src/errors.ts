import { Codes, MossError } from "@moss/errors";

/** A config problem: field, offending value, and why. */
export interface ConfigProblem {
  path: string;
  value: unknown;
  why: string;
}

/** The config is invalid or unreadable; `problems` names every field at fault (terminal: fix the config). */
export class ConfigError extends MossError {
  override readonly name = "ConfigError";
  constructor(
    message: string,
    readonly problems: ConfigProblem[],
    cause?: unknown,
  ) {
    super(Codes.CONFIG, message, { cause });
  }
}

/** A message or a command names an agent the config does not have (terminal: add it, or fix the name). */
export class UnknownAgentError extends MossError {
  override readonly name = "UnknownAgentError";
  constructor(readonly agent: string) {
    super(Codes.UNKNOWN_AGENT, `agent '${agent}' is not in the Moss config (agents.${agent}.repo); add it or fix the agent name it publishes`);
  }
}
