import { randomBytes } from "node:crypto";
import { appendFile, chmod, link, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { KeySetupError } from "./errors";
import { absPath, sshKeygen, type KeygenResult } from "./ssh";
import type { SigningKeyFiles } from "./types";

/** File names inside the key directory. */
const KEY_FILE = "moss_ed25519";
const ALLOWED_SIGNERS_FILE = "allowed_signers";
/** A plain principal: no spaces, commas, quotes or ssh-keygen wildcards (`*`, `?`, `!`). */
const PRINCIPAL = /^[A-Za-z0-9._+@-]+$/;

/**
 * Ensures `dir` holds an ed25519 signing key pair (`moss_ed25519`, `moss_ed25519.pub`) and an
 * `allowed_signers` file that lists `principal` with that key. Used by `moss keys init`, tests and
 * the demo.
 *
 * Idempotent: an existing key is reused (never overwritten); the public key file is rewritten from
 * the private key if missing or stale; the allowed signers line is appended only when no line
 * already lists this principal with this key (other lines are kept). Safe against a concurrent
 * call: the key is generated under a temporary name and hard-linked into place, first one wins.
 */
export async function ensureSigningKey(dir: string, principal = "moss@localhost"): Promise<SigningKeyFiles> {
  if (!PRINCIPAL.test(principal)) {
    throw new KeySetupError(
      `invalid principal ${JSON.stringify(principal)}: use a plain identity such as moss@localhost (letters, digits, . _ + @ -)`,
    );
  }
  const root = absPath(dir);
  await mkdir(root, { recursive: true, mode: 0o700 });
  const key = join(root, KEY_FILE);
  const publicKey = `${key}.pub`;
  const allowedSigners = join(root, ALLOWED_SIGNERS_FILE);

  if (!(await isFile(key))) await generateKey(key, principal);
  const mode = (await stat(key)).mode;
  if (process.platform !== "win32" && (mode & 0o077) !== 0) {
    throw new KeySetupError(
      `existing signing key ${key} has permissions ${(mode & 0o777).toString(8).padStart(4, "0")}, which ssh-keygen refuses; run chmod 600 ${key}`,
    );
  }

  // The private key is the truth: derive the public half from it.
  const pub = (await keygen(["-y", "-P", "", "-f", key], `read the public key of ${key}`)).stdout.trim();
  const [type, blob] = pub.split(/\s+/);
  if (!type || !blob) throw new KeySetupError(`ssh-keygen printed no public key for ${key}`);
  const current = await readFile(publicKey, "utf8").catch(() => "");
  const [curType, curBlob] = current.trim().split(/\s+/);
  if (curType !== type || curBlob !== blob) await writeAtomically(publicKey, `${type} ${blob} ${principal}\n`, 0o644);

  await ensureAllowedSigner(allowedSigners, principal, type, blob);

  const fp = (await keygen(["-l", "-E", "sha256", "-f", publicKey], `fingerprint ${publicKey}`)).stdout.split(/\s+/)[1];
  if (!fp?.startsWith("SHA256:")) throw new KeySetupError(`ssh-keygen printed no fingerprint for ${publicKey}`);
  return { key, publicKey, allowedSigners, fingerprint: fp };
}

async function generateKey(key: string, principal: string): Promise<void> {
  const tmp = `${key}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    await keygen(["-q", "-t", "ed25519", "-N", "", "-C", principal, "-f", tmp], `create a key in ${tmp}`);
    try {
      await link(tmp, key);
    } catch (err) {
      // Another process created the key meanwhile: use theirs.
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") {
        throw new KeySetupError(`cannot create ${key}: ${(err as Error).message}`, { cause: err });
      }
    }
  } finally {
    await rm(tmp, { force: true });
    await rm(`${tmp}.pub`, { force: true });
  }
}

async function ensureAllowedSigner(file: string, principal: string, type: string, blob: string): Promise<void> {
  const text = await readFile(file, "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return "";
    throw new KeySetupError(`cannot read allowed signers file ${file}: ${err.message}`, { cause: err });
  });
  const listed = text.split("\n").some((line) => {
    const t = line.trim();
    if (!t || t.startsWith("#")) return false;
    const tokens = t.split(/\s+/);
    const at = tokens.indexOf(type);
    // `<principals> [options] <type> <blob>`: the principals field is a comma list.
    return at > 0 && tokens[at + 1] === blob && (tokens[0] ?? "").split(",").includes(principal);
  });
  if (listed) return;
  const sep = text && !text.endsWith("\n") ? "\n" : "";
  await appendFile(file, `${sep}${principal} ${type} ${blob}\n`, { mode: 0o644 });
}

async function keygen(args: string[], what: string): Promise<KeygenResult> {
  const res = await sshKeygen(args);
  if (res.spawnError) {
    throw new KeySetupError(`cannot ${what}: ssh-keygen is not installed (install the OpenSSH client, >= 8.2)`, { cause: res.spawnError });
  }
  if (res.code !== 0) {
    throw new KeySetupError(`cannot ${what}: ssh-keygen exited with ${res.code}: ${res.stderr.trim() || "(no output)"}`);
  }
  return res;
}

async function isFile(p: string): Promise<boolean> {
  try {
    const st = await stat(p);
    if (!st.isFile()) throw new KeySetupError(`${p} exists but is not a file; move it away so a signing key can be created there`);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

async function writeAtomically(file: string, content: string, mode: number): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  await writeFile(tmp, content, { mode });
  await chmod(tmp, mode);
  await rename(tmp, file);
}
