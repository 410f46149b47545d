import { execFile } from "node:child_process";
import { homedir } from "node:os";
import { resolve } from "node:path";

/** Result of an ssh-keygen run; `code` is the exit status (null when it could not start). */
export interface KeygenResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Set when ssh-keygen could not be started at all (ENOENT: OpenSSH client not installed). */
  spawnError?: Error;
}

/** Runs ssh-keygen with stdin closed, so it can never wait for a passphrase typed on stdin. */
export function sshKeygen(args: readonly string[]): Promise<KeygenResult> {
  return new Promise((done) => {
    const child = execFile("ssh-keygen", [...args], { timeout: 30_000, encoding: "utf8" }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: unknown }) | null;
      if (e && typeof e.code === "string") done({ code: null, stdout, stderr, spawnError: e });
      else done({ code: e ? (typeof e.code === "number" ? e.code : 1) : 0, stdout, stderr });
    });
    child.stdin?.end();
  });
}

/** Absolute path, with a leading `~/` expanded the way git expands it in config values. */
export function absPath(p: string): string {
  if (p === "~") return homedir();
  if (p.startsWith("~/")) return resolve(homedir(), p.slice(2));
  return resolve(p);
}
