import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { createBlobStore, type BlobStore } from "@moss/blob";
import { FailureEvent, Streams } from "@moss/contracts";
import {
  MAX_INLINE_SNAPSHOT_BYTES,
  MAX_UPLOADED_SNAPSHOT_BYTES,
  MossSdkError,
  blobUploader,
  createReporter,
  type MossReporterOptions,
  type Reporter,
  type SnapshotUploader,
} from "@moss/agent-sdk";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startNats, type NatsServer } from "../helpers/nats";

const run = promisify(execFile);
const VERSION = "0123456789abcdef0123456789abcdef01234567";
const MiB = 1024 * 1024;

let work: string;
let srv: NatsServer;
let nc: NatsConnection;
let jsm: JetStreamManager;
let blob: BlobStore;
let n = 0;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "moss-sdk-upload-"));
  srv = await startNats();
  nc = await connect({ servers: srv.url });
  jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: Streams.FAILURES, subjects: ["moss.failure.*"], duplicate_window: 600_000_000_000 });
  blob = createBlobStore({ kind: "fs", dir: join(work, "blobs") });
  await blob.init();
});
afterAll(async () => {
  await nc?.close();
  await srv?.stop();
  await rm(work, { recursive: true, force: true });
});

const reporters: Reporter[] = [];
afterEach(async () => {
  while (reporters.length) await reporters.pop()!.close();
});

/** A reporter on the shared NATS with its own spool, collecting its warnings. */
function reporter(opts: Partial<MossReporterOptions>): { r: Reporter; warnings: string[] } {
  const warnings: string[] = [];
  const r = createReporter({ agent: "demo", version: VERSION, natsUrl: srv.url, spoolFile: join(work, `spool-${++n}.jsonl`), onWarning: (m) => warnings.push(m), ...opts });
  reporters.push(r);
  return { r, warnings };
}

/** A state dir holding `files` (name → bytes). */
async function stateDir(files: Record<string, Buffer | string>): Promise<string> {
  const d = join(work, `state-${++n}`);
  await mkdir(d, { recursive: true });
  for (const [name, data] of Object.entries(files)) await writeFile(join(d, name), data);
  return d;
}

/** The failure event JetStream stored under this id (validated against the contract). */
async function stored(id: string): Promise<FailureEvent> {
  const info = await jsm.streams.info(Streams.FAILURES);
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(Streams.FAILURES, { seq }).catch(() => null);
    if (m && m.header?.get("Nats-Msg-Id") === id) return FailureEvent.parse(m.json());
  }
  throw new Error(`no stored failure ${id}`);
}

const fail = (r: Reporter) => r.captureFailure({ request: { path: "/v1/chat", body: "{}" }, error: new Error("boom") });

describe("uploadSnapshot: the state dir by reference to the blob store", () => {
  it("uploads the tar through blobUploader(store) and the event carries snapshot.blob, not inline base64", async () => {
    const state = await stateDir({ "state.json": JSON.stringify({ turns: 3 }), "notes.txt": "hello" });
    const { r, warnings } = reporter({ stateDir: state, uploadSnapshot: blobUploader(blob) });
    const ev = await stored(await fail(r));
    expect(ev.snapshot?.path).toBe(state);
    expect(ev.snapshot?.inlineBase64).toBeUndefined();
    const ref = ev.snapshot!.blob!;
    expect(ref.contentType).toBe("application/x-tar");
    // The reference resolves, content-addressed, to a tar of the state dir.
    const tar = await blob.get(ref.sha256);
    expect(tar.length).toBe(ref.size);
    expect(createHash("sha256").update(tar).digest("hex")).toBe(ref.sha256);
    expect((await blob.stat(ref.sha256))?.contentType).toBe("application/x-tar");
    const tarFile = join(work, `snap-${n}.tar`);
    await writeFile(tarFile, tar);
    expect((await run("tar", ["-tf", tarFile])).stdout.split("\n").filter(Boolean).sort()).toEqual(["notes.txt", "state.json"]);
    expect((await run("tar", ["-xOf", tarFile, "state.json"])).stdout).toBe('{"turns":3}');
    expect(warnings).toEqual([]);
  });

  it("allows a snapshot over 1 MiB when uploading (it would be dropped inline)", async () => {
    const big = randomBytes(3 * MiB);
    const state = await stateDir({ "model.bin": big });
    const { r, warnings } = reporter({ stateDir: state, uploadSnapshot: blobUploader(blob) });
    const ev = await stored(await fail(r));
    const ref = ev.snapshot!.blob!;
    expect(ref.size).toBeGreaterThan(3 * MiB);
    const tarFile = join(work, `big-${n}.tar`);
    await writeFile(tarFile, await blob.get(ref.sha256));
    const out = join(work, `big-out-${n}`);
    await mkdir(out);
    await run("tar", ["-xf", tarFile, "-C", out]);
    expect((await readFile(join(out, "model.bin"))).equals(big)).toBe(true);
    expect(warnings).toEqual([]);
  });

  it("still caps uploaded snapshots (64 MiB): bigger → no snapshot, a warning, and the failure delivered", async () => {
    const state = await stateDir({});
    // A sparse file: the size estimate refuses it before anything is read.
    await writeFile(join(state, "huge.bin"), "");
    await truncate(join(state, "huge.bin"), MAX_UPLOADED_SNAPSHOT_BYTES + 1);
    let calls = 0;
    const { r, warnings } = reporter({
      stateDir: state,
      uploadSnapshot: async (tar) => {
        calls++;
        return blob.put(tar);
      },
    });
    const ev = await stored(await fail(r));
    expect(ev.snapshot).toBeUndefined();
    expect(calls).toBe(0);
    expect(warnings.join("\n")).toMatch(new RegExp(`no state snapshot attached.*more than the ${MAX_UPLOADED_SNAPSHOT_BYTES} allowed`));
  });

  it("falls back to inline when the upload fails and the tar fits inline; drops the snapshot when it does not", async () => {
    const failing: SnapshotUploader = async () => {
      throw new Error("S3 said 503 SlowDown");
    };
    const small = await stateDir({ "state.json": "{}" });
    const a = reporter({ stateDir: small, uploadSnapshot: failing });
    const evA = await stored(await fail(a.r));
    expect(evA.snapshot?.blob).toBeUndefined();
    expect(evA.snapshot?.inlineBase64).toBeTruthy();
    expect(a.warnings.join("\n")).toMatch(/snapshot upload failed \(S3 said 503 SlowDown\); attached inline instead/);

    const large = await stateDir({ "big.bin": Buffer.alloc(MAX_INLINE_SNAPSHOT_BYTES + 1, 1) });
    const b = reporter({ stateDir: large, uploadSnapshot: failing });
    const evB = await stored(await fail(b.r));
    expect(evB.snapshot).toBeUndefined();
    expect(b.warnings.join("\n")).toMatch(/no state snapshot attached: the upload failed \(S3 said 503 SlowDown\)/);
  });

  it("does not trust an uploader that answers another address than the tar's sha256 (the event would point at nothing)", async () => {
    const state = await stateDir({ "state.json": "{}" });
    const { r, warnings } = reporter({ stateDir: state, uploadSnapshot: async (tar) => ({ sha256: "0".repeat(64), size: tar.length }) });
    const ev = await stored(await fail(r));
    expect(ev.snapshot?.blob).toBeUndefined();
    expect(ev.snapshot?.inlineBase64).toBeTruthy();
    expect(warnings.join("\n")).toMatch(/it must store the bytes content-addressed/);
  });

  it("an upload that hangs is given up after snapshotUploadTimeoutMs; the failure is still reported promptly", async () => {
    const state = await stateDir({ "state.json": "{}" });
    const { r, warnings } = reporter({ stateDir: state, snapshotUploadTimeoutMs: 300, uploadSnapshot: () => new Promise(() => undefined) });
    const t0 = Date.now();
    const ev = await stored(await fail(r));
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect(ev.snapshot?.inlineBase64).toBeTruthy();
    expect(warnings.join("\n")).toMatch(/snapshot upload timed out after 300 ms/);
  });

  it("in replay mode (offline) never calls the uploader and keeps the snapshot inline", async () => {
    const state = await stateDir({ "state.json": "{}" });
    const file = join(work, `replay-${n}.jsonl`);
    let calls = 0;
    const { r } = reporter({
      stateDir: state,
      env: { MOSS_REPLAY_FAILURE_FILE: file },
      uploadSnapshot: async (tar) => {
        calls++;
        return blob.put(tar);
      },
    });
    await fail(r);
    const ev = FailureEvent.parse(JSON.parse((await readFile(file, "utf8")).trim()));
    expect(calls).toBe(0);
    expect(ev.snapshot?.inlineBase64).toBeTruthy();
  });

  it("refuses an uploadSnapshot that is not a function, at creation", () => {
    expect(() => createReporter({ agent: "demo", version: VERSION, uploadSnapshot: "s3://bucket" as unknown as SnapshotUploader })).toThrow(MossSdkError);
  });
});

describe("blobUploader", () => {
  it("puts the tar with content type application/x-tar and answers only sha256 and size", async () => {
    const calls: Array<{ data: Uint8Array; contentType: string }> = [];
    const up = blobUploader({
      async put(data, opts) {
        calls.push({ data, contentType: opts.contentType });
        return { sha256: "a".repeat(64), size: data.length, contentType: opts.contentType, extra: true } as { sha256: string; size: number };
      },
    });
    const ans = await up(Buffer.from("tar bytes"));
    expect(ans).toEqual({ sha256: "a".repeat(64), size: 9 });
    expect(calls).toHaveLength(1);
    expect(calls[0]!.contentType).toBe("application/x-tar");
    expect(Buffer.from(calls[0]!.data).toString()).toBe("tar bytes");
  });
});
