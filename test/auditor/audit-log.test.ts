import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AuditLog, hashRecord, type AuditInput, type AuditRecord } from "@moss/auditor";

const GENESIS = "0".repeat(64);

let dir: string;
let file: string;
const open: AuditLog[] = [];

/** Opens a log and remembers it so every fd is closed even when a test fails. */
function openLog(): AuditLog {
  const log = new AuditLog(file);
  open.push(log);
  return log;
}

function closeAll(): void {
  for (const log of open.splice(0)) {
    try {
      log.close();
    } catch {
      // already closed by the test
    }
  }
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "moss-audit-"));
  // A nested path: the log creates its directory.
  file = join(dir, "audit", "audit.jsonl");
});
afterEach(() => {
  closeAll();
  rmSync(dir, { recursive: true, force: true });
});

/** A pipeline record with every optional field set, so tampering can reach each of them. */
function input(streamSeq: number, over: Partial<AuditInput> = {}): AuditInput {
  return {
    stream: "MOSS_PIPELINE",
    streamSeq,
    subject: "moss.batch.ready.v1",
    kind: "batch.ready.v1",
    batchId: `b-${streamSeq}`,
    failureId: `f-${streamSeq}`,
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    data: { n: streamSeq, nested: { list: [1, 2, 3], text: "héllo" } },
    ...over,
  };
}

const lines = (): string[] => readFileSync(file, "utf8").split("\n").filter((l) => l.trim());
const parsed = (): AuditRecord[] => lines().map((l) => JSON.parse(l) as AuditRecord);

function rewriteLine(index: number, edit: (r: Record<string, unknown>) => void): void {
  const all = lines();
  const r = JSON.parse(all[index]!) as Record<string, unknown>;
  edit(r);
  all[index] = JSON.stringify(r);
  writeFileSync(file, all.join("\n") + "\n");
}

describe("AuditLog append", () => {
  it("chains every record to the one before and verifies", () => {
    const log = openLog();
    const t0 = new Date("2025-03-01T10:00:00.000Z");
    const recs = [1, 2, 3].map((n) => log.append(input(n), new Date(t0.getTime() + n * 1000))!);

    expect(recs.map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(recs[0]!.prev).toBe(GENESIS);
    expect(recs[1]!.prev).toBe(recs[0]!.hash);
    expect(recs[2]!.prev).toBe(recs[1]!.hash);
    expect(new Set(recs.map((r) => r.hash)).size).toBe(3);
    expect(recs[1]!.at).toBe("2025-03-01T10:00:02.000Z");
    for (const r of recs) {
      const { hash, ...rest } = r;
      expect(hashRecord(rest)).toBe(hash);
    }

    // What is on disk is exactly what append returned, one JSON line each.
    expect(parsed()).toEqual(recs);
    expect(log.verify()).toEqual({ ok: true, records: 3 });

    // In-memory indexes answer the auditor's queries.
    expect(log.readAll()).toHaveLength(3);
    expect(log.recordsOf("b-2")).toEqual([recs[1]]);
    expect(log.failure("f-3")).toEqual(recs[2]);
  });

  it("a new log creates its directory and file and verifies with zero records", () => {
    const log = openLog();
    expect(readFileSync(file, "utf8")).toBe("");
    expect(log.verify()).toEqual({ ok: true, records: 0 });
    expect(log.append(input(1))?.prev).toBe(GENESIS);
  });

  it("does not append a redelivered (stream, streamSeq) twice", () => {
    const log = openLog();
    const first = log.append(input(7));
    expect(first?.seq).toBe(1);
    expect(log.append(input(7, { data: { redelivered: true } }))).toBeUndefined();
    expect(lines()).toHaveLength(1);
    expect(log.readAll()).toHaveLength(1);

    // The same stream sequence on another stream is a different message.
    const other = log.append(input(7, { stream: "MOSS_FAILURES", subject: "moss.failure.shop", kind: "failure.v1" }));
    expect(other?.seq).toBe(2);
    expect(other?.prev).toBe(first!.hash);
    expect(log.verify()).toEqual({ ok: true, records: 2 });
  });
});

describe("AuditLog reopen", () => {
  it("restores seq and the last hash and keeps chaining", () => {
    const a = openLog();
    a.append(input(1));
    const second = a.append(input(2))!;
    a.close();

    const b = openLog();
    expect(b.readAll().map((r) => r.seq)).toEqual([1, 2]);
    expect(b.recordsOf("b-2")?.[0]?.hash).toBe(second.hash);
    const third = b.append(input(3))!;
    expect(third.seq).toBe(3);
    expect(third.prev).toBe(second.hash);
    expect(b.verify()).toEqual({ ok: true, records: 3 });
    expect(parsed().map((r) => r.seq)).toEqual([1, 2, 3]);
  });

  it("still refuses a message recorded before the restart", () => {
    const a = openLog();
    a.append(input(1));
    a.append(input(2));
    a.close();

    const b = openLog();
    expect(b.append(input(2))).toBeUndefined();
    expect(b.append(input(1))).toBeUndefined();
    expect(b.append(input(3))?.seq).toBe(3);
    expect(lines()).toHaveLength(3);
  });

  it("tolerates a torn last line (crash mid-write) and reloads the complete records", () => {
    const a = openLog();
    a.append(input(1));
    const second = a.append(input(2))!;
    a.close();
    const torn = JSON.stringify({ ...input(3), seq: 3, at: new Date().toISOString() }).slice(0, 40);
    appendFileSync(file, torn);

    const b = openLog();
    expect(b.readAll().map((r) => r.seq)).toEqual([1, 2]);
    // The message behind the torn line was never acked; when it comes back it is not a duplicate.
    const again = b.append(input(3))!;
    expect(again.seq).toBe(3);
    expect(again.prev).toBe(second.hash);
  });

  // The torn fragment must be cut off the file, not only skipped in memory: appended after it (flag "a"), the next
  // record would share its line and the log would read as broken, then refuse to open once anything followed.
  it("after a torn last line, later appends still verify and survive another reopen", () => {
    const a = openLog();
    a.append(input(1));
    a.append(input(2));
    a.close();
    appendFileSync(file, '{"seq":3,"at":"2025-');

    const b = openLog();
    b.append(input(3));
    expect(b.verify()).toEqual({ ok: true, records: 3 });
    b.close();

    const c = openLog();
    expect(c.readAll().map((r) => r.seq)).toEqual([1, 2, 3]);
    c.append(input(4));
    c.close();
    expect(() => openLog()).not.toThrow();
    expect(parsed().map((r) => r.seq)).toEqual([1, 2, 3, 4]);
  });

  it("keeps a complete last record whose newline was never written, and starts the next append on its own line", () => {
    const a = openLog();
    a.append(input(1));
    a.append(input(2));
    a.close();
    writeFileSync(file, readFileSync(file, "utf8").replace(/\n$/, ""));

    const b = openLog();
    expect(b.readAll().map((r) => r.seq)).toEqual([1, 2]);
    expect(b.append(input(2))).toBeUndefined();
    b.append(input(3));
    expect(b.verify()).toEqual({ ok: true, records: 3 });
    expect(readFileSync(file, "utf8").endsWith("\n")).toBe(true);
  });

  it("refuses to open a log whose complete last line is damaged, instead of forgiving it as torn", () => {
    const a = openLog();
    for (const n of [1, 2, 3]) a.append(input(n));
    a.close();
    const all = lines();
    all[2] = all[2]!.slice(0, 30);
    writeFileSync(file, all.join("\n") + "\n");
    const before = readFileSync(file, "utf8");

    expect(() => new AuditLog(file)).toThrow(`audit log ${file} is damaged at line 3`);
    // Nothing was cut: the evidence stays for whoever investigates.
    expect(readFileSync(file, "utf8")).toBe(before);
  });

  it("refuses a line that is JSON but not an audit record", () => {
    const a = openLog();
    a.append(input(1));
    a.close();
    appendFileSync(file, "null\n");
    expect(() => new AuditLog(file)).toThrow(`audit log ${file} is damaged at line 2`);
  });

  it("refuses to open a log whose middle line is damaged, naming the file and line", () => {
    const a = openLog();
    for (const n of [1, 2, 3]) a.append(input(n));
    a.close();
    const all = lines();
    all[1] = all[1]!.slice(0, 30);
    writeFileSync(file, all.join("\n") + "\n");

    expect(() => new AuditLog(file)).toThrow(`audit log ${file} is damaged at line 2`);
  });
});

describe("AuditLog verify detects tampering", () => {
  const fields = ["at", "stream", "streamSeq", "subject", "kind", "batchId", "failureId", "traceId", "data", "prev", "hash"] as const;

  function fiveRecords(): AuditLog {
    const log = openLog();
    for (const n of [1, 2, 3, 4, 5]) log.append(input(n));
    expect(log.verify()).toEqual({ ok: true, records: 5 });
    return log;
  }

  it.each(fields)("an edit of %s in record 3 breaks the chain at record 3", (field) => {
    const log = fiveRecords();
    rewriteLine(2, (r) => {
      const v = r[field];
      if (typeof v === "string") r[field] = field === "prev" || field === "hash" ? `${"f".repeat(63)}0` : `${v}x`;
      else if (typeof v === "number") r[field] = v + 100;
      else r[field] = { ...(v as object), n: 999 };
    });
    const res = log.verify();
    expect(res.ok).toBe(false);
    expect(res.brokenAt).toBe(3);
    expect(res.why).toMatch(/hash/);
  });

  it("an edit that keeps the JSON valid deep inside data is caught", () => {
    const log = fiveRecords();
    rewriteLine(2, (r) => {
      ((r["data"] as { nested: { list: number[] } }).nested.list)[1] = 20;
    });
    expect(log.verify()).toMatchObject({ ok: false, brokenAt: 3 });
  });

  it("a rewritten record with a recomputed hash still breaks the link to the next one", () => {
    const log = fiveRecords();
    rewriteLine(2, (r) => {
      r["data"] = { forged: true };
      const { hash: _old, ...rest } = r as unknown as AuditRecord;
      r["hash"] = hashRecord(rest);
    });
    expect(log.verify()).toMatchObject({ ok: false, brokenAt: 4, why: "prev hash does not match the line before" });
  });

  it("a deleted middle line is caught where the gap is", () => {
    const log = fiveRecords();
    writeFileSync(file, lines().filter((_, i) => i !== 2).join("\n") + "\n");
    const res = log.verify();
    expect(res).toMatchObject({ ok: false, why: "prev hash does not match the line before" });
    // The third line of the file is where the chain breaks (it holds record 4, whose prev is the missing record 3).
    expect(res.brokenAt).toBe(3);
  });

  it("a middle line that is no longer JSON is reported at its position", () => {
    const log = fiveRecords();
    const all = lines();
    all[2] = "not json";
    writeFileSync(file, all.join("\n") + "\n");
    expect(log.verify()).toEqual({ ok: false, records: 3, brokenAt: 3, why: "line is not JSON" });
  });

  // brokenAt is the position in the file, never the seq read from the (possibly tampered) record itself.
  it("an edit of seq in record 3 is reported at record 3", () => {
    const log = fiveRecords();
    rewriteLine(2, (r) => {
      r["seq"] = 99;
    });
    expect(log.verify()).toMatchObject({ ok: false, brokenAt: 3 });
  });
});
