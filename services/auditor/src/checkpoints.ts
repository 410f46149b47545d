/**
 * Checkpoints of the audit log, so a rewrite of the whole log is detected, not only an edited record: every
 * `auditor.checkpointEvery` records (and on shutdown) the records since the last checkpoint are exported, in order, as
 * a JSON Lines segment to the blob store, and the chain head is checkpointed — its sequence and hash, the segment, the
 * checkpoint before — signed with Moss's SSH key (`ssh-keygen -Y sign`, namespace `moss-audit`), stored in the blob
 * store and indexed in KV (`moss_audit`), which live apart from the log's file. Verifying recomputes the chain from the
 * file and holds it to every checkpoint and segment: the first broken link, and the checkpoint it contradicts.
 */
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BlobStore } from "@moss/blob";
import { kvKeys, type KV } from "@moss/bus";
import { AuditCheckpointed, type AuditVerifyReport } from "@moss/contracts";
import { AUDIT_NOTES, listNotes, sshKeygen } from "@moss/git";
import type { AuditLog } from "./audit-log";

export interface Checkpoint {
  /** The record the checkpoint is at (the chain head then), and the first record of its segment. */
  seq: number;
  from: number;
  hash: string;
  at: string;
  /** The records `from`..`seq`, as the log's lines, in the blob store. */
  segment: { sha256: string; size: number };
  /** sha256 of the checkpoint before (its JSON as signed), or none for the first. */
  prev?: string;
}

export interface SignedCheckpoint {
  checkpoint: Checkpoint;
  /** The SSH signature of `JSON.stringify(checkpoint)`, armored; absent when no signing key is configured. */
  signature?: string;
}

export interface CheckpointDeps {
  log: AuditLog;
  blob: Pick<BlobStore, "put" | "get">;
  kv: KV;
  /** Moss's signing key (rewriter.signing.key); unset: checkpoints are unsigned (verify says so). */
  signingKey?: string;
  every: number;
  /** Says each checkpoint on the bus once it is stored (the rewriter keeps it as a git note); a failure is the caller's to say. */
  announce?: (c: AuditCheckpointed) => Promise<unknown>;
}

const NAMESPACE = "moss-audit";
const keyOf = (seq: number) => `checkpoint.${String(seq).padStart(12, "0")}`;
const sha = (b: string | Buffer) => createHash("sha256").update(b).digest("hex");

/** Every checkpoint, oldest first. */
export async function readCheckpoints(kv: KV): Promise<SignedCheckpoint[]> {
  const out: SignedCheckpoint[] = [];
  for (const k of await kvKeys(kv, "checkpoint.>")) {
    const e = await kv.get(k);
    if (e?.operation === "PUT") out.push(e.json<SignedCheckpoint>());
  }
  return out;
}

async function withTemp<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), "moss-audit-sig-"));
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function sign(data: string, key: string): Promise<string> {
  return withTemp(async (dir) => {
    const file = join(dir, "checkpoint.json");
    writeFileSync(file, data);
    const r = await sshKeygen(["-Y", "sign", "-f", key, "-n", NAMESPACE, file]);
    if (r.code !== 0) throw new Error(`ssh-keygen could not sign the audit checkpoint with ${key}: ${r.stderr.trim() || r.spawnError?.message}`);
    return readFileSync(`${file}.sig`, "utf8");
  });
}

async function verifySignature(data: string, signature: string, allowedSigners: string): Promise<string | undefined> {
  return withTemp(async (dir) => {
    const sig = join(dir, "checkpoint.sig");
    writeFileSync(sig, signature);
    // The signer's principal, then the check against the allowed signers.
    const who = await sshKeygen(["-Y", "find-principals", "-s", sig, "-f", allowedSigners]);
    const principal = who.stdout.trim().split("\n")[0];
    if (who.code !== 0 || !principal) return `signed by a key that is not in ${allowedSigners}`;
    const r = spawnSync("ssh-keygen", ["-Y", "verify", "-f", allowedSigners, "-I", principal, "-n", NAMESPACE, "-s", sig], { input: data, encoding: "utf8" });
    return r.status === 0 ? undefined : `its signature does not verify: ${(r.stderr || r.stdout).trim()}`;
  });
}

/** Writes checkpoints as the log grows: `maybe()` after each record, `now()` on shutdown. One at a time. */
export class Checkpointer {
  private last: SignedCheckpoint | undefined;
  private running: Promise<void> = Promise.resolve();
  private loaded = false;
  constructor(private readonly deps: CheckpointDeps) {}

  private async load(): Promise<void> {
    if (this.loaded) return;
    this.last = (await readCheckpoints(this.deps.kv)).at(-1);
    this.loaded = true;
  }

  /** A checkpoint if `every` records came since the last one. */
  maybe(): Promise<void> {
    return (this.running = this.running.catch(() => undefined).then(async () => {
      await this.load();
      if (this.deps.log.size - (this.last?.checkpoint.seq ?? 0) >= this.deps.every) await this.write();
    }));
  }

  /** A checkpoint of whatever came since the last one (shutdown). */
  now(): Promise<void> {
    return (this.running = this.running.catch(() => undefined).then(async () => {
      await this.load();
      if (this.deps.log.size > (this.last?.checkpoint.seq ?? 0)) await this.write();
    }));
  }

  private async write(): Promise<void> {
    const { log, blob, kv } = this.deps;
    const seq = log.size;
    const from = (this.last?.checkpoint.seq ?? 0) + 1;
    const lines: string[] = [];
    for (let s = from; s <= seq; s++) lines.push(JSON.stringify(log.get(s)));
    const ref = await blob.put(lines.join("\n") + "\n", { contentType: "application/jsonl" });
    const checkpoint: Checkpoint = { seq, from, hash: log.get(seq)!.hash, at: new Date().toISOString(), segment: { sha256: ref.sha256, size: ref.size }, ...(this.last ? { prev: sha(JSON.stringify(this.last.checkpoint)) } : {}) };
    const data = JSON.stringify(checkpoint);
    const signed: SignedCheckpoint = { checkpoint, ...(this.deps.signingKey ? { signature: await sign(data, this.deps.signingKey) } : {}) };
    await blob.put(JSON.stringify(signed), { contentType: "application/json" });
    await kv.put(keyOf(seq), JSON.stringify(signed));
    this.last = signed;
    await this.deps.announce?.({ seq, data, ...(signed.signature ? { signature: signed.signature } : {}) }).catch((err: Error) => {
      throw new Error(`the checkpoint at record ${seq} is stored, but could not be said on the bus, so no git note keeps it: ${err.message}`);
    });
  }
}

/** What verifying finds (the auditor's `/v1/audit/verify`). */
export type VerifyReport = AuditVerifyReport;

/** Where `verifyLog` reads a record's message as its stream still holds it (undefined: aged out or removed). */
export interface StreamCopies {
  get(stream: string, seq: number): Promise<string | undefined>;
  /** How many of the newest records to hold to their stream's copy (default 5 000). */
  last?: number;
}

/** The checkpoints as the agent repositories keep them (git notes under refs/notes/moss-audit). */
export interface GitCopies {
  list(): Promise<Array<{ where: string; seq: number; data: string; signature?: string }>>;
}

/** The checkpoints the rewriter kept as git notes in these repositories (one that cannot be read is left out). */
/** `text` as JSON, or `otherwise` when it is not JSON. */
function jsonOr(text: string, otherwise: unknown): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return otherwise;
  }
}

export function gitCopies(repos: ReadonlyArray<{ agent: string; repo: string }>): GitCopies {
  return {
    async list() {
      const out: Array<{ where: string; seq: number; data: string; signature?: string }> = [];
      for (const { agent, repo } of repos) {
        if (!existsSync(repo)) continue;
        for (const n of await listNotes(repo, AUDIT_NOTES).catch(() => [])) {
          for (const line of n.text.split("\n").filter(Boolean)) {
            // A line someone else wrote is not a checkpoint.
            const c = AuditCheckpointed.safeParse(jsonOr(line, null));
            if (c.success) out.push({ where: `${agent}'s repository, the note on ${n.object.slice(0, 12)}`, ...c.data });
          }
        }
      }
      return out;
    },
  };
}

/**
 * The chain from the log's file, held to every checkpoint and its segment, the checkpoints to their copies in git
 * (`git`), and the newest records to their streams' own copies (`stream`).
 */
export async function verifyLog(log: AuditLog, kv: KV, blob: Pick<BlobStore, "get">, allowedSigners?: string, stream?: StreamCopies, git?: GitCopies): Promise<VerifyReport> {
  let report = await verifyChain(log, kv, blob, allowedSigners);
  if (git) report = await againstGit(report, log, kv, git);
  if (!stream || !report.ok) return report;
  // The streams are a copy no one wrote through the auditor: a record must say what its message said, as long as the
  // stream still holds it. Newest first, so the records no checkpoint covers yet are compared first.
  let compared = 0;
  let aged = 0;
  for (let s = log.size; s >= 1 && compared + aged < (stream.last ?? 5_000); s--) {
    const r = log.get(s)!;
    // A record that says how it departs from its message (too deep to keep as sent) is not compared byte for byte.
    if (r.note) continue;
    const raw = await stream.get(r.stream, r.streamSeq);
    if (raw === undefined) {
      aged++;
      continue;
    }
    compared++;
    // A message that is not JSON was recorded as its text.
    if (JSON.stringify(jsonOr(raw, raw)) !== JSON.stringify(r.data)) {
      const why = `record ${s} is not what ${r.stream} holds at sequence ${r.streamSeq} (${r.subject}): the log says something its message did not`;
      const first = report.brokenAt === undefined || s < report.brokenAt;
      return { ...report, ok: false, ...(first ? { brokenAt: s, why } : {}), stream: { compared, aged } };
    }
  }
  return { ...report, stream: { compared, aged } };
}

/**
 * Holds the checkpoints (and the log) to their copies in git: a checkpoint git kept must be in KV as it was, and the
 * log must still have the chain head it names — so replacing the log, its checkpoints and its segments together is
 * still caught, unless every agent repository's notes (and their mirrors) were rewritten too.
 */
async function againstGit(report: VerifyReport, log: AuditLog, kv: KV, git: GitCopies): Promise<VerifyReport> {
  const copies = await git.list();
  const kvCps = new Map((await readCheckpoints(kv)).map((c) => [c.checkpoint.seq, c]));
  const seen = new Set<number>();
  for (const g of copies.sort((a, b) => a.seq - b.seq)) {
    seen.add(g.seq);
    const cp = jsonOr(g.data, undefined) as Checkpoint | undefined;
    if (!cp) continue; // not a checkpoint Moss wrote: nothing it can hold the log to
    const contradicts = { seq: g.seq, at: cp.at, why: `its copy in git (${g.where})` };
    const broken = (brokenAt: number, why: string): VerifyReport => ({ ...report, ok: false, ...(report.brokenAt !== undefined && report.brokenAt <= brokenAt ? {} : { brokenAt, why }), contradicts, git: { copies: seen.size } });
    const mine = kvCps.get(g.seq);
    if (!mine) return broken(cp.from, `the checkpoint at record ${g.seq} that git keeps is not among the checkpoints: they were replaced`);
    if (JSON.stringify(mine.checkpoint) !== g.data || (mine.signature ?? "") !== (g.signature ?? "")) return broken(cp.from, `the checkpoint at record ${g.seq} is not the one git keeps: the checkpoints were rewritten`);
    if (log.size < g.seq) return broken(log.size + 1, `the log ends at record ${log.size}, but git keeps a checkpoint at record ${g.seq}: records were removed`);
    if (log.get(g.seq)!.hash !== cp.hash) return broken(g.seq, `record ${g.seq}'s hash is not the chain head git keeps for it: the log was rewritten`);
  }
  return { ...report, git: { copies: seen.size } };
}

/** The chain from the log's file, held to every checkpoint and its segment. */
async function verifyChain(log: AuditLog, kv: KV, blob: Pick<BlobStore, "get">, allowedSigners?: string): Promise<VerifyReport> {
  const chain = log.verify();
  const cps = await readCheckpoints(kv);
  const report: VerifyReport = { ok: chain.ok, records: log.size, checkpoints: cps.length, unsigned: cps.filter((c) => !c.signature).length, ...(chain.ok ? {} : { brokenAt: chain.brokenAt!, why: chain.why! }) };
  const fail = (brokenAt: number, why: string, cp: Checkpoint, cpWhy: string): VerifyReport => {
    const first = report.brokenAt !== undefined && report.brokenAt <= brokenAt;
    return { ...report, ok: false, ...(first ? {} : { brokenAt, why }), contradicts: { seq: cp.seq, at: cp.at, why: cpWhy } };
  };
  let prev: Checkpoint | undefined;
  for (const { checkpoint: cp, signature } of cps) {
    const data = JSON.stringify(cp);
    if (signature && allowedSigners) {
      const bad = await verifySignature(data, signature, allowedSigners);
      if (bad) return fail(cp.from, `checkpoint at record ${cp.seq} cannot be trusted`, cp, bad);
    }
    if ((prev ? sha(JSON.stringify(prev)) : undefined) !== cp.prev) return fail(cp.from, `the checkpoints do not chain at record ${cp.seq}`, cp, "its link to the checkpoint before does not match");
    prev = cp;
    if (log.size < cp.seq) return fail(log.size + 1, `the log ends at record ${log.size}, but a checkpoint says record ${cp.seq} existed: records were removed`, cp, `it was made at record ${cp.seq}`);
    let segment: Buffer;
    try {
      segment = await blob.get(cp.segment.sha256);
    } catch (err) {
      return fail(cp.from, `the segment of records ${cp.from}..${cp.seq} could not be read from the blob store (missing or changed)`, cp, (err as Error).message);
    }
    if (sha(segment) !== cp.segment.sha256) return fail(cp.from, `the segment of records ${cp.from}..${cp.seq} in the blob store was changed`, cp, "its segment's content does not match the hash it signed");
    const lines = segment.toString("utf8").trimEnd().split("\n");
    for (let s = cp.from; s <= cp.seq; s++) {
      if (JSON.stringify(log.get(s)) !== lines[s - cp.from]) return fail(s, `record ${s} is not what was exported at the checkpoint`, cp, `record ${s} differs from its segment`);
    }
    if (log.get(cp.seq)!.hash !== cp.hash) return fail(cp.seq, `record ${cp.seq}'s hash is not the chain head the checkpoint signed`, cp, "the chain head differs");
  }
  return report;
}
