/** What `uploadSnapshot` must answer: the content address of the bytes it stored. */
export interface UploadedBlob {
  /** sha256 (lowercase hex) of exactly the bytes it was given. */
  sha256: string;
  size: number;
}

/**
 * Stores a state snapshot (a tar) in the blob store Moss reads, content-addressed. The reporter checks the answer
 * against its own hash of the tar, so an uploader that stores anything else is caught instead of leaving the
 * failure pointing at a blob that is not there.
 */
export type SnapshotUploader = (tar: Buffer) => Promise<UploadedBlob>;

/**
 * Anything with a content-addressed `put`, like `@moss/blob`'s `BlobStore` (fs or S3). Declared here, not imported,
 * so the SDK (and its bundle) does not carry the blob store's S3 client.
 */
export interface BlobPutter {
  put(data: Uint8Array, opts: { contentType: string }): Promise<UploadedBlob>;
}

/** Content type of uploaded snapshots. */
export const SNAPSHOT_CONTENT_TYPE = "application/x-tar";

/**
 * A ready-made `uploadSnapshot` over a blob store: `createReporter({ ..., uploadSnapshot: blobUploader(store) })`.
 * The store must be the one Moss's services use (same fs directory or S3 bucket): that is where the replayer looks.
 */
export function blobUploader(store: BlobPutter): SnapshotUploader {
  return async (tar) => {
    const ref = await store.put(tar, { contentType: SNAPSHOT_CONTENT_TYPE });
    return { sha256: ref.sha256, size: ref.size };
  };
}
