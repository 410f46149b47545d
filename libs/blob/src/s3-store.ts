import type { Readable } from "node:stream";
import { Client, S3Error } from "minio";
import type { BlobRef } from "@moss/contracts";
import { assertBlobId, assertContentType, sha256Hex, toBuffer } from "./address";
import { BlobBackendError, BlobCorruptError, BlobError, BlobNotFoundError, BlobUnavailableError } from "./errors";
import { makeRef } from "./ref";
import type { BlobStore, PutOptions, S3BlobConfig } from "./types";

/** User metadata key (sent as `x-amz-meta-moss-content-type`) holding the caller's content type. */
const CONTENT_TYPE_META = "moss-content-type";

/** S3 codes for "no such object". HEAD requests carry no body, so minio can only say `NotFound`. */
const NOT_FOUND_CODES = new Set(["NotFound", "NoSuchKey"]);

/** S3 codes that mean "try again later" (5xx and throttling). */
const RETRYABLE_S3_CODES = new Set([
  "InternalError",
  "ServiceUnavailable",
  "SlowDown",
  "RequestTimeout",
  "OperationAborted",
  "Throttling",
  "ThrottlingException",
  "RequestLimitExceeded",
  "XMinioServerNotInitialized",
]);

/** How minio 8 reports a 5xx/429/408 response (see below): a plain Error, no S3 code. */
const MINIO_RETRYABLE_STATUS = /Retryable HTTP status: \d{3}/;

/**
 * Blobs as objects `<prefix><sha256>` in one bucket. The content type goes both in the standard
 * Content-Type header (useful to anyone downloading the object) and in user metadata, which is
 * what `stat` reads: servers default Content-Type when none is sent, so the header alone cannot
 * tell "none given" from "application/octet-stream".
 *
 * minio's own retry is disabled: retrying belongs to the caller (the bus naks a retryable error
 * with a delay), and minio logs each retry with console.warn. Retry or not, minio 8 turns a
 * 408/429/499/500/502/503/504/520 response into a plain `Error("Request failed after N retries:
 * Error: Retryable HTTP status: 503")` with no S3 code, so those are recognised by message.
 */
export function createS3BlobStore(cfg: S3BlobConfig): BlobStore {
  const useSSL = cfg.useSSL ?? true;
  const prefix = cfg.prefix ?? "blobs/";
  const bucket = cfg.bucket;
  const client = new Client({
    endPoint: cfg.endPoint,
    ...(cfg.port !== undefined ? { port: cfg.port } : {}),
    useSSL,
    accessKey: cfg.accessKey,
    secretKey: cfg.secretKey,
    // Known region: no GetBucketLocation round trip before the first request to a bucket.
    region: cfg.region ?? "us-east-1",
    retryOptions: { disableRetry: true },
  });
  const port = cfg.port ?? (useSSL ? 443 : 80);
  const where = `s3:${useSSL ? "https" : "http"}://${cfg.endPoint}:${port}/${bucket}/${prefix}`;
  const keyOf = (sha256: string) => `${prefix}${sha256}`;

  const guard = async <T>(operation: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      throw toBlobError(operation, where, err);
    }
  };

  /** The object's size and our metadata, or undefined when there is no such object. */
  const head = async (sha256: string): Promise<BlobRef | undefined> => {
    try {
      const st = await client.statObject(bucket, keyOf(sha256));
      const ct: unknown = st.metaData[CONTENT_TYPE_META];
      return makeRef(sha256, st.size, typeof ct === "string" && ct !== "" ? ct : undefined);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  };

  return {
    kind: "s3",

    init: () =>
      guard("init", async () => {
        if (await client.bucketExists(bucket)) return;
        try {
          await client.makeBucket(bucket, cfg.region ?? "us-east-1");
        } catch (err) {
          // Another service instance created it between our check and our create.
          if (s3Code(err) === "BucketAlreadyOwnedByYou") return;
          throw err;
        }
      }),

    put: (data: Uint8Array | string, opts?: PutOptions): Promise<BlobRef> =>
      guard("put", async () => {
        const contentType = opts?.contentType;
        assertContentType(contentType);
        const bytes = toBuffer(data);
        const sha256 = sha256Hex(bytes);
        // Skip the upload when the object is there (same address and size = same bytes, barring
        // tampering): saves the bandwidth and keeps the first writer's metadata.
        const existing = await head(sha256);
        if (existing === undefined || existing.size !== bytes.length) {
          const meta: Record<string, string> =
            contentType !== undefined ? { "Content-Type": contentType, [`X-Amz-Meta-${CONTENT_TYPE_META}`]: contentType } : {};
          // A Buffer with its size: minio sends one PUT up to its part size (64 MiB), multipart above.
          await client.putObject(bucket, keyOf(sha256), bytes, bytes.length, meta);
        }
        return makeRef(sha256, bytes.length, contentType);
      }),

    get: (sha256: string): Promise<Buffer> =>
      guard("get", async () => {
        assertBlobId(sha256);
        let body: Readable;
        try {
          body = await client.getObject(bucket, keyOf(sha256));
        } catch (err) {
          if (isNotFound(err)) throw new BlobNotFoundError(sha256, where, { cause: err });
          throw err;
        }
        const bytes = await readAll(body);
        const actual = sha256Hex(bytes);
        if (actual !== sha256) throw new BlobCorruptError(sha256, actual, where);
        return bytes;
      }),

    stat: (sha256: string): Promise<BlobRef | undefined> =>
      guard("stat", async () => {
        assertBlobId(sha256);
        return head(sha256);
      }),
  };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

function s3Code(err: unknown): string | undefined {
  if (err instanceof S3Error || (err instanceof Error && err.name === "S3Error")) {
    const code = (err as S3Error).code;
    return typeof code === "string" ? code : "";
  }
  return undefined;
}

function isNotFound(err: unknown): boolean {
  const code = s3Code(err);
  return code !== undefined && NOT_FOUND_CODES.has(code);
}

function toBlobError(operation: string, where: string, err: unknown): Error {
  if (err instanceof BlobError || err instanceof TypeError) return err;
  const code = s3Code(err);
  if (code !== undefined) {
    // No code at all: an error body that is not S3 XML, most likely from a proxy in between.
    if (code === "" || RETRYABLE_S3_CODES.has(code)) return new BlobUnavailableError(operation, where, { cause: err });
    return new BlobBackendError(operation, where, { cause: err });
  }
  if (!(err instanceof Error)) return new BlobBackendError(operation, where, { cause: err });
  // Transport errors carry a system code (ECONNREFUSED, ECONNRESET, ETIMEDOUT, ENOTFOUND...).
  const sysCode = (err as NodeJS.ErrnoException).code;
  if (typeof sysCode === "string" && sysCode !== "") return new BlobUnavailableError(operation, where, { cause: err });
  if (MINIO_RETRYABLE_STATUS.test(err.message)) return new BlobUnavailableError(operation, where, { cause: err });
  // minio's argument checks (invalid bucket name...) and anything else unexpected: not transient.
  return new BlobBackendError(operation, where, { cause: err });
}
