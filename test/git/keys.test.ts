import { execFileSync } from "node:child_process";
import { readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { KeySetupError, commitSigned, ensureSigningKey, verifyCommit } from "@moss/git";
import { describe, expect, it } from "vitest";
import { isolatedHome, newRepo, thrown } from "./helpers";

const tmp = isolatedHome();

function signerLines(file: string): string[] {
  return readFileSync(file, "utf8").split("\n").filter(Boolean);
}

describe("ensureSigningKey", () => {
  it("creates an ed25519 key (mode 600), its public key and an allowed signers line ssh-keygen accepts", async () => {
    const dir = join(tmp.root(), "fresh");
    const k = await ensureSigningKey(dir);

    expect(k).toEqual({
      key: join(dir, "moss_ed25519"),
      publicKey: join(dir, "moss_ed25519.pub"),
      allowedSigners: join(dir, "allowed_signers"),
      fingerprint: expect.stringMatching(/^SHA256:[A-Za-z0-9+/]{43}$/),
    });
    expect(statSync(k.key).mode & 0o777).toBe(0o600);
    const [type, blob] = readFileSync(k.publicKey, "utf8").split(" ");
    expect(type).toBe("ssh-ed25519");
    expect(signerLines(k.allowedSigners)).toEqual([`moss@localhost ssh-ed25519 ${blob}`]);

    // The same files work with ssh-keygen directly: sign, then verify against the allowed signers.
    const data = join(tmp.root(), "data.txt");
    writeFileSync(data, "hello\n");
    execFileSync("ssh-keygen", ["-Y", "sign", "-q", "-n", "git", "-f", k.key, data], { stdio: "ignore" });
    const out = execFileSync(
      "ssh-keygen",
      ["-Y", "verify", "-n", "git", "-f", k.allowedSigners, "-I", "moss@localhost", "-s", `${data}.sig`],
      { input: "hello\n", encoding: "utf8" },
    );
    expect(out).toContain(k.fingerprint);
  });

  it("is idempotent: the key is reused, the signer is listed once, other lines are kept", async () => {
    const dir = join(tmp.root(), "again");
    const first = await ensureSigningKey(dir);
    const keyBytes = readFileSync(first.key);
    // The operator lists a human reviewer in the same file.
    writeFileSync(first.allowedSigners, `${readFileSync(first.allowedSigners, "utf8")}alice@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ1l/CjrWsXBNu+11ClJvREuqj/ZHFQkah/2TjyS9KBm`);

    const second = await ensureSigningKey(dir);
    expect(second).toEqual(first);
    expect(readFileSync(second.key).equals(keyBytes)).toBe(true);
    const lines = signerLines(second.allowedSigners);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/^alice@example\.com /);

    // A lost public key is recreated from the private key, not by making a new pair.
    rmSync(first.publicKey);
    const third = await ensureSigningKey(dir);
    expect(third.fingerprint).toBe(first.fingerprint);
    expect(readFileSync(third.publicKey, "utf8")).toMatch(/^ssh-ed25519 /);
    expect(signerLines(third.allowedSigners)).toHaveLength(2);

    // Another principal for the same key adds its own line; commits verify through it.
    const bot = await ensureSigningKey(dir, "moss-bot@example.com");
    expect(bot.fingerprint).toBe(first.fingerprint);
    expect(signerLines(bot.allowedSigners)).toHaveLength(3);
  });

  it("concurrent first calls end with one key that all of them return", async () => {
    const dir = join(tmp.root(), "race");
    const all = await Promise.all([1, 2, 3, 4].map(() => ensureSigningKey(dir)));
    expect(new Set(all.map((k) => k.fingerprint)).size).toBe(1);
    const repo = newRepo(tmp.root());
    const sha = await commitSigned(repo, { message: "m", trailers: {}, signing: { key: all[0]!.key } });
    expect((await verifyCommit(repo, sha, all[3]!.allowedSigners)).status).toBe("good");
  });

  it("refuses a principal ssh-keygen would read as a pattern or several principals", async () => {
    for (const p of ["a b", "a,b", "*@example.com", "", 'x"y']) {
      const err = await thrown(ensureSigningKey(join(tmp.root(), "bad"), p));
      expect(err).toBeInstanceOf(KeySetupError);
      expect(err).toMatchObject({ code: "MOSS_E_SIGNING_KEY_SETUP", retryable: false });
    }
  });
});
