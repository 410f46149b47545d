/**
 * Errors thrown by @moss/git. Each extends `MossError` (stable `code`, `retryable`, `cause`): the
 * bus maps retryable errors to `nak(delay)` and the rest to `term` + dead-letter.
 */
import { MossError } from "@moss/contracts";
import type { SignatureStatus } from "./types";

/** Stable error codes of this package. */
export const GitErrorCode = {
  UnsignedCommit: "MOSS_E_UNSIGNED_COMMIT",
  BadSignature: "MOSS_E_BAD_SIGNATURE",
  SigningKey: "MOSS_E_SIGNING_KEY",
  AllowedSignersMissing: "MOSS_E_ALLOWED_SIGNERS_MISSING",
  InvalidCommitInput: "MOSS_E_INVALID_COMMIT_INPUT",
  NothingToCommit: "MOSS_E_NOTHING_TO_COMMIT",
  CommitNotFound: "MOSS_E_COMMIT_NOT_FOUND",
  KeySetup: "MOSS_E_SIGNING_KEY_SETUP",
  GitCommand: "MOSS_E_GIT_COMMAND",
} as const;
export type GitErrorCode = (typeof GitErrorCode)[keyof typeof GitErrorCode];

/** The commit carries no signature at all (terminal). */
export class UnsignedCommitError extends MossError {
  override name = "UnsignedCommitError";
  constructor(
    readonly sha: string,
    readonly repo: string,
  ) {
    super(
      GitErrorCode.UnsignedCommit,
      `commit ${sha} in ${repo} is not signed, so it cannot be promoted. Configure rewriter.signing.key ` +
        "(an SSH ed25519 private key; `moss keys init` creates one) so the rewriter signs its commits, then let the batch be rewritten",
      false,
    );
  }
}

/** The commit is signed, but not with a good signature of an allowed signer (terminal). */
export class BadSignatureError extends MossError {
  override name = "BadSignatureError";
  constructor(
    readonly sha: string,
    readonly status: Exclude<SignatureStatus, "good" | "none">,
    readonly allowedSigners: string,
    readonly fingerprint: string | undefined,
    detail: string,
  ) {
    super(GitErrorCode.BadSignature, badSignatureMessage(sha, status, allowedSigners, fingerprint, detail), false);
  }
}

function badSignatureMessage(
  sha: string,
  status: Exclude<SignatureStatus, "good" | "none">,
  allowedSigners: string,
  fingerprint: string | undefined,
  detail: string,
): string {
  const key = fingerprint ? `key ${fingerprint}` : "its key";
  const why = detail ? ` (${detail})` : "";
  switch (status) {
    case "unknown-key":
      return (
        `commit ${sha} is signed by ${key}, which is not in the allowed signers file ${allowedSigners}${why}. ` +
        `If that key is the rewriter's (rewriter.signing.key), add the key to the allowed signers file as a line ` +
        `"<principal> <key-type> <base64 public key>"; otherwise do not promote this commit`
      );
    case "bad":
      return (
        `commit ${sha} has a bad signature${why}: its content does not match the signature, the key is revoked, or it is not allowed ` +
        `to sign git commits. Do not promote it; if the rewriter's key is listed in ${allowedSigners}, have the batch rewritten`
      );
    case "expired":
      return (
        `commit ${sha} is signed by ${key}, whose validity in ${allowedSigners} has expired${why}. ` +
        `Sign with a current key (rewriter.signing.key) and add it to the allowed signers file, or extend the key's valid-before`
      );
    case "revoked":
      return `commit ${sha} is signed by ${key}, which is revoked${why}. Configure a new rewriter.signing.key and add it to the allowed signers file ${allowedSigners}`;
    case "error":
      return `the signature of commit ${sha} could not be checked${why}. Check that ssh-keygen (OpenSSH >= 8.2) is installed and ${allowedSigners} is readable`;
  }
}

/** The configured signing key cannot be used (missing, unreadable, too-open permissions, encrypted) (terminal). */
export class SigningKeyError extends MossError {
  override name = "SigningKeyError";
  constructor(
    readonly key: string,
    problem: string,
    opts: { cause?: unknown } = {},
  ) {
    super(
      GitErrorCode.SigningKey,
      `cannot sign with rewriter.signing.key ${key}: ${problem}. Point rewriter.signing.key at an unencrypted SSH private key ` +
        "readable only by its owner (chmod 600), or run `moss keys init` to create one",
      false,
      opts,
    );
  }
}

/** Verification was asked for, but the allowed signers file does not exist (terminal). */
export class AllowedSignersMissingError extends MossError {
  override name = "AllowedSignersMissingError";
  constructor(
    readonly allowedSigners: string,
    opts: { cause?: unknown } = {},
  ) {
    super(
      GitErrorCode.AllowedSignersMissing,
      `allowed signers file ${allowedSigners} cannot be read, so no signature can be verified. Set rewriter.signing.allowedSigners ` +
        "to an existing file with lines \"<principal> <key-type> <base64 public key>\" (`moss keys init` writes one)",
      false,
      opts,
    );
  }
}

/** A message, trailer or identity git cannot carry as given (terminal: the caller's input). */
export class InvalidCommitInputError extends MossError {
  override name = "InvalidCommitInputError";
  constructor(
    readonly field: string,
    why: string,
  ) {
    super(GitErrorCode.InvalidCommitInput, `invalid commit ${field}: ${why}`, false);
  }
}

/** Nothing is staged in the worktree (terminal: committing again changes nothing). */
export class NothingToCommitError extends MossError {
  override name = "NothingToCommitError";
  constructor(readonly worktree: string) {
    super(
      GitErrorCode.NothingToCommit,
      `nothing is staged in ${worktree}: the patch changed no files (or they were not added with git add), so there is nothing to commit`,
      false,
    );
  }
}

/** The revision does not name a commit in the repository (terminal). */
export class CommitNotFoundError extends MossError {
  override name = "CommitNotFoundError";
  constructor(
    readonly rev: string,
    readonly repo: string,
    opts: { cause?: unknown } = {},
  ) {
    super(
      GitErrorCode.CommitNotFound,
      `${JSON.stringify(rev)} is not a commit in ${repo}: check the sha, or fetch the candidate branch into this repository`,
      false,
      opts,
    );
  }
}

/** Creating or reading the signing key pair / allowed signers file failed (terminal). */
export class KeySetupError extends MossError {
  override name = "KeySetupError";
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super(GitErrorCode.KeySetup, message, false, opts);
  }
}

/**
 * A git command failed for another reason. Retryable only when git reports a held lock
 * (`index.lock` / `*.lock: File exists`), which another git process releases when it ends.
 */
export class GitCommandError extends MossError {
  override name = "GitCommandError";
  constructor(
    readonly args: readonly string[],
    readonly cwd: string,
    readonly output: string,
    opts: { cause?: unknown } = {},
  ) {
    const locked = /\.lock': File exists/.test(output);
    super(
      GitErrorCode.GitCommand,
      `git ${args.join(" ")} failed in ${cwd}: ${output.trim() || "(no output)"}` +
        (locked ? ". Another git process holds the lock; retry when it has finished" : ""),
      locked,
      opts,
    );
  }
}
