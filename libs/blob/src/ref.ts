import type { BlobRef } from "@moss/contracts";

/** A BlobRef without a `contentType` key when there is none (so refs compare and serialize cleanly). */
export function makeRef(sha256: string, size: number, contentType: string | undefined): BlobRef {
  return contentType === undefined ? { sha256, size } : { sha256, size, contentType };
}
