// Audit log checkpoints: signed chain heads and exported segments, apart from the log's file (blob store, KV), so that
// one edited record and a whole rewritten log are each detected, at the right record and against the right checkpoint.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuditLog, Checkpointer, gitCopies, readCheckpoints, verifyLog } from "@moss/auditor";
import { onAuditCheckpoint } from "@moss/rewriter";
import type { KV } from "@moss/bus";
import { ensureSigningKey } from "@moss/git";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silent, startEnv, type Env } from "../helpers/env";

describe("audit checkpoints (real KV, fs blob store, ssh-signed)", () => {
  let env: Env;
  let kv: KV;
  let keys: Awaited<ReturnType<typeof ensureSigningKey>>;
  const dir = mkdtempSync(join(tmpdir(), "moss-audit-cp-"));
  const file = join(dir, "audit.jsonl");
  const pristine = join(dir, "pristine.jsonl");
  const input = (i: number, text = `event ${i}`) => ({ stream: "MOSS_PIPELINE", streamSeq: i, subject: "moss.batch.ready.v1", kind: "batch.ready.v1", batchId: `b${i % 3}`, data: { text } });
  const verify = async () => {
    const log = new AuditLog(file);
    try {
      return await verifyLog(log, kv, env.blob, keys.allowedSigners);
    } finally {
      log.close();
    }
  };
  const restore = () => copyFileSync(pristine, file);

  beforeAll(async () => {
    env = await startEnv("audit-checkpoints");
    kv = await env.bucket("audit");
    keys = await ensureSigningKey(join(dir, "keys"));
    const log = new AuditLog(file);
    const cp = new Checkpointer({ log, blob: env.blob, kv, signingKey: keys.key, every: 10 });
    for (let i = 1; i <= 25; i++) {
      log.append(input(i));
      await cp.maybe();
    }
    await cp.now(); // shutdown: the last five
    log.close();
    copyFileSync(file, pristine);
  });
  afterAll(async () => {
    await env?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("checkpoints every N records and at shutdown, signed, chained; an untouched log verifies against them", async () => {
    const cps = await readCheckpoints(kv);
    expect(cps.map((c) => [c.checkpoint.from, c.checkpoint.seq])).toEqual([[1, 10], [11, 20], [21, 25]]);
    expect(cps.every((c) => c.signature?.startsWith("-----BEGIN SSH SIGNATURE-----"))).toBe(true);
    expect(cps[1]!.checkpoint.prev).toMatch(/^[0-9a-f]{64}$/);
    expect(await verify()).toEqual({ ok: true, records: 25, checkpoints: 3, unsigned: 0 });
  });

  it("one record edited in the file: the broken link at that record, and the checkpoint whose segment it contradicts", async () => {
    const lines = readFileSync(pristine, "utf8").split("\n");
    lines[13] = lines[13]!.replace('"event 14"', '"event 14, edited"');
    writeFileSync(file, lines.join("\n"));
    const r = await verify();
    expect(r).toMatchObject({ ok: false, brokenAt: 14, why: "record content does not match its hash", contradicts: { seq: 20, why: "record 14 differs from its segment" } });
    restore();
  });

  it("the whole log rewritten with a consistent chain: the chain alone passes, the checkpoints catch it at the first changed record", async () => {
    rmSync(file);
    const forged = new AuditLog(file);
    for (let i = 1; i <= 25; i++) forged.append(input(i, i === 17 ? "nothing to see here" : `event ${i}`));
    expect(forged.verify()).toEqual({ ok: true, records: 25 });
    forged.close();
    const r = await verify();
    expect(r).toMatchObject({ ok: false, brokenAt: 1, contradicts: { seq: 10 } });
    restore();
  });

  it("records cut off the end, a changed segment, and a checkpoint signed by another key are each named", async () => {
    writeFileSync(file, readFileSync(pristine, "utf8").split("\n").slice(0, 22).join("\n") + "\n");
    expect(await verify()).toMatchObject({ ok: false, brokenAt: 23, why: expect.stringContaining("the log ends at record 22, but a checkpoint says record 25 existed"), contradicts: { seq: 25 } });
    restore();

    const cps = await readCheckpoints(kv);
    const seg = join(env.blobDir, cps[0]!.checkpoint.segment.sha256.slice(0, 2), cps[0]!.checkpoint.segment.sha256);
    const original = readFileSync(seg);
    writeFileSync(seg, original.toString().replace('"event 3"', '"event 3!"'));
    expect(await verify()).toMatchObject({ ok: false, brokenAt: 1, contradicts: { seq: 10, why: expect.stringMatching(/is corrupt|does not match the hash it signed/) } });
    writeFileSync(seg, original);

    const other = await ensureSigningKey(join(dir, "other-keys"), "mallory@localhost");
    const log = new AuditLog(file);
    const kv2 = await env.bucket("audit-forged");
    for (const c of cps) await kv2.put(`checkpoint.${String(c.checkpoint.seq).padStart(12, "0")}`, JSON.stringify(c));
    const forger = new Checkpointer({ log, blob: env.blob, kv: kv2, signingKey: other.key, every: 1 });
    log.append(input(26));
    await forger.maybe();
    const r = await verifyLog(log, kv2, env.blob, keys.allowedSigners);
    log.close();
    expect(r).toMatchObject({ ok: false, contradicts: { seq: 26, why: expect.stringContaining("signed by a key that is not in") } });
    restore();
  });
  it("a log rewritten wholesale, with a fresh consistent chain no checkpoint covers yet, is caught against the streams' own copies", async () => {
    const sent = ["one", "two", "three"].map((text, i) => ({ batchId: `bs${i}`, text }));
    const seqs: number[] = [];
    for (const [i, m] of sent.entries()) seqs.push((await env.bus.js.publish("moss.batch.ready.v1", JSON.stringify(m), { msgID: `stream-copy-${i}` })).seq);
    const streams = { get: async (stream: string, seq: number) => { const m = await env.bus.jsm.streams.getMessage(stream, { seq }).catch(() => null); return m ? new TextDecoder().decode(m.data) : undefined; } };
    const write = (f: string, data: (i: number) => unknown) => {
      const log = new AuditLog(f);
      for (const [i, seq] of seqs.entries()) log.append({ stream: "MOSS_PIPELINE", streamSeq: seq, subject: "moss.batch.ready.v1", kind: "batch.ready.v1", batchId: `bs${i}`, data: data(i) });
      // A record whose stream no longer holds its message is counted, not failed.
      log.append({ stream: "MOSS_PIPELINE", streamSeq: 999_999, subject: "moss.batch.ready.v1", kind: "batch.ready.v1", data: { text: "aged out" } });
      return log;
    };
    const freshKv = await env.bucket("audit-streams");
    const honest = write(join(dir, "honest.jsonl"), (i) => sent[i]);
    try {
      expect(await verifyLog(honest, freshKv, env.blob, keys.allowedSigners, streams)).toEqual({ ok: true, records: 4, checkpoints: 0, unsigned: 0, stream: { compared: 3, aged: 1 } });
    } finally {
      honest.close();
    }
    // The same story told otherwise at its second record, chained afresh: the chain alone cannot tell.
    const forged = write(join(dir, "forged.jsonl"), (i) => (i === 1 ? { ...sent[i], text: "two, as someone would rather it read" } : sent[i]));
    try {
      expect(forged.verify().ok).toBe(true);
      expect(await verifyLog(forged, freshKv, env.blob, keys.allowedSigners, streams)).toMatchObject({ ok: false, brokenAt: 2, why: `record 2 is not what MOSS_PIPELINE holds at sequence ${seqs[1]} (moss.batch.ready.v1): the log says something its message did not` });
    } finally {
      forged.close();
    }
  });
  it("the checkpoints kept as git notes: the log replaced together with its checkpoints and segments, even signed with Moss's key, is still caught", async () => {
    const repo = mkdtempSync(join(tmpdir(), "moss-audit-git-"));
    const g = (...a: string[]) => execFileSync("git", ["-C", repo, "-c", "user.name=H", "-c", "user.email=h@example.com", ...a], { encoding: "utf8" }).trim();
    g("init", "-q", "-b", "main");
    writeFileSync(join(repo, "app.js"), "v1\n");
    g("add", "-A");
    g("commit", "-qm", "v1");
    const head = g("rev-parse", "HEAD");
    try {
      // What the rewriter does with each checkpoint the auditor announces (a redelivery adds nothing).
      const deps = { repos: () => [{ agent: "shop", repo }], live: async () => undefined, log: silent };
      for (const c of await readCheckpoints(kv)) {
        const msg = { seq: c.checkpoint.seq, data: JSON.stringify(c.checkpoint), ...(c.signature ? { signature: c.signature } : {}) };
        await onAuditCheckpoint(msg, deps);
        await onAuditCheckpoint(msg, deps);
      }
      expect(g("notes", "--ref=moss-audit", "show", head).split("\n")).toHaveLength(3);
      const git = gitCopies([{ agent: "shop", repo }]);
      restore();
      const honest = new AuditLog(file);
      try {
        expect(await verifyLog(honest, kv, env.blob, keys.allowedSigners, undefined, git)).toEqual({ ok: true, records: 25, checkpoints: 3, unsigned: 0, git: { copies: 3 } });
      } finally {
        honest.close();
      }
      // Someone with the log's file, KV, the blob store and even the signing key tells the story afresh: it all agrees.
      const forgedFile = join(dir, "forged-all.jsonl");
      const forgedKv = await env.bucket("audit-forged");
      const forged = new AuditLog(forgedFile);
      const cp = new Checkpointer({ log: forged, blob: env.blob, kv: forgedKv, signingKey: keys.key, every: 10 });
      for (let i = 1; i <= 25; i++) {
        forged.append(input(i, i === 14 ? "event 14, as someone would rather it read" : `event ${i}`));
        await cp.maybe();
      }
      await cp.now();
      try {
        expect(await verifyLog(forged, forgedKv, env.blob, keys.allowedSigners)).toMatchObject({ ok: true, checkpoints: 3 });
        // Git still has the checkpoints as they were.
        expect(await verifyLog(forged, forgedKv, env.blob, keys.allowedSigners, undefined, git)).toMatchObject({
          ok: false,
          brokenAt: 1,
          why: "the checkpoint at record 10 is not the one git keeps: the checkpoints were rewritten",
          contradicts: { seq: 10, why: expect.stringContaining(`its copy in git (shop's repository, the note on ${head.slice(0, 12)})`) },
        });
      } finally {
        forged.close();
      }
    } finally {
      rmSync(repo, { recursive: true, force: true });
    }
  });
});
