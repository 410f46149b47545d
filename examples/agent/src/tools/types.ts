import type { StateStore } from "../state";

export interface ToolContext {
  state: StateStore;
}

export interface Tool {
  readonly name: string;
  /** The answer, in words. Throws ToolAnswerError to refuse, anything else is a bug. */
  run(message: string, ctx: ToolContext): Promise<string>;
}
