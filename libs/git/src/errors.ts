/**
 * Errors thrown by @moss/git: one class per code of the registry in @moss/errors (stable `code`, `retryable`,
 * `cause`); the bus maps retryable errors to `nak(delay)` and the rest to `term` + dead-letter.
 */
import { Codes, MossError, createError } from "@moss/errors";
import type { SignatureStatus } from "./types";

/** The commit carries no signature at all (terminal). */
export class UnsignedCommitError extends MossError {
  override name = "UnsignedCommitError";
  constructor(
    readonly sha: string,
    readonly repo: string,
  ) {
    super(
      Codes.UNSIGNED_COMMIT,
      `commit ${sha} in ${repo} is not signed, so it cannot be promoted. Configure rewriter.signing.key ` +
        "(an SSH ed25519 private key; `moss keys init` creates one) so the rewriter signs its commits, then let the batch be rewritten",
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
    super(Codes.BAD_SIGNATURE, badSignatureMessage(sha, status, allowedSigners, fingerprint, detail));
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
      Codes.SIGNING_KEY,
      `cannot sign with rewriter.signing.key ${key}: ${problem}. Point rewriter.signing.key at an unencrypted SSH private key ` +
        "readable only by its owner (chmod 600), or run `moss keys init` to create one",
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
      Codes.ALLOWED_SIGNERS_MISSING,
      `allowed signers file ${allowedSigners} cannot be read, so no signature can be verified. Set rewriter.signing.allowedSigners ` +
        "to an existing file with lines \"<principal> <key-type> <base64 public key>\" (`moss keys init` writes one)",
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
    super(Codes.INVALID_COMMIT_INPUT, `invalid commit ${field}: ${why}`);
  }
}

/** Nothing is staged in the worktree (terminal: committing again changes nothing). */
export class NothingToCommitError extends MossError {
  override name = "NothingToCommitError";
  constructor(readonly worktree: string) {
    super(
      Codes.NOTHING_TO_COMMIT,
      `nothing is staged in ${worktree}: the patch changed no files (or they were not added with git add), so there is nothing to commit`,
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
      Codes.COMMIT_NOT_FOUND,
      `${JSON.stringify(rev)} is not a commit in ${repo}: check the sha, or fetch the candidate branch into this repository`,
      opts,
    );
  }
}

/** Creating or reading the signing key pair / allowed signers file failed (terminal). */
export const KeySetupError = createError("KeySetupError", Codes.SIGNING_KEY_SETUP);

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
      Codes.GIT_COMMAND,
      `git ${args.join(" ")} failed in ${cwd}: ${output.trim() || "(no output)"}` +
        (locked ? ". Another git process holds the lock; retry when it has finished" : ""),
      { ...opts, retryable: locked },
    );
  }
}

/** The repository's own config sets something Moss will not run git under (terminal until it is removed). */
export class UnsafeRepositoryError extends MossError {
  override name = "UnsafeRepositoryError";
  constructor(
    readonly repo: string,
    readonly key: string,
    why: string,
  ) {
    super(Codes.GIT_UNSAFE_REPO, `the git config of ${repo} sets ${key}, and ${why}: Moss does not run git there. Remove it (git config --unset ${key}) and retry`);
  }
}
