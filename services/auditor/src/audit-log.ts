import { createHash } from "node:crypto";
import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { addSeq, hasSeq, type SeqRanges } from "@moss/bus";
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
  /**
   * Who: the publishing process as it names itself (`promoter#2@host`), checked against the identities whose grants
   * may publish this kind (`curator#1@host (unverified: …)` otherwise), and the operator an operator-only message names.
   */
  who?: string;
  data: unknown;
  /** How the record departs from the message as it arrived, when it does (e.g. a payload too deep to keep as sent). */
  note?: string;
  prev: string;
  hash: string;
}

export type AuditInput = Omit<AuditRecord, "seq" | "prev" | "hash" | "at">;

const GENESIS = "0".repeat(64);
/** Lines are read from the file in chunks of this size (a log larger than memory is never read whole). */
const CHUNK = 1024 * 1024;

const isRecord = (v: unknown): v is AuditRecord =>
  typeof v === "object" && v !== null && typeof (v as AuditRecord).seq === "number" && typeof (v as AuditRecord).hash === "string";

export function hashRecord(r: Omit<AuditRecord, "hash">): string {
  return createHash("sha256").update(r.prev).update(JSON.stringify({ ...r, prev: undefined })).digest("hex");
}

/** Every line of a file (with its byte offset and length), read in chunks; the last one may lack its newline. */
function* lines(fd: number): Generator<{ text: string; offset: number; length: number; terminated: boolean }> {
  const size = fstatSync(fd).size;
  let pos = 0;
  let pending = Buffer.alloc(0);
  let pendingAt = 0;
  while (pos < size) {
    const buf = Buffer.alloc(Math.min(CHUNK, size - pos));
    const n = readSync(fd, buf, 0, buf.length, pos);
    if (n <= 0) break;
    pos += n;
    let data = pending.length ? Buffer.concat([pending, buf.subarray(0, n)]) : buf.subarray(0, n);
    let start = 0;
    for (let nl = data.indexOf(0x0a, start); nl !== -1; nl = data.indexOf(0x0a, start)) {
      yield { text: data.toString("utf8", start, nl), offset: pendingAt + start, length: nl - start + 1, terminated: true };
      start = nl + 1;
    }
    pendingAt += start;
    data = data.subarray(start);
    pending = Buffer.from(data);
  }
  if (pending.length) yield { text: pending.toString("utf8"), offset: pendingAt, length: pending.length, terminated: false };
}

/**
 * Append-only, hash-chained JSON-lines log. One writer per file; every append is fsynced before the message that
 * caused it is acked. The records stay on disk: in memory are only compact indexes (where each record starts, which
 * records belong to a batch, which holds a failure, which are dead letters) and the applied stream sequences as
 * ranges, so memory stays flat as the log grows; records are read back by offset when asked for.
 */
export class AuditLog {
  private fd: number;
  private readonly rfd: number;
  private last = GENESIS;
  private count = 0;
  private end = 0;
  /** Byte offset and length of record `seq` (1-based) at index seq-1. */
  private offsets = new Float64Array(1024);
  private lengths = new Uint32Array(1024);
  private readonly applied = new Map<string, SeqRanges>();
  private readonly batches = new Map<string, number[]>();
  private readonly failures = new Map<string, number>();
  private readonly dlq: number[] = [];

  constructor(readonly file: string) {
    mkdirSync(dirname(file), { recursive: true });
    this.fd = openSync(file, "a");
    this.rfd = openSync(file, "r");
    const { keep, endLine } = existsSync(file) ? this.load() : { keep: 0, endLine: false };
    if (keep < fstatSync(this.fd).size) {
      // Cut the torn tail before anything is appended, or the next record would be glued onto the fragment.
      ftruncateSync(this.fd, keep);
      fsyncSync(this.fd);
    }
    this.end = keep;
    if (endLine) {
      // The last record is complete but its newline was never written: end the line so the next append starts fresh.
      writeSync(this.fd, "\n");
      fsyncSync(this.fd);
      this.end += 1;
    }
  }

  /** Records in the log. */
  get size(): number {
    return this.count;
  }

  /**
   * Indexes every complete record and says how many bytes of the file to keep. Only a last line without its newline
   * can be torn by a crash mid-write: it is dropped (its message was not acked and comes back). Any other line that is
   * not a record means the file was damaged, and the auditor refuses to build on it.
   */
  private load(): { keep: number; endLine: boolean } {
    let lineNo = 0;
    let keep = 0;
    for (const l of lines(this.rfd)) {
      lineNo++;
      if (!l.text.trim()) {
        keep = l.offset + l.length;
        continue;
      }
      let rec: unknown;
      try {
        rec = JSON.parse(l.text);
      } catch (err) {
        if (!l.terminated) return { keep, endLine: false };
        throw this.damaged(lineNo, (err as Error).message);
      }
      if (!isRecord(rec)) {
        if (!l.terminated) return { keep, endLine: false };
        throw this.damaged(lineNo, "not an audit record (no numeric seq and string hash)");
      }
      this.index(rec, l.offset, l.length);
      keep = l.offset + l.length;
      if (!l.terminated) return { keep, endLine: true };
    }
    return { keep, endLine: false };
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
    if (hasSeq(this.applied.get(input.stream) ?? [], input.streamSeq)) return undefined;
    const base = { seq: this.count + 1, at: at.toISOString(), ...input, prev: this.last };
    const rec: AuditRecord = { ...base, hash: hashRecord(base) };
    const line = Buffer.from(JSON.stringify(rec) + "\n");
    writeSync(this.fd, line);
    fsyncSync(this.fd);
    this.index(rec, this.end, line.length);
    this.end += line.length;
    return rec;
  }

  /** Record `seq` (1-based), read from the file. */
  get(seq: number): AuditRecord | undefined {
    if (seq < 1 || seq > this.count) return undefined;
    const buf = Buffer.alloc(this.lengths[seq - 1]!);
    readSync(this.rfd, buf, 0, buf.length, this.offsets[seq - 1]!);
    return JSON.parse(buf.toString("utf8")) as AuditRecord;
  }

  /** The records of a batch, in log order. */
  recordsOf(batchId: string): AuditRecord[] {
    return (this.batches.get(batchId) ?? []).map((s) => this.get(s)!);
  }

  /** Every batch the log has records of. */
  batchIds(): IterableIterator<string> {
    return this.batches.keys();
  }

  /** How many records a batch has (a read model refreshes what changed). */
  countOf(batchId: string): number {
    return this.batches.get(batchId)?.length ?? 0;
  }

  /** The (valid) failure event recorded under this id. */
  failure(id: string): AuditRecord | undefined {
    const s = this.failures.get(id);
    return s === undefined ? undefined : this.get(s);
  }

  /** Dead letters after record `after` (a cursor: the last seq of the previous page), at most `limit`, oldest first. */
  deadLetters(after = 0, limit = 100): AuditRecord[] {
    let i = 0;
    while (i < this.dlq.length && this.dlq[i]! <= after) i++;
    return this.dlq.slice(i, i + limit).map((s) => this.get(s)!);
  }

  /** Every record, in order, read from the file (tools and tests; the service itself never holds them all). */
  readAll(): AuditRecord[] {
    return Array.from({ length: this.count }, (_, i) => this.get(i + 1)!);
  }

  /** Re-reads the file and checks every link of the chain. */
  verify(): { ok: boolean; records: number; brokenAt?: number; why?: string } {
    let prev = GENESIS;
    let n = 0;
    for (const l of lines(this.rfd)) {
      if (!l.text.trim()) continue;
      n++;
      let r: AuditRecord;
      try {
        r = JSON.parse(l.text) as AuditRecord;
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
    closeSync(this.rfd);
  }

  private index(r: AuditRecord, offset: number, length: number): void {
    this.count = r.seq;
    this.last = r.hash;
    if (this.count > this.offsets.length) {
      const grow = <T extends Float64Array | Uint32Array>(a: T, make: (n: number) => T): T => {
        const b = make(a.length * 2);
        b.set(a);
        return b;
      };
      this.offsets = grow(this.offsets, (n) => new Float64Array(n));
      this.lengths = grow(this.lengths, (n) => new Uint32Array(n));
    }
    this.offsets[r.seq - 1] = offset;
    this.lengths[r.seq - 1] = length;
    const ranges = this.applied.get(r.stream) ?? [];
    addSeq(ranges, r.streamSeq);
    this.applied.set(r.stream, ranges);
    if (r.batchId) {
      const list = this.batches.get(r.batchId);
      if (list) list.push(r.seq);
      else this.batches.set(r.batchId, [r.seq]);
    }
    if (r.failureId) this.failures.set(r.failureId, r.seq);
    if (r.kind === "dlq.v1") this.dlq.push(r.seq);
  }
}
