/**
 * Base of every Moss error: a stable `code` (MOSS_E_...), whether retrying can help, and the cause.
 * The bus maps `retryable` to nak-with-backoff (true) or term + dead-letter (false); the HTTP APIs map `code`
 * to a status. Packages subclass it in their own errors.ts.
 */
export class MossError extends Error {
  override name = "MossError";
  constructor(
    readonly code: string,
    message: string,
    readonly retryable: boolean,
    opts: { cause?: unknown } = {},
  ) {
    super(message, opts);
  }
}

/** Whether an error (Moss or not) says retrying cannot help. Unknown errors are assumed retryable. */
export function isTerminal(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { retryable?: unknown }).retryable === false;
}

export function errorCode(err: unknown): string {
  const c = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof c === "string" && c.startsWith("MOSS_E_") ? c : "MOSS_E_INTERNAL";
}
