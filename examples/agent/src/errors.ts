/**
 * A tool was handed input it cannot work with. When the router sends a message to the wrong tool,
 * this is what the tool throws: it is the agent's fault, not the user's, so the server answers 500
 * and reports the failure to Moss.
 */
export class ToolInputError extends Error {
  override readonly name = "ToolInputError";
}

/**
 * A proper answer that happens to be a refusal ("I don't know that rate"): the server replies with
 * `status` and the message, and nothing is reported.
 */
export class ToolAnswerError extends Error {
  override readonly name = "ToolAnswerError";
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The request itself is malformed (400); nothing is reported. */
export class BadRequestError extends Error {
  override readonly name = "BadRequestError";
}
