import type { ErrorCode } from "./codes";

/**
 * Base of every Moss error: a stable `code` from the registry (`Codes`), the HTTP status an API answers it with,
 * whether retrying can help, and the cause. The bus maps `retryable` to nak-with-backoff (true) or term +
 * dead-letter (false); the HTTP APIs answer `httpStatus`. Packages subclass it in their own errors.ts, one class per
 * code; a subclass may decide `retryable` per instance (a Docker 5xx is retryable, a 4xx is not).
 */
export class MossError extends Error {
  override name = "MossError";
  readonly code: ErrorCode["code"];
  readonly httpStatus: number;
  readonly retryable: boolean;
  constructor(code: ErrorCode, message: string, opts: { cause?: unknown; retryable?: boolean } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code.code;
    this.httpStatus = code.status;
    this.retryable = opts.retryable ?? code.retryable;
  }
}

/** The class of an error that says nothing but its message (and cause): what `createError` makes. */
export type MessageErrorClass = new (message: string, opts?: { cause?: unknown }) => MossError;

/**
 * A named error class for one code whose instances carry only a message and a cause (fastify's `createError` is the
 * model). Errors with fields of their own (a build log, the path at fault) are written as subclasses of MossError.
 */
export function createError(name: string, code: ErrorCode): MessageErrorClass {
  const E = class extends MossError {
    constructor(message: string, opts: { cause?: unknown } = {}) {
      super(code, message, opts);
      this.name = name;
    }
  };
  Object.defineProperty(E, "name", { value: name });
  return E;
}

/**
 * Whether an error says the message's work no longer matters (its batch ended meanwhile, e.g. an operator rejected
 * it): the bus acks such a message with a log line instead of retrying or dead-lettering it.
 */
export function isMoot(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { moot?: unknown }).moot === true;
}

/** Whether an error (Moss or not) says retrying cannot help. Unknown errors are assumed retryable. */
export function isTerminal(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { retryable?: unknown }).retryable === false;
}

/** The Moss code of an error; anything that is not a Moss error is `MOSS_E_INTERNAL`. */
export function errorCode(err: unknown): string {
  const c = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof c === "string" && c.startsWith("MOSS_E_") ? c : "MOSS_E_INTERNAL";
}

/**
 * A cause in words, for the message of the error that wraps it: its message, prefixed with a system error code the
 * message does not already start with (`EACCES: ...`), "unknown cause" when there is none.
 */
export function causeText(cause: unknown): string {
  if (cause === undefined) return "unknown cause";
  if (!(cause instanceof Error)) return String(cause);
  const message = cause.message.trim();
  const code = (cause as { code?: unknown }).code;
  // Node's system errors already start their message with the code ("EEXIST: file already exists...").
  return typeof code === "string" && code !== "" && !code.startsWith("MOSS_E_") && !message.startsWith(code) ? `${code}: ${message}` : message;
}
