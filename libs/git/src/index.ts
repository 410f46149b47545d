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
  UnsafeRepositoryError,
  UnsignedCommitError,
} from "./errors";
export { runGit } from "./run";
export type { GitRunOptions } from "./run";
export { commitSigned } from "./commit";
export { requireGoodSignature, requireGoodSignatures, resolveCommit, verifyCommit } from "./verify";
export { commitTrailers } from "./trailers";
export { ensureSigningKey } from "./keys";
export { AUDIT_NOTES, MOSS_NOTES, appendNoteLine, listNotes, readNote, writeNote, addWorktree, archiveCommit, commitInfo, commitsBetween, isAncestor, foldOnto, treeOf, branchHead, changedFiles, diffBetween, removeWorktree, resetWorktree, restoreStaged, stagedChange, worktreeState } from "./repo";
export { sshKeygen } from "./ssh";
