import { Codes, MossError, causeText, createError } from "@moss/errors";

/** A message did not match its schema (or was not JSON): terminal, dead-lettered. */
export const InvalidMessageError = createError("InvalidMessageError", Codes.INVALID_MESSAGE);

/** A message arrived on a subject its consumer has no handler for: terminal. */
export class UnroutableMessageError extends MossError {
  override name = "UnroutableMessageError";
  constructor(subject: string, consumer: string) {
    super(Codes.UNROUTABLE, `consumer '${consumer}' has no handler for subject '${subject}'`);
  }
}

/** NATS could not be reached at start. */
export class BusUnavailableError extends MossError {
  override name = "BusUnavailableError";
  constructor(url: string, cause: unknown) {
    super(
      Codes.BUS_UNAVAILABLE,
      `cannot connect to NATS at ${url}: ${causeText(cause)}. Start nats-server (>= 2.10, with -js) or run \`moss up\`, or set MOSS_NATS_URL.`,
      { cause },
    );
  }
}

/** A KV compare-and-set lost the race: retry with a fresh read. */
export class CasConflictError extends MossError {
  override name = "CasConflictError";
  constructor(bucket: string, key: string, cause?: unknown) {
    super(Codes.CAS_CONFLICT, `concurrent update of ${bucket}/${key}`, { cause });
  }
}
