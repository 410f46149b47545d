import type { BlobRef } from "@moss/contracts";

/** Where blobs live. */
export type BlobConfig = FsBlobConfig | S3BlobConfig;

/** Blobs as files under `<dir>/<first two hex chars>/<sha256>` on a local filesystem. */
export interface FsBlobConfig {
  kind: "fs";
  /** Root directory; created by `init()` (and on demand by `put`). */
  dir: string;
}

/** Blobs as objects `<prefix><sha256>` in an S3-compatible bucket, through the `minio` client. */
export interface S3BlobConfig {
  kind: "s3";
  /** Host name or IP of the S3 endpoint, without scheme or port (e.g. `minio`, `s3.amazonaws.com`). */
  endPoint: string;
  /** Default: 443 with SSL, 80 without. */
  port?: number;
  /** Default: true. */
  useSSL?: boolean;
  accessKey: string;
  secretKey: string;
  /** Created by `init()` if missing. */
  bucket: string;
  /**
   * Default: "us-east-1". Always sent, so the client never has to ask the server for the
   * bucket's location first.
   */
  region?: string;
  /** Key prefix of every blob. Default: "blobs/". */
  prefix?: string;
}

export interface PutOptions {
  /**
   * MIME type kept as metadata, returned by `stat`. Stored by the first put of these bytes: a
   * later put of the same bytes does not change it (the ref it returns still carries the caller's type).
   */
  contentType?: string;
}

/** A content-addressed blob store: a blob's address is the sha256 (lowercase hex) of its bytes. */
export interface BlobStore {
  readonly kind: "fs" | "s3";
  /** Idempotent: storing the same bytes twice is one object. Strings are stored as UTF-8. */
  put(data: Uint8Array | string, opts?: PutOptions): Promise<BlobRef>;
  /**
   * The blob's bytes, verified against their address.
   * @throws BlobNotFoundError if missing, BlobCorruptError if the bytes do not hash to `sha256`,
   *   InvalidBlobIdError if `sha256` is not 64 lowercase hex digits.
   */
  get(sha256: string): Promise<Buffer>;
  /** The blob's size and stored content type, or undefined if missing (the bytes are not read). */
  stat(sha256: string): Promise<BlobRef | undefined>;
  /** Creates the bucket / directory if missing; called once at service start. */
  init(): Promise<void>;
}
