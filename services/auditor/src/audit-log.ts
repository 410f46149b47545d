import { createHash } from "node:crypto";
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from "node:fs";
import { dirname } from "node:path";

/** One line of the audit log. `hash` chains it to the line before, so an edit anywhere breaks verification. */
export interface AuditRecord {
  seq: number;
  at: string;
  stream: string;
  streamSeq: number;
  subject: string;
  /** Message name (`batch.ready.v1`...). */
  kind: string;
  batchId?: string;
  failureId?: string;
  traceId?: string;
  data: unknown;
  prev: string;
  hash: string;
}

export type AuditInput = Omit<AuditRecord, "seq" | "prev" | "hash" | "at">;

const GENESIS = "0".repeat(64);

export function hashRecord(r: Omit<AuditRecord, "hash">): string {
  return createHash("sha256").update(r.prev).update(JSON.stringify({ ...r, prev: undefined })).digest("hex");
}

/**
 * Append-only, hash-chained JSON-lines log with in-memory indexes by batch and failure.
 * One writer per file; every append is fsynced before the message that caused it is acked.
 */
export class AuditLog {
  private fd: number;
  private last = GENESIS;
  private seq = 0;
  private readonly seen = new Set<string>();
  readonly byBatch = new Map<string, AuditRecord[]>();
  readonly byFailure = new Map<string, AuditRecord>();
  readonly records: AuditRecord[] = [];

  constructor(readonly file: string) {
    mkdirSync(dirname(file), { recursive: true });
    if (existsSync(file)) {
      const text = readFileSync(file, "utf8");
      const lines = text.split("\n");
      for (const [i, line] of lines.entries()) {
        if (!line.trim()) continue;
        try {
          this.index(JSON.parse(line) as AuditRecord);
        } catch (err) {
          // A torn last line (crash mid-write) is dropped; the message it recorded was not acked and comes back.
          if (i < lines.length - 2) throw new Error(`audit log ${file} is damaged at line ${i + 1}: ${(err as Error).message}`);
        }
      }
    }
    this.fd = openSync(file, "a");
  }

  /** Appends unless this stream message was recorded already (redelivery). Returns the record, or undefined if a duplicate. */
  append(input: AuditInput, at = new Date()): AuditRecord | undefined {
    if (this.seen.has(`${input.stream}:${input.streamSeq}`)) return undefined;
    const base = { seq: this.seq + 1, at: at.toISOString(), ...input, prev: this.last };
    const rec: AuditRecord = { ...base, hash: hashRecord(base) };
    writeSync(this.fd, JSON.stringify(rec) + "\n");
    fsyncSync(this.fd);
    this.index(rec);
    return rec;
  }

  /** Re-reads the file and checks every link of the chain. */
  verify(): { ok: boolean; records: number; brokenAt?: number; why?: string } {
    let prev = GENESIS;
    let n = 0;
    for (const line of readFileSync(this.file, "utf8").split("\n")) {
      if (!line.trim()) continue;
      n++;
      let r: AuditRecord;
      try {
        r = JSON.parse(line) as AuditRecord;
      } catch {
        return { ok: false, records: n, brokenAt: n, why: "line is not JSON" };
      }
      if (r.prev !== prev) return { ok: false, records: n, brokenAt: n, why: "prev hash does not match the line before" };
      const { hash, ...rest } = r;
      if (hashRecord(rest) !== hash) return { ok: false, records: n, brokenAt: n, why: "record content does not match its hash" };
      prev = hash;
    }
    return { ok: true, records: n };
  }

  close(): void {
    closeSync(this.fd);
  }

  private index(r: AuditRecord): void {
    this.seq = r.seq;
    this.last = r.hash;
    this.seen.add(`${r.stream}:${r.streamSeq}`);
    this.records.push(r);
    if (r.batchId) {
      const list = this.byBatch.get(r.batchId) ?? [];
      list.push(r);
      this.byBatch.set(r.batchId, list);
    }
    if (r.failureId) this.byFailure.set(r.failureId, r);
  }
}
