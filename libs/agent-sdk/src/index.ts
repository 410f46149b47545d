export { createReporter, REPLAY_FAILURE_FILE_ENV, NATS_SEED_ENV, NATS_URL_ENV, MAX_INLINE_CASSETTE_BYTES, SAMPLE_RATE_ENV } from "./sdk";
export { REPLAY_PROXY_ENV, REPLAY_SEED_ENV, REPLAY_TIME_ENV, TurnLimits, seededRandom } from "./sdk";
export type { MossReporterOptions, Reporter, CaptureInput, SuccessInput, CapturedRequest, HeaderValues } from "./sdk";
export { describeError, newFailureId, DEFAULT_REDACTED_HEADERS } from "./sdk";
export { snapshotDirectory, MAX_INLINE_SNAPSHOT_BYTES, MAX_UPLOADED_SNAPSHOT_BYTES } from "./sdk";
export { blobUploader, SNAPSHOT_CONTENT_TYPE } from "./sdk";
export type { BlobPutter, SnapshotUploader, UploadedBlob } from "./sdk";
export { MossSdkError, SdkErrorCodes } from "./sdk";
export type { SdkErrorCode } from "./sdk";
// Build-time only (loads esbuild lazily); not part of the bundle.
export { bundleSdk } from "./bundle";
export type { BundleSdkOptions } from "./bundle";
