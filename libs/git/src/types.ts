/** Where the rewriter's signing key and the promoter's allowed signers live (config `rewriter.signing`). */
export interface SigningConfig {
  /**
   * Path of the SSH private key that signs Moss commits (ed25519 recommended; unencrypted, mode 600).
   * Unset: commits are unsigned (and promotion refuses them when verification is required).
   */
  key?: string;
  /** allowed_signers file (ssh-keygen format: `<principal> <key-type> <base64>` per line) the promoter verifies against. */
  allowedSigners?: string;
}

/** Identity written as both author and committer. Default `Moss <moss@localhost>`. */
export interface GitIdentity {
  name: string;
  email: string;
}

export interface CommitOptions {
  /** Commit message (subject, optionally a blank line and a body). Must not be empty. */
  message: string;
  /** Trailers appended in insertion order as `Key: value` (git interpret-trailers format). */
  trailers: Record<string, string>;
  signing: SigningConfig;
  /** Author and committer. Default `Moss <moss@localhost>`. */
  author?: GitIdentity;
}

/**
 * Outcome of checking a commit's signature against an allowed signers file.
 * - `good`: a valid signature by a key listed in the file (git `%G?` = G)
 * - `bad`: signature does not verify, or the key is revoked / not allowed for the `git` namespace (B)
 * - `unknown-key`: valid signature, but by a key the file does not list (U); also a non-SSH signature
 * - `none`: the commit is not signed (N)
 * - `expired`: the key's `valid-before` in the file has passed (U with "key has expired", or X/Y)
 * - `revoked`: R (git 2.39 reports revoked SSH keys as B, so this appears only with newer git)
 * - `error`: the check itself could not run (E, or ssh-keygen missing)
 */
export type SignatureStatus = "good" | "bad" | "unknown-key" | "none" | "expired" | "revoked" | "error";

export interface VerifyResult {
  status: SignatureStatus;
  /** SHA256 fingerprint of the signing key (`%GF`), when git reports one. */
  fingerprint?: string;
  /** Principal of the allowed signers line that matched the key (`%GS`), when good. */
  signer?: string;
  /** git's raw output: `%G?`, `%GF`, `%GS` lines then ssh-keygen's message (`%GG`). */
  raw: string;
}

export interface SigningKeyFiles {
  /** Path of the private key (mode 600). */
  key: string;
  /** Path of the public key (`<key>.pub`). */
  publicKey: string;
  /** Path of the allowed signers file listing `principal` with this key. */
  allowedSigners: string;
  /** The key's fingerprint as git reports it in `%GF` (`SHA256:...`). */
  fingerprint: string;
}
