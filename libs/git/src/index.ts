export type { CommitOptions, GitIdentity, SignatureStatus, SigningConfig, SigningKeyFiles, VerifyResult } from "./types";
export {
  AllowedSignersMissingError,
  BadSignatureError,
  CommitNotFoundError,
  GitCommandError,
  InvalidCommitInputError,
  KeySetupError,
  NothingToCommitError,
  SigningKeyError,
  UnsignedCommitError,
} from "./errors";
export { commitSigned } from "./commit";
export { requireGoodSignature, resolveCommit, verifyCommit } from "./verify";
export { commitTrailers } from "./trailers";
export { ensureSigningKey } from "./keys";
