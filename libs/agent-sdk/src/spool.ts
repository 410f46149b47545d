import { appendFile, readFile, readdir, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { randomBytes } from "node:crypto";

/**
 * A local, append-only JSONL file of failure events that could not be published yet.
 *
 * To send, the spool is first *claimed* by renaming it to `<spool>.<pid>.<rand>.sending`: appends
 * that happen meanwhile (from this or another process) start a new spool, and nothing is read and
 * rewritten concurrently. Lines that still fail are appended back to the spool; a claim left behind
 * by a process that died (or by an earlier life of this pid, e.g. PID 1 in a restarted container)
 * is picked up by the next flush. A crash between re-append and unlink can send an event twice;
 * the `Nats-Msg-Id` dedup window absorbs it.
 */
export class Spool {
  constructor(readonly file: string) {}

  async append(lines: readonly string[]): Promise<void> {
    if (lines.length === 0) return;
    await appendFile(this.file, lines.map((l) => `${l}\n`).join(""), { mode: 0o600 });
  }

  /** True when something is waiting in the spool or in an abandoned claim. */
  async hasPending(): Promise<boolean> {
    return (await exists(this.file)) || (await this.claimsToRecover()).length > 0;
  }

  /**
   * Send everything spooled through `send` (one line at a time, in order). Lines `send` rejects stay
   * spooled; after the first failure the rest is kept without trying (the sink is likely down).
   * Returns how many lines were sent and how many remain. Callers serialize flushes in-process.
   */
  async flush(send: (line: string) => Promise<void>, onBadLine: (why: string) => void): Promise<{ sent: number; kept: number }> {
    const claims = await this.claimsToRecover();
    const mine = `${this.file}.${process.pid}.${randomBytes(4).toString("hex")}.sending`;
    try {
      await rename(this.file, mine);
      claims.push(mine);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    let sent = 0;
    let kept = 0;
    let healthy = true;
    for (const claim of claims) {
      const text = await readFile(claim, "utf8").catch((err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") return ""; // another process recovered it first
        throw err;
      });
      const keep: string[] = [];
      for (const line of text.split("\n")) {
        if (line.trim() === "") continue;
        if (!healthy) {
          keep.push(line);
          continue;
        }
        try {
          JSON.parse(line);
        } catch {
          // A torn line (crash mid-append) can never be sent: say so and drop it.
          onBadLine(`dropping an unreadable line of ${claim} (${line.length} chars)`);
          continue;
        }
        try {
          await send(line);
          sent++;
        } catch {
          healthy = false;
          keep.push(line);
        }
      }
      await this.append(keep);
      kept += keep.length;
      await unlink(claim).catch(() => undefined);
    }
    return { sent, kept };
  }

  /** Claims of dead processes, or of this pid from an earlier life (this process holds none outside `flush`). */
  private async claimsToRecover(): Promise<string[]> {
    const dir = dirname(this.file);
    const prefix = `${basename(this.file)}.`;
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return [];
    }
    const out: string[] = [];
    for (const n of names) {
      if (!n.startsWith(prefix) || !n.endsWith(".sending")) continue;
      const m = /^(\d+)\.[0-9a-f]+\.sending$/.exec(n.slice(prefix.length));
      if (!m) continue;
      const pid = Number(m[1]);
      if (pid === process.pid || !alive(pid)) out.push(join(dir, n));
    }
    return out.sort();
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    return (await stat(file)).size > 0;
  } catch {
    return false;
  }
}
