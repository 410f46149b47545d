import { constants } from "node:fs";
import { access } from "node:fs/promises";
import {
  AllowedSignersMissingError,
  BadSignatureError,
  CommitNotFoundError,
  GitCommandError,
  UnsignedCommitError,
} from "./errors";
import { runGit } from "./run";
import { absPath } from "./ssh";
import type { SignatureStatus, VerifyResult } from "./types";

/**
 * Checks the signature of commit `sha` in `repo` against `allowedSigners` (ssh-keygen format), by
 * reading `%G?` from `git -c gpg.ssh.allowedSignersFile=<file> log -1 --format=%G?%n%GF%n%GS%n%GG`.
 *
 * Observed on git 2.39 / OpenSSH 9.2 (see README): git finds the principal by the signing key
 * alone (`ssh-keygen -Y find-principals`); the committer email is NOT compared with the principal,
 * so any line listing the key gives `good`, and `signer` is that line's principal. A key the file
 * lists under another principal is still good; a different key is `unknown-key`.
 *
 * Only SSH signatures count: a commit signed with OpenPGP or X.509 is reported `unknown-key`
 * without asking gpg (whose keyring is not the allowed signers file). `gpg.ssh.program` is pinned
 * to `ssh-keygen`, so a repository's config cannot substitute a verifier that always says yes.
 *
 * Throws AllowedSignersMissingError when the file cannot be read (git would report every
 * signature as unknown-key), CommitNotFoundError when `sha` names no commit.
 */
export async function verifyCommit(repo: string, sha: string, allowedSigners: string): Promise<VerifyResult> {
  const file = absPath(allowedSigners);
  try {
    await access(file, constants.R_OK);
  } catch (cause) {
    throw new AllowedSignersMissingError(file, { cause });
  }
  const commit = await resolveCommit(repo, sha);

  const kind = signatureKind(await runGit(repo, ["cat-file", "commit", commit]));
  if (kind === "other") {
    return {
      status: "unknown-key",
      raw: "commit carries an OpenPGP/X.509 signature; only SSH signatures are checked against the allowed signers file",
    };
  }

  const raw = await runGit(
    repo,
    ["log", "-1", "--no-show-signature", "--format=%G?%n%GF%n%GS%n%GG", commit, "--"],
    { config: [`gpg.ssh.allowedSignersFile=${file}`] },
  );
  const [code = "", fingerprint = "", signer = "", ...message] = raw.split("\n");
  const status = mapStatus(code.trim(), message.join("\n"));
  return {
    status,
    ...(fingerprint.trim() ? { fingerprint: fingerprint.trim() } : {}),
    ...(signer.trim() ? { signer: signer.trim() } : {}),
    raw,
  };
}

/**
 * Resolves when commit `sha` has a good signature of a key in `allowedSigners`; otherwise throws
 * UnsignedCommitError (no signature) or BadSignatureError (any other status), both terminal.
 */
export async function requireGoodSignature(repo: string, sha: string, allowedSigners: string): Promise<void> {
  const res = await verifyCommit(repo, sha, allowedSigners);
  if (res.status === "good") return;
  if (res.status === "none") throw new UnsignedCommitError(sha, repo);
  throw new BadSignatureError(sha, res.status, absPath(allowedSigners), res.fingerprint, detail(res.raw));
}

/**
 * Resolves when every commit from `base` (excluded) to `sha` (included) has a good signature of a key in
 * `allowedSigners` — not only the newest one: an unsigned commit must not ride under a signed one — and `base` is an
 * ancestor of `sha`. Throws the first commit's UnsignedCommitError / BadSignatureError otherwise.
 */
export async function requireGoodSignatures(repo: string, base: string, sha: string, allowedSigners: string): Promise<void> {
  const from = await resolveCommit(repo, base);
  const to = await resolveCommit(repo, sha);
  const ancestor = await runGit(repo, ["merge-base", "--is-ancestor", from, to]).then(
    () => true,
    () => false,
  );
  if (!ancestor) throw new CommitNotFoundError(`${base}..${sha}`, repo);
  const commits = (await runGit(repo, ["rev-list", "--reverse", `${from}..${to}`])).split("\n").filter(Boolean);
  if (!commits.length) throw new CommitNotFoundError(`${base}..${sha}`, repo);
  for (const c of commits) await requireGoodSignature(repo, c, allowedSigners);
}

/** Full sha of the commit `rev` names; CommitNotFoundError when there is none. */
export async function resolveCommit(repo: string, rev: string): Promise<string> {
  if (!rev || rev.startsWith("-") || /[\s\0]/.test(rev)) throw new CommitNotFoundError(rev, repo);
  try {
    return (await runGit(repo, ["rev-parse", "--verify", "--quiet", "--end-of-options", `${rev}^{commit}`])).trim();
  } catch (err) {
    // --quiet: an unknown revision exits 1 silently; anything printed is a different failure.
    if (err instanceof GitCommandError && !err.output.replace(/\(git exited with code \d+\)/, "").trim()) {
      throw new CommitNotFoundError(rev, repo, { cause: err });
    }
    throw err;
  }
}

/** What kind of signature the raw commit object carries (`gpgsig` / `gpgsig-sha256` header). */
function signatureKind(object: string): "none" | "ssh" | "other" {
  const end = object.indexOf("\n\n");
  const headers = (end === -1 ? object : object.slice(0, end)).split("\n");
  let kind: "none" | "ssh" | "other" = "none";
  for (const line of headers) {
    const m = /^gpgsig(?:-sha256)? (.*)$/.exec(line);
    if (!m) continue;
    if (m[1]?.trim() !== "-----BEGIN SSH SIGNATURE-----") return "other";
    kind = "ssh";
  }
  return kind;
}

/** Maps git's `%G?` letter; `message` (`%GG`, ssh-keygen's output) refines two cases git 2.39 lumps together. */
function mapStatus(code: string, message: string): SignatureStatus {
  switch (code) {
    case "G":
      return "good";
    case "N":
      return "none";
    case "U":
      // git 2.39 reports an allowed-signers validity window that has passed as U.
      return /key has expired/i.test(message) ? "expired" : "unknown-key";
    case "B":
      // A missing or broken ssh-keygen also surfaces as B; that is a failed check, not a bad commit.
      return /cannot run|not found|No such file/i.test(message) ? "error" : "bad";
    case "X":
    case "Y":
      return "expired";
    case "R":
      return "revoked";
    default:
      return "error";
  }
}

/** ssh-keygen's explanation, without the "Good signature" line git prints even for unknown keys. */
function detail(raw: string): string {
  // Output of the log format starts with the %G? letter; anything else is our own explanation.
  if (!/^[A-Z]\n/.test(raw)) return raw.trim();
  return raw
    .split("\n")
    .slice(3)
    .map((l) => l.trim())
    .filter((l) => l && !/^Good "git" signature/.test(l))
    .join("; ");
}
