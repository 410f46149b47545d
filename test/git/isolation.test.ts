import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { commitSigned, commitTrailers, ensureSigningKey, requireGoodSignature, verifyCommit } from "@moss/git";
import { describe, expect, it } from "vitest";
import { git, isolatedHome, newRepo, stage } from "./helpers";

const tmp = isolatedHome();

/** A user whose global config would sign with some other key, show signatures in every log, and name commits after themselves. */
const USER_GITCONFIG = `[user]
\tname = Global User
\temail = global@example.com
\tsigningkey = /nonexistent/users-own-key
[author]
\tname = Global Author
[commit]
\tgpgsign = true
[gpg]
\tformat = ssh
[log]
\tshowSignature = true
`;

describe("the user's own git configuration", () => {
  it("is neither used nor modified by committing and verifying", async () => {
    const gitconfig = join(tmp.home(), ".gitconfig");
    writeFileSync(gitconfig, USER_GITCONFIG);
    const before = { text: readFileSync(gitconfig, "utf8"), mtime: statSync(gitconfig).mtimeMs, list: git(tmp.root(), "config", "--global", "--list") };

    const keys = await ensureSigningKey(join(tmp.root(), "keys"));
    const repo = newRepo(tmp.root());
    git(repo, "config", "user.name", "Repo User");
    git(repo, "config", "committer.name", "Repo Committer");
    const repoConfig = readFileSync(join(repo, ".git/config"), "utf8");

    // Unsigned although the user's config says commit.gpgsign=true with a key that does not exist.
    const unsigned = await commitSigned(repo, { message: "unsigned", trailers: { "Moss-Attempt": "1" }, signing: {} });
    stage(repo, "app.js", "console.log('v2');\n");
    const signed = await commitSigned(repo, { message: "signed", trailers: { "Moss-Attempt": "2" }, signing: keys });

    expect(git(repo, "log", "--no-show-signature", "-2", "--format=%an <%ae>|%cn <%ce>").trim().split("\n")).toEqual([
      "Moss <moss@localhost>|Moss <moss@localhost>",
      "Moss <moss@localhost>|Moss <moss@localhost>",
    ]);
    // (--no-show-signature above: this user's log.showSignature=true adds lines to plain `git log`.)
    // log.showSignature=true must not leak ssh-keygen output into what we parse.
    expect(await verifyCommit(repo, signed, keys.allowedSigners)).toMatchObject({ status: "good", signer: "moss@localhost" });
    expect((await verifyCommit(repo, unsigned, keys.allowedSigners)).status).toBe("none");
    expect(await commitTrailers(repo, signed)).toEqual({ "Moss-Attempt": ["2"] });

    expect(readFileSync(gitconfig, "utf8")).toBe(before.text);
    expect(statSync(gitconfig).mtimeMs).toBe(before.mtime);
    expect(git(tmp.root(), "config", "--global", "--list")).toBe(before.list);
    expect(readFileSync(join(repo, ".git/config"), "utf8")).toBe(repoConfig);
  });

  it("GIT_* variables in Moss's own environment do not re-attribute or redirect its commits", async () => {
    const keys = await ensureSigningKey(join(tmp.root(), "keys"));
    const repo = newRepo(tmp.root());
    const elsewhere = newRepo(tmp.root());
    const saved = { ...process.env };
    Object.assign(process.env, { GIT_AUTHOR_NAME: "Env Author", GIT_COMMITTER_EMAIL: "env@example.com", GIT_DIR: join(elsewhere, ".git") });
    try {
      const sha = await commitSigned(repo, { message: "m", trailers: {}, signing: keys });
      await requireGoodSignature(repo, sha, keys.allowedSigners);
    } finally {
      for (const k of ["GIT_AUTHOR_NAME", "GIT_COMMITTER_EMAIL", "GIT_DIR"]) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
    expect(git(repo, "log", "--no-show-signature", "-1", "--format=%an <%ae>|%cn <%ce>").trim()).toBe("Moss <moss@localhost>|Moss <moss@localhost>");
    expect(() => git(elsewhere, "rev-parse", "--verify", "-q", "HEAD")).toThrow();
  });

  it("an explicit author is used for both author and committer", async () => {
    const repo = newRepo(tmp.root());
    await commitSigned(repo, { message: "m", trailers: {}, signing: {}, author: { name: "Moss Staging", email: "moss@staging.example" } });
    expect(git(repo, "log", "--no-show-signature", "-1", "--format=%an <%ae>|%cn <%ce>").trim()).toBe(
      "Moss Staging <moss@staging.example>|Moss Staging <moss@staging.example>",
    );
  });
});
