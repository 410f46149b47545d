import { readFile, stat } from "node:fs/promises";
import { GitCommandError, InvalidCommitInputError, NothingToCommitError, SigningKeyError } from "./errors";
import { runGit } from "./run";
import { absPath, sshKeygen } from "./ssh";
import type { CommitOptions, GitIdentity } from "./types";

const MOSS: GitIdentity = { name: "Moss", email: "moss@localhost" };
/** What git accepts as a trailer token without quoting surprises. */
const TRAILER_KEY = /^[A-Za-z0-9][A-Za-z0-9-]*$/;

/**
 * Commits everything staged in `worktree` with `message` and `trailers` (a last paragraph of `Key: value` lines),
 * as `author` (default `Moss <moss@localhost>`) for both author and committer, SSH-signed when
 * `signing.key` is set. Returns the new commit's sha.
 *
 * Everything is passed with `-c` for this one git process; neither the user's global config nor
 * the repository's is read for identity/signing or written. Hooks are off (the runner's hardening, and
 * `--no-verify`): a patch may edit hook scripts kept in the tree (husky), and they would run here, in the
 * rewriter, and could rewrite the message or trailers.
 *
 * Throws NothingToCommitError when nothing is staged, SigningKeyError when the key cannot sign,
 * InvalidCommitInputError for an empty message or a trailer git cannot carry, GitCommandError otherwise.
 */
export async function commitSigned(worktree: string, opts: CommitOptions): Promise<string> {
  const message = opts.message.trim();
  if (!message) throw new InvalidCommitInputError("message", "it is empty");
  const block = trailerBlock(opts.trailers);
  const who = opts.author ?? MOSS;
  checkIdentity(who);

  const config = [
    `author.name=${who.name}`,
    `author.email=${who.email}`,
    `committer.name=${who.name}`,
    `committer.email=${who.email}`,
    `user.name=${who.name}`,
    `user.email=${who.email}`,
  ];
  const key = opts.signing.key ? await usableKey(opts.signing.key) : undefined;
  if (key) {
    config.push("gpg.format=ssh", `user.signingkey=${key}`, "gpg.ssh.program=ssh-keygen", "commit.gpgsign=true");
  } else {
    // A user's `commit.gpgsign=true` would otherwise sign with their own key.
    config.push("commit.gpgsign=false");
  }

  const staged = await runGit(worktree, ["diff", "--cached", "--name-only", "-z"]);
  if (!staged) throw new NothingToCommitError(worktree);

  // The trailer block is written into the message here rather than by `--trailer`: git would apply the repository's
  // `trailer.*` config to it (a `trailer.<key>.cmd` runs a program, `.key` renames the key).
  const args = ["commit", "--quiet", "--no-verify", "--no-edit", "--cleanup=whitespace", "-m", block ? `${message}\n\n${block}` : message];
  try {
    await runGit(worktree, args, { config });
  } catch (err) {
    if (key && err instanceof GitCommandError && /failed to write commit object|ssh-keygen|private key|Load key/i.test(err.output)) {
      throw new SigningKeyError(key, `git could not sign the commit: ${oneLine(err.output)}`, { cause: err });
    }
    throw err;
  }
  return (await runGit(worktree, ["rev-parse", "--verify", "HEAD^{commit}"])).trim();
}

/** `Key: value` lines, in insertion order: the commit message's last paragraph, where git reads trailers. */
function trailerBlock(trailers: Record<string, string>): string {
  const lines: string[] = [];
  for (const [k, v] of Object.entries(trailers)) {
    if (!TRAILER_KEY.test(k)) {
      throw new InvalidCommitInputError(`trailer ${JSON.stringify(k)}`, "a trailer key is letters, digits and '-', starting with a letter or digit");
    }
    const value = v.trim();
    if (!value) throw new InvalidCommitInputError(`trailer ${k}`, "its value is empty; omit the trailer instead");
    if (/[\r\n]/.test(value)) {
      throw new InvalidCommitInputError(`trailer ${k}`, "its value spans lines; join the items, e.g. with \", \"");
    }
    lines.push(`${k}: ${value}`);
  }
  return lines.join("\n");
}

function checkIdentity(who: GitIdentity): void {
  if (!who.name.trim() || /[<>\r\n]/.test(who.name)) {
    throw new InvalidCommitInputError("author name", `${JSON.stringify(who.name)} is empty or contains <, > or a line break`);
  }
  if (!who.email.trim() || /[<>\s]/.test(who.email)) {
    throw new InvalidCommitInputError("author email", `${JSON.stringify(who.email)} is empty or contains <, > or whitespace`);
  }
}

/**
 * Resolves the key path and checks ssh-keygen can load it without a passphrase, so a bad key fails
 * here with a clear message instead of inside git, and an encrypted key never waits on a tty prompt.
 */
async function usableKey(configured: string): Promise<string> {
  const key = absPath(configured);
  let mode: number;
  let head: string;
  try {
    const st = await stat(key);
    if (!st.isFile()) throw new SigningKeyError(key, "it is not a file");
    mode = st.mode;
    head = (await readFile(key, "utf8")).slice(0, 64);
  } catch (cause) {
    if (cause instanceof SigningKeyError) throw cause;
    throw new SigningKeyError(key, `it cannot be read (${(cause as NodeJS.ErrnoException).code ?? String(cause)})`, { cause });
  }
  if (/^(ssh-|ecdsa-|sk-)/.test(head)) {
    throw new SigningKeyError(key, "it is a public key; give the private key (the same path without .pub)");
  }
  if (process.platform !== "win32" && (mode & 0o077) !== 0) {
    // ssh-keygen ignores such a key ("UNPROTECTED PRIVATE KEY FILE").
    throw new SigningKeyError(key, `its permissions ${(mode & 0o777).toString(8).padStart(4, "0")} are too open (ssh-keygen ignores it); run chmod 600 ${key}`);
  }
  const probe = await sshKeygen(["-y", "-P", "", "-f", key]);
  if (probe.spawnError) throw new SigningKeyError(key, "ssh-keygen is not installed (install the OpenSSH client, >= 8.2)", { cause: probe.spawnError });
  if (probe.code !== 0) {
    throw new SigningKeyError(key, `ssh-keygen cannot load it without a passphrase (${oneLine(probe.stderr) || "not a private key"})`);
  }
  return key;
}

function oneLine(s: string): string {
  return s
    .split("\n")
    .map((l) => l.replace(/[@?]+$/g, "").trim())
    .filter((l) => l && !/^@+$/.test(l))
    .join("; ");
}
