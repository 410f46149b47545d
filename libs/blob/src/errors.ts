/**
 * Errors thrown by @moss/blob. Each has a stable `code` and says whether retrying can help
 * (`retryable`): the bus maps retryable errors to `nak(delay)` and the rest to `term` + dead-letter.
 */

/** Stable error codes of this package. */
export const BlobErrorCode = {
  NotFound: "MOSS_E_BLOB_NOT_FOUND",
  Corrupt: "MOSS_E_BLOB_CORRUPT",
  InvalidId: "MOSS_E_BLOB_INVALID_ID",
  InvalidContentType: "MOSS_E_BLOB_INVALID_CONTENT_TYPE",
  Unavailable: "MOSS_E_BLOB_UNAVAILABLE",
  Backend: "MOSS_E_BLOB_BACKEND",
} as const;
export type BlobErrorCode = (typeof BlobErrorCode)[keyof typeof BlobErrorCode];

/** Base class: `instanceof BlobError` catches every error this package throws on purpose. */
export abstract class BlobError extends Error {
  abstract readonly code: BlobErrorCode;
  abstract readonly retryable: boolean;
}

/** No blob with this address exists in the store (terminal). */
export class BlobNotFoundError extends BlobError {
  override readonly name = "BlobNotFoundError";
  readonly code = BlobErrorCode.NotFound;
  readonly retryable = false;
  constructor(
    readonly sha256: string,
    where: string,
    options?: ErrorOptions,
  ) {
    super(
      `blob ${sha256} not found in ${where}: it was never stored there, or the writer used a different store (check the blob dir / bucket / prefix settings)`,
      options,
    );
  }
}

/** The stored bytes no longer hash to their address (terminal: retrying reads the same bytes). */
export class BlobCorruptError extends BlobError {
  override readonly name = "BlobCorruptError";
  readonly code = BlobErrorCode.Corrupt;
  readonly retryable = false;
  constructor(
    readonly sha256: string,
    readonly actualSha256: string,
    where: string,
  ) {
    super(
      `blob ${sha256} in ${where} is corrupt: its bytes hash to ${actualSha256}. Delete the stored copy, then put the original bytes again`,
    );
  }
}

/** A blob address that is not 64 lowercase hex digits (terminal; also guards against path traversal). */
export class InvalidBlobIdError extends BlobError {
  override readonly name = "InvalidBlobIdError";
  readonly code = BlobErrorCode.InvalidId;
  readonly retryable = false;
  constructor(readonly value: unknown) {
    super(`invalid blob id ${describe(value)}: expected a sha256 as 64 lowercase hex digits`);
  }
}

/** A content type that cannot be stored as an HTTP header value (terminal). */
export class InvalidContentTypeError extends BlobError {
  override readonly name = "InvalidContentTypeError";
  readonly code = BlobErrorCode.InvalidContentType;
  readonly retryable = false;
  constructor(readonly value: unknown) {
    super(`invalid content type ${describe(value)}: expected 1-255 printable ASCII characters, e.g. "application/json"`);
  }
}

/** The store could not be reached or failed transiently (network error, 5xx, throttling, I/O error): retry later. */
export class BlobUnavailableError extends BlobError {
  override readonly name = "BlobUnavailableError";
  readonly code = BlobErrorCode.Unavailable;
  readonly retryable = true;
  constructor(operation: string, where: string, options?: ErrorOptions) {
    super(`blob store ${where} unavailable during ${operation}: ${causeText(options?.cause)}; retry later`, options);
  }
}

/**
 * The store refused the request for a reason retrying will not fix (access denied, missing bucket,
 * bad credentials, permissions on the blob dir...). Fix the configuration, then retry.
 */
export class BlobBackendError extends BlobError {
  override readonly name = "BlobBackendError";
  readonly code = BlobErrorCode.Backend;
  readonly retryable = false;
  constructor(operation: string, where: string, options?: ErrorOptions) {
    super(`blob store ${where} refused ${operation}: ${causeText(options?.cause)}; check the store's configuration and permissions`, options);
  }
}

function describe(value: unknown): string {
  if (typeof value !== "string") return `(${typeof value})`;
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
}

function causeText(cause: unknown): string {
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    // Node's system errors already start their message with the code ("EEXIST: file already exists...").
    return typeof code === "string" && code !== "" && !cause.message.startsWith(code) ? `${code}: ${cause.message}` : cause.message;
  }
  return String(cause);
}
