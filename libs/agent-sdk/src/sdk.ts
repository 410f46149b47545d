// The SDK as agents run it. This is the entry point `bundleSdk` bundles: it must never import `./bundle` (esbuild).
export { createReporter, REPLAY_FAILURE_FILE_ENV, NATS_SEED_ENV, NATS_URL_ENV, MAX_INLINE_CASSETTE_BYTES, SAMPLE_RATE_ENV } from "./reporter";
export { REPLAY_PROXY_ENV, REPLAY_SEED_ENV, REPLAY_TIME_ENV, TurnLimits, seededRandom } from "./turn";
export type { MossReporterOptions, Reporter, CaptureInput, SuccessInput } from "./reporter";
export type { CapturedRequest, HeaderValues } from "./event";
export { describeError, newFailureId, DEFAULT_REDACTED_HEADERS } from "./event";
export { snapshotDirectory, MAX_INLINE_SNAPSHOT_BYTES, MAX_UPLOADED_SNAPSHOT_BYTES } from "./snapshot";
export { blobUploader, SNAPSHOT_CONTENT_TYPE } from "./upload";
export type { BlobPutter, SnapshotUploader, UploadedBlob } from "./upload";
export { MossSdkError, SdkErrorCodes } from "./errors";
export type { SdkErrorCode } from "./errors";
