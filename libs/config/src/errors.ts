/** A config problem: field, offending value, and why. */
export interface ConfigProblem {
  path: string;
  value: unknown;
  why: string;
}

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  readonly code = "MOSS_E_CONFIG";
  readonly retryable = false;
  constructor(
    message: string,
    readonly problems: ConfigProblem[],
    cause?: unknown,
  ) {
    super(message, { cause });
  }
}
