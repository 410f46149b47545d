import { createFsBlobStore } from "./fs-store";
import { createS3BlobStore } from "./s3-store";
import type { BlobConfig, BlobStore } from "./types";

export type { BlobRef } from "@moss/contracts";
export type { BlobConfig, BlobStore, FsBlobConfig, PutOptions, S3BlobConfig } from "./types";
export {
  BlobBackendError,
  BlobCorruptError,
  BlobError,
  BlobNotFoundError,
  BlobUnavailableError,
  InvalidBlobIdError,
  InvalidContentTypeError,
} from "./errors";
export { isBlobId, sha256Hex } from "./address";
export { createFsBlobStore } from "./fs-store";
export { createS3BlobStore } from "./s3-store";

/** A blob store for the configured backend. Opens no connection: call `init()` once at start. */
export function createBlobStore(cfg: BlobConfig): BlobStore {
  switch (cfg.kind) {
    case "fs":
      return createFsBlobStore(cfg);
    case "s3":
      return createS3BlobStore(cfg);
    default: {
      const kind: unknown = (cfg as { kind?: unknown }).kind;
      throw new TypeError(`unknown blob store kind ${JSON.stringify(kind)}: expected "fs" or "s3"`);
    }
  }
}
