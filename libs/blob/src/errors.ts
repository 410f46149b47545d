/**
 * Errors thrown by @moss/blob: one class per code of the registry in @moss/errors. `instanceof BlobError` catches
 * every error this package throws on purpose.
 */
import { Codes, MossError, causeText } from "@moss/errors";

/** Base class of this package's errors. */
export abstract class BlobError extends MossError {}

/** No blob with this address exists in the store (terminal). */
export class BlobNotFoundError extends BlobError {
  override readonly name = "BlobNotFoundError";
  constructor(
    readonly sha256: string,
    where: string,
    options?: ErrorOptions,
  ) {
    super(
      Codes.BLOB_NOT_FOUND,
      `blob ${sha256} not found in ${where}: it was never stored there, or the writer used a different store (check the blob dir / bucket / prefix settings)`,
      options,
    );
  }
}

/** The stored bytes no longer hash to their address (terminal: retrying reads the same bytes). */
export class BlobCorruptError extends BlobError {
  override readonly name = "BlobCorruptError";
  constructor(
    readonly sha256: string,
    readonly actualSha256: string,
    where: string,
  ) {
    super(
      Codes.BLOB_CORRUPT,
      `blob ${sha256} in ${where} is corrupt: its bytes hash to ${actualSha256}. Delete the stored copy, then put the original bytes again`,
    );
  }
}

/** A blob address that is not 64 lowercase hex digits (terminal; also guards against path traversal). */
export class InvalidBlobIdError extends BlobError {
  override readonly name = "InvalidBlobIdError";
  constructor(readonly value: unknown) {
    super(Codes.BLOB_INVALID_ID, `invalid blob id ${describe(value)}: expected a sha256 as 64 lowercase hex digits`);
  }
}

/** A content type that cannot be stored as an HTTP header value (terminal). */
export class InvalidContentTypeError extends BlobError {
  override readonly name = "InvalidContentTypeError";
  constructor(readonly value: unknown) {
    super(Codes.BLOB_INVALID_CONTENT_TYPE, `invalid content type ${describe(value)}: expected 1-255 printable ASCII characters, e.g. "application/json"`);
  }
}

/** The store could not be reached or failed transiently (network error, 5xx, throttling, I/O error): retry later. */
export class BlobUnavailableError extends BlobError {
  override readonly name = "BlobUnavailableError";
  constructor(operation: string, where: string, options?: ErrorOptions) {
    super(Codes.BLOB_UNAVAILABLE, `blob store ${where} unavailable during ${operation}: ${causeText(options?.cause)}; retry later`, options);
  }
}

/**
 * The store refused the request for a reason retrying will not fix (access denied, missing bucket,
 * bad credentials, permissions on the blob dir...). Fix the configuration, then retry.
 */
export class BlobBackendError extends BlobError {
  override readonly name = "BlobBackendError";
  constructor(operation: string, where: string, options?: ErrorOptions) {
    super(Codes.BLOB_BACKEND, `blob store ${where} refused ${operation}: ${causeText(options?.cause)}; check the store's configuration and permissions`, options);
  }
}

function describe(value: unknown): string {
  if (typeof value !== "string") return `(${typeof value})`;
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
}
