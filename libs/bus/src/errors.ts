import type { QueryDef } from "@moss/contracts";
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
  constructor(url: string, cause: unknown, identity?: string) {
    const denied = (cause as { name?: string } | undefined)?.name === "AuthorizationError";
    super(
      Codes.BUS_UNAVAILABLE,
      denied
        ? `NATS at ${url} refused ${identity ? `identity '${identity}'` : "an anonymous connection"}: ${causeText(cause)}. Its users must come from the credentials this process reads (nats.credentialsDir): restart \`moss up\`, or load what \`moss credentials\` prints into your nats-server config.`
        : `cannot connect to NATS at ${url}: ${causeText(cause)}. Start nats-server (>= 2.10, with -js) or run \`moss up\`, or set MOSS_NATS_URL.`,
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

/** NATS refused this identity a subject its grant does not cover. */
export const NatsDeniedError = createError("NatsDeniedError", Codes.NATS_DENIED);

/** Whether NATS refused a publish or subscribe for lack of permission (nats.js's PermissionViolationError, or a request wrapping one). */
export function isPermissionViolation(err: unknown): boolean {
  for (let e = err as { name?: string; message?: string; cause?: unknown } | undefined, i = 0; e && i < 5; e = e.cause as typeof e, i++) {
    if (e.name === "PermissionViolationError" || /Permissions Violation/.test(e.message ?? "")) return true;
  }
  return false;
}

/** A read query over the bus got no answer in time (retryable: ask again). */
export class QueryUnansweredError extends MossError {
  override name = "QueryUnansweredError";
  constructor(q: QueryDef, timeoutMs: number, cause?: unknown) {
    super(Codes.QUERY_UNANSWERED, `nobody answered ${q.subject} within ${timeoutMs} ms: is the ${q.queue} running (\`moss status\`)?`, { cause });
  }
}

