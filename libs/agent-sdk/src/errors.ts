import { Codes, MossError } from "@moss/errors";

/** Stable error codes of the agent SDK (the registry's, by the names agents use). */
export const SdkErrorCodes = {
  /** The reporter's options are unusable (bad agent name, version…); thrown by `createReporter`, at start-up. */
  config: Codes.SDK_CONFIG.code,
  /** The state directory cannot be archived within the inline limit. */
  snapshotTooLarge: Codes.SNAPSHOT_TOO_LARGE.code,
  /** A failure event does not satisfy the `moss.failure.v1` schema. */
  invalidEvent: Codes.INVALID_EVENT.code,
} as const;
export type SdkErrorCode = (typeof SdkErrorCodes)[keyof typeof SdkErrorCodes];

const SDK_CODES = [Codes.SDK_CONFIG, Codes.SNAPSHOT_TOO_LARGE, Codes.INVALID_EVENT];

/** An error raised by the agent SDK. `captureFailure` never throws it into a request; `createReporter` may. */
export class MossSdkError extends MossError {
  override readonly name = "MossSdkError";
  constructor(code: SdkErrorCode, message: string, options?: { cause?: unknown }) {
    super(SDK_CODES.find((c) => c.code === code) ?? Codes.INTERNAL, message, options);
  }
}
