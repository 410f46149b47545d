import { chmodSync, copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  AllowedSignersMissingError,
  BadSignatureError,
  CommitNotFoundError,
  NothingToCommitError,
  SigningKeyError,
  UnsignedCommitError,
  commitSigned,
  ensureSigningKey,
  requireGoodSignature,
  verifyCommit,
  type SigningKeyFiles,
} from "@moss/git";
import { execFileSync } from "node:child_process";
import { beforeAll, describe, expect, it } from "vitest";
import { git, gitStatusLetter, isolatedHome, newRepo, stage, thrown } from "./helpers";

const tmp = isolatedHome();
const msg = { message: "moss: fix crash on empty input", trailers: { "Moss-Batch": "b-1" } };

let moss: SigningKeyFiles; // the rewriter's key, listed in moss.allowedSigners
let stranger: SigningKeyFiles; // a key nobody listed in moss.allowedSigners
beforeAll(async () => {
  moss = await ensureSigningKey(join(tmp.root(), "keys-moss"));
  stranger = await ensureSigningKey(join(tmp.root(), "keys-stranger"));
});

function publicLine(files: SigningKeyFiles): string {
  return readFileSync(files.publicKey, "utf8").trim().split(/\s+/).slice(0, 2).join(" ");
}

/** An allowed signers file with exactly these lines. */
function allowedSignersFile(name: string, ...lines: string[]): string {
  const file = join(tmp.root(), name);
  writeFileSync(file, lines.map((l) => `${l}\n`).join(""));
  return file;
}

describe("a commit signed with the configured key", () => {
  it("verifies good for the allowed signer, and git itself reports G", async () => {
    const repo = newRepo(tmp.root());
    const sha = await commitSigned(repo, { ...msg, signing: { key: moss.key, allowedSigners: moss.allowedSigners } });

    expect(sha).toMatch(/^[0-9a-f]{40}$/);
    expect(git(repo, "rev-parse", "HEAD").trim()).toBe(sha);
    const res = await verifyCommit(repo, sha, moss.allowedSigners);
    expect(res).toMatchObject({ status: "good", signer: "moss@localhost", fingerprint: moss.fingerprint });
    expect(res.raw.split("\n")[0]).toBe("G");
    expect(gitStatusLetter(repo, sha, moss.allowedSigners)).toBe("G");
    await expect(requireGoodSignature(repo, sha, moss.allowedSigners)).resolves.toBeUndefined();
    // Author and committer are Moss, and only the staged change went in.
    expect(git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>", sha).trim()).toBe("Moss <moss@localhost>|Moss <moss@localhost>");
    expect(git(repo, "show", "--name-only", "--format=", sha).trim()).toBe("app.js");
  });

  it("accepts a revision name and returns the same verdict as for the sha", async () => {
    const repo = newRepo(tmp.root());
    await commitSigned(repo, { ...msg, signing: { key: moss.key } });
    expect((await verifyCommit(repo, "HEAD", moss.allowedSigners)).status).toBe("good");
  });

  it("stays good when the committer email is not the principal (git 2.39 matches by key only)", async () => {
    const repo = newRepo(tmp.root());
    const sha = await commitSigned(repo, {
      ...msg,
      signing: { key: moss.key },
      author: { name: "Release Bot", email: "bot@example.com" },
    });
    expect(git(repo, "log", "-1", "--format=%ce", sha).trim()).toBe("bot@example.com");
    expect(await verifyCommit(repo, sha, moss.allowedSigners)).toMatchObject({ status: "good", signer: "moss@localhost" });
  });

  it("is good when the allowed signers file lists the same key under another principal, and names that principal", async () => {
    const repo = newRepo(tmp.root());
    const sha = await commitSigned(repo, { ...msg, signing: { key: moss.key } });
    const other = allowedSignersFile("as-other-principal", `someone@example.com ${publicLine(moss)}`);
    expect(gitStatusLetter(repo, sha, other)).toBe("G");
    expect(await verifyCommit(repo, sha, other)).toMatchObject({ status: "good", signer: "someone@example.com" });
  });

  it("is not good against a file that lists a different key for the same principal", async () => {
    const repo = newRepo(tmp.root());
    const sha = await commitSigned(repo, { ...msg, signing: { key: moss.key } });
    const otherKey = allowedSignersFile("as-other-key", `moss@localhost ${publicLine(stranger)}`);
    expect(gitStatusLetter(repo, sha, otherKey)).toBe("U");
    const res = await verifyCommit(repo, sha, otherKey);
    expect(res).toMatchObject({ status: "unknown-key", fingerprint: moss.fingerprint });
    expect(res.signer).toBeUndefined();
    const err = await thrown(requireGoodSignature(repo, sha, otherKey));
    expect(err).toBeInstanceOf(BadSignatureError);
  });
});

describe("commits promotion must refuse", () => {
  it("unsigned: status none, UnsignedCommitError saying to configure rewriter.signing.key", async () => {
    const repo = newRepo(tmp.root());
    const sha = await commitSigned(repo, { ...msg, signing: {} });
    expect(git(repo, "cat-file", "commit", sha)).not.toMatch(/^gpgsig/m);
    expect(gitStatusLetter(repo, sha, moss.allowedSigners)).toBe("N");
    expect(await verifyCommit(repo, sha, moss.allowedSigners)).toMatchObject({ status: "none" });

    const err = await thrown(requireGoodSignature(repo, sha, moss.allowedSigners));
    expect(err).toBeInstanceOf(UnsignedCommitError);
    expect(err).toMatchObject({ code: "MOSS_E_UNSIGNED_COMMIT", retryable: false, name: "UnsignedCommitError" });
    expect(err.message).toContain("rewriter.signing.key");
    expect(err.message).toContain(sha);
  });

  it("signed by a key not in the allowed signers file: unknown-key, BadSignatureError naming the key and the file", async () => {
    const repo = newRepo(tmp.root());
    const sha = await commitSigned(repo, { ...msg, signing: { key: stranger.key } });
    expect(gitStatusLetter(repo, sha, moss.allowedSigners)).toBe("U");
    expect(await verifyCommit(repo, sha, moss.allowedSigners)).toMatchObject({ status: "unknown-key", fingerprint: stranger.fingerprint });

    const err = await thrown(requireGoodSignature(repo, sha, moss.allowedSigners));
    expect(err).toBeInstanceOf(BadSignatureError);
    expect(err).toMatchObject({ code: "MOSS_E_BAD_SIGNATURE", retryable: false, status: "unknown-key" });
    expect(err.message).toContain(stranger.fingerprint);
    expect(err.message).toContain(moss.allowedSigners);
    expect(err.message).toMatch(/add the key to the allowed signers file/);
  });

  it("altered after signing (same signature, changed message): bad", async () => {
    const repo = newRepo(tmp.root());
    const sha = await commitSigned(repo, { ...msg, signing: { key: moss.key } });
    const object = git(repo, "cat-file", "commit", sha).replace("fix crash on empty input", "fix crash on empty input; also disable auth");
    const forged = execFileSync("git", ["hash-object", "-t", "commit", "-w", "--stdin"], { cwd: repo, input: object, encoding: "utf8" }).trim();
    expect(forged).not.toBe(sha);
    expect(gitStatusLetter(repo, forged, moss.allowedSigners)).toBe("B");
    expect((await verifyCommit(repo, forged, moss.allowedSigners)).status).toBe("bad");
    const err = await thrown(requireGoodSignature(repo, forged, moss.allowedSigners));
    expect(err).toMatchObject({ code: "MOSS_E_BAD_SIGNATURE", status: "bad" });
  });

  it("signed by a key whose valid-before has passed: expired", async () => {
    const repo = newRepo(tmp.root());
    const sha = await commitSigned(repo, { ...msg, signing: { key: moss.key } });
    const lapsed = allowedSignersFile("as-expired", `moss@localhost valid-before="20200101" ${publicLine(moss)}`);
    expect(gitStatusLetter(repo, sha, lapsed)).toBe("U"); // git 2.39 says U; ssh-keygen's message says why
    const res = await verifyCommit(repo, sha, lapsed);
    expect(res.status).toBe("expired");
    expect(res.raw).toMatch(/key has expired/);
    expect(await thrown(requireGoodSignature(repo, sha, lapsed))).toMatchObject({ status: "expired" });
  });

  it("key validity is judged at the commit's own committer date, so a backdated commit by a lapsed key is good", async () => {
    // Documents git 2.39 (ssh-keygen -Overify-time=<committer date>): valid-before does not stop a
    // holder of the old key from signing now with an earlier date. Remove a retired key from the file instead.
    const repo = newRepo(tmp.root());
    const env = { ...process.env, GIT_COMMITTER_DATE: "2019-06-01T00:00:00Z" };
    execFileSync(
      "git",
      ["-c", "user.name=M", "-c", "user.email=m@x", "-c", "gpg.format=ssh", "-c", `user.signingkey=${moss.key}`, "commit", "-S", "-q", "-m", "backdated"],
      { cwd: repo, env },
    );
    const lapsed = allowedSignersFile("as-expired-2", `moss@localhost valid-before="20200101" ${publicLine(moss)}`);
    expect((await verifyCommit(repo, "HEAD", lapsed)).status).toBe("good");
  });

  it("a non-SSH signature is unknown-key without consulting gpg", async () => {
    const repo = newRepo(tmp.root());
    const sha = await commitSigned(repo, { ...msg, signing: {} });
    const object = git(repo, "cat-file", "commit", sha).replace(
      /\n\n/,
      "\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n -----END PGP SIGNATURE-----\n\n",
    );
    const pgp = execFileSync("git", ["hash-object", "-t", "commit", "-w", "--stdin"], { cwd: repo, input: object, encoding: "utf8" }).trim();
    const res = await verifyCommit(repo, pgp, moss.allowedSigners);
    expect(res.status).toBe("unknown-key");
    expect(res.raw).toMatch(/only SSH signatures/);
  });

  it("a repository's own gpg.ssh.program cannot vouch for an unknown key", async () => {
    const repo = newRepo(tmp.root());
    const sha = await commitSigned(repo, { ...msg, signing: { key: stranger.key } });
    // A "verifier" that approves everything, configured in the repository under verification.
    const liar = join(tmp.root(), "always-good.sh");
    writeFileSync(liar, '#!/bin/sh\necho \'Good "git" signature for moss@localhost with ED25519 key SHA256:x\'\necho moss@localhost\nexit 0\n');
    chmodSync(liar, 0o755);
    git(repo, "config", "gpg.ssh.program", liar);
    expect(gitStatusLetter(repo, sha, moss.allowedSigners)).toBe("G"); // plain git is fooled
    expect((await verifyCommit(repo, sha, moss.allowedSigners)).status).toBe("unknown-key");
  });
});

describe("verification inputs", () => {
  it("a missing allowed signers file is a configuration error, not a verdict on the commit", async () => {
    const repo = newRepo(tmp.root());
    const sha = await commitSigned(repo, { ...msg, signing: { key: moss.key } });
    const missing = join(tmp.root(), "no-such-allowed-signers");
    // git alone would call the good signature "unknown key".
    expect(gitStatusLetter(repo, sha, missing)).toBe("U");
    const err = await thrown(verifyCommit(repo, sha, missing));
    expect(err).toBeInstanceOf(AllowedSignersMissingError);
    expect(err).toMatchObject({ code: "MOSS_E_ALLOWED_SIGNERS_MISSING", retryable: false });
    expect(err.message).toContain(missing);
  });

  it("an unknown revision or one that looks like an option is CommitNotFoundError", async () => {
    const repo = newRepo(tmp.root());
    await commitSigned(repo, { ...msg, signing: {} });
    for (const rev of ["0123456789abcdef0123456789abcdef01234567", "no-such-branch", "--output=/tmp/x", ""]) {
      const err = await thrown(verifyCommit(repo, rev, moss.allowedSigners));
      expect(err).toBeInstanceOf(CommitNotFoundError);
      expect(err).toMatchObject({ code: "MOSS_E_COMMIT_NOT_FOUND", retryable: false });
    }
  });
});

describe("commitSigned refuses what it cannot do right", () => {
  it("nothing staged: NothingToCommitError (git exits 1 with an empty stderr here)", async () => {
    const repo = newRepo(tmp.root());
    await commitSigned(repo, { ...msg, signing: {} });
    const err = await thrown(commitSigned(repo, { ...msg, signing: {} }));
    expect(err).toBeInstanceOf(NothingToCommitError);
    expect(err).toMatchObject({ code: "MOSS_E_NOTHING_TO_COMMIT", retryable: false });
    expect(git(repo, "rev-list", "--count", "HEAD").trim()).toBe("1");
  });

  it("a key that is missing, world-readable or passphrase-protected: SigningKeyError, and nothing is committed", async () => {
    const repo = newRepo(tmp.root());
    const open = join(tmp.root(), "open_key");
    copyFileSync(moss.key, open);
    chmodSync(open, 0o644);
    const encrypted = join(tmp.root(), "encrypted_key");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "secret", "-C", "x", "-f", encrypted]);

    const cases: Array<[string, RegExp]> = [
      [join(tmp.root(), "no-such-key"), /cannot be read \(ENOENT\)/],
      [open, /0644 are too open.*chmod 600/],
      [encrypted, /without a passphrase/],
      [moss.publicKey, /is a public key.*without \.pub/],
    ];
    for (const [key, why] of cases) {
      const err = await thrown(commitSigned(repo, { ...msg, signing: { key } }));
      expect(err).toBeInstanceOf(SigningKeyError);
      expect(err).toMatchObject({ code: "MOSS_E_SIGNING_KEY", retryable: false });
      expect(err.message).toMatch(why);
      expect(err.message).toContain("rewriter.signing.key");
    }
    expect(() => git(repo, "rev-parse", "--verify", "-q", "HEAD")).toThrow();
  });

  it("repository hooks do not run: an in-tree hook cannot block the commit or rewrite its message", async () => {
    const repo = newRepo(tmp.root());
    // husky-style: hooks live in the tree, where a patch could change them.
    stage(repo, ".hooks/commit-msg", '#!/bin/sh\necho "rewritten by hook" > "$1"\n');
    stage(repo, ".hooks/pre-commit", "#!/bin/sh\necho pwned > pwned.txt\nexit 1\n");
    chmodSync(join(repo, ".hooks/commit-msg"), 0o755);
    chmodSync(join(repo, ".hooks/pre-commit"), 0o755);
    git(repo, "config", "core.hooksPath", ".hooks");

    const sha = await commitSigned(repo, { ...msg, signing: { key: moss.key } });
    expect(git(repo, "log", "-1", "--format=%s", sha).trim()).toBe(msg.message);
    expect(() => readFileSync(join(repo, "pwned.txt"))).toThrow();
    expect((await verifyCommit(repo, sha, moss.allowedSigners)).status).toBe("good");
  });
});
