/** Stable error codes of the agent SDK. */
export const SdkErrorCodes = {
  /** The reporter's options are unusable (bad agent name, version…); thrown by `createReporter`, at start-up. */
  config: "MOSS_E_SDK_CONFIG",
  /** The state directory cannot be archived within the inline limit. */
  snapshotTooLarge: "MOSS_E_SNAPSHOT_TOO_LARGE",
  /** A failure event does not satisfy the `moss.failure.v1` schema. */
  invalidEvent: "MOSS_E_INVALID_EVENT",
} as const;
export type SdkErrorCode = (typeof SdkErrorCodes)[keyof typeof SdkErrorCodes];

/** An error raised by the agent SDK. `captureFailure` never throws it into a request; `createReporter` may. */
export class MossSdkError extends Error {
  override readonly name = "MossSdkError";
  constructor(
    readonly code: SdkErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
