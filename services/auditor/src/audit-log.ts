import { createHash } from "node:crypto";
import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { Codes, MossError } from "@moss/errors";

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

const isRecord = (v: unknown): v is AuditRecord =>
  typeof v === "object" && v !== null && typeof (v as AuditRecord).seq === "number" && typeof (v as AuditRecord).hash === "string";

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
    const { keep, endLine } = existsSync(file) ? this.load() : { keep: 0, endLine: false };
    this.fd = openSync(file, "a");
    if (keep < fstatSync(this.fd).size) {
      // Cut the torn tail before anything is appended, or the next record would be glued onto the fragment.
      ftruncateSync(this.fd, keep);
      fsyncSync(this.fd);
    }
    if (endLine) {
      // The last record is complete but its newline was never written: end the line so the next append starts fresh.
      writeSync(this.fd, "\n");
      fsyncSync(this.fd);
    }
  }

  /**
   * Indexes every complete record and says how many bytes of the file to keep. Only a last line without its newline
   * can be torn by a crash mid-write: it is dropped (its message was not acked and comes back). Any other line that is
   * not a record means the file was damaged, and the auditor refuses to build on it.
   */
  private load(): { keep: number; endLine: boolean } {
    const buf = readFileSync(this.file);
    let start = 0;
    for (let line = 1; start < buf.length; line++) {
      const nl = buf.indexOf(0x0a, start);
      const last = nl === -1;
      const text = buf.toString("utf8", start, last ? buf.length : nl);
      if (text.trim()) {
        let rec: unknown;
        try {
          rec = JSON.parse(text);
        } catch (err) {
          if (last) return { keep: start, endLine: false };
          throw this.damaged(line, (err as Error).message);
        }
        if (!isRecord(rec)) {
          if (last) return { keep: start, endLine: false };
          throw this.damaged(line, "not an audit record (no numeric seq and string hash)");
        }
        this.index(rec);
      }
      if (last) return { keep: buf.length, endLine: true };
      start = nl + 1;
    }
    return { keep: buf.length, endLine: false };
  }

  private damaged(line: number, why: string): Error {
    return new MossError(
      Codes.AUDIT_LOG_DAMAGED,
      `audit log ${this.file} is damaged at line ${line}: ${why}. The auditor will not append to a damaged log: ` +
        `restore the file from a backup, or move it aside to start a new log.`,
    );
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
