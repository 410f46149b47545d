/** Errors of the rewriter: one class per code of the registry in @moss/errors. */
import { Codes, MossError, createError } from "@moss/errors";

/** The adapter configuration cannot work (unknown preset, empty command, ...): fix the config; retrying cannot help. */
export const AdapterConfigError = createError("AdapterConfigError", Codes.ADAPTER_CONFIG);

/** No coding agent is configured: every attempt would fail the same way. */
export class NoCodingAgentError extends MossError {
  override name = "NoCodingAgentError";
  constructor() {
    super(Codes.NO_CODING_AGENT, "no coding agent configured: set rewriter.adapter (a preset such as claude-code, or a command) or rewriter.command");
  }
}

/** The symbolic patcher's rules directory or a rule in it is unusable; `problems` lists every problem found, not just the first. */
export class RuleSetError extends MossError {
  override name = "RuleSetError";
  constructor(readonly problems: string[]) {
    super(Codes.RULE_SET, problems.join("; "));
  }
}

/** The guardrail check itself could not run (not a verdict on the patch). Terminal: retrying the same inputs fails the same way. */
export class GuardrailError extends MossError {
  override readonly name = "GuardrailError";
  constructor(code: typeof Codes.GUARDRAIL_CONFIG | typeof Codes.GUARDRAIL_GIT, message: string, cause?: unknown) {
    super(code, message, { cause });
  }
}
