import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { Client } from "minio";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BlobBackendError,
  BlobCorruptError,
  BlobError,
  BlobNotFoundError,
  BlobUnavailableError,
  InvalidBlobIdError,
  InvalidContentTypeError,
  createBlobStore,
  type BlobConfig,
  type BlobStore,
} from "@moss/blob";
import { S3RVER_KEY, startS3rver, type RunningS3rver } from "./s3rver-harness";

const sha = (bytes: Uint8Array | string) => createHash("sha256").update(bytes).digest("hex");
const EMPTY_SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

let s3: RunningS3rver;
beforeAll(async () => {
  s3 = await startS3rver();
});
afterAll(async () => {
  await s3?.stop();
});

const s3Config = (bucket: string, extra: Partial<BlobConfig & { kind: "s3" }> = {}): BlobConfig => ({
  kind: "s3",
  endPoint: "127.0.0.1",
  port: s3.port,
  useSSL: false,
  accessKey: S3RVER_KEY,
  secretKey: S3RVER_KEY,
  bucket,
  ...extra,
});

const uniqueBucket = () => `moss-blob-${randomBytes(4).toString("hex")}`;

/** A fresh store plus a look at its raw storage, so tests can count and damage stored objects. */
interface Opened {
  store: BlobStore;
  /** The file holding a blob's bytes (for the s3 backend: inside s3rver's storage directory). */
  objectFile(sha256: string): string;
  /** How many objects are stored (fs: every file but sidecars, so leaked temp files count too). */
  countObjects(): Promise<number>;
  close(): Promise<void>;
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

const backends: Array<{ kind: "fs" | "s3"; open(): Promise<Opened> }> = [
  {
    kind: "fs",
    async open() {
      const dir = await mkdtemp(path.join(tmpdir(), "moss-blob-fs-"));
      const store = createBlobStore({ kind: "fs", dir: path.join(dir, "blobs") });
      return {
        store,
        objectFile: (h) => path.join(dir, "blobs", h.slice(0, 2), h),
        countObjects: async () => (await listFiles(dir)).filter((f) => !f.endsWith(".meta.json")).length,
        close: () => rm(dir, { recursive: true, force: true }),
      };
    },
  },
  {
    kind: "s3",
    async open() {
      const bucket = uniqueBucket();
      const store = createBlobStore(s3Config(bucket));
      return {
        store,
        objectFile: (h) => path.join(s3.directory, bucket, "blobs", `${h}._S3rver_object`),
        countObjects: async () => (await listFiles(path.join(s3.directory, bucket))).filter((f) => f.endsWith("._S3rver_object")).length,
        close: async () => undefined,
      };
    },
  },
];

describe.each(backends)("$kind blob store", (backend) => {
  let h: Opened;
  let store: BlobStore;
  beforeAll(async () => {
    h = await backend.open();
    store = h.store;
    await store.init();
  });
  afterAll(async () => {
    await h?.close();
  });

  it("reports its kind", () => {
    expect(store.kind).toBe(backend.kind);
  });

  it("init is safe to call again", async () => {
    await expect(store.init()).resolves.toBeUndefined();
  });

  it("round-trips a string as UTF-8, addressed by its sha256", async () => {
    const text = "héllo wörld ✓ " + randomBytes(8).toString("hex");
    const ref = await store.put(text);
    expect(ref).toEqual({ sha256: sha(Buffer.from(text, "utf8")), size: Buffer.byteLength(text, "utf8") });
    expect(ref.size).toBeGreaterThan(text.length); // bytes, not characters
    const back = await store.get(ref.sha256);
    expect(Buffer.isBuffer(back)).toBe(true);
    expect(back.toString("utf8")).toBe(text);
  });

  it("keeps the content type and reports it from stat", async () => {
    const body = JSON.stringify({ n: randomBytes(8).toString("hex") });
    const ref = await store.put(body, { contentType: "application/json" });
    expect(ref.contentType).toBe("application/json");
    expect(await store.stat(ref.sha256)).toEqual({ sha256: ref.sha256, size: ref.size, contentType: "application/json" });
  });

  it("stat of a blob stored without a content type has none (not a server default)", async () => {
    const ref = await store.put(randomBytes(64));
    const st = await store.stat(ref.sha256);
    expect(st).toEqual({ sha256: ref.sha256, size: 64 });
    expect(st).not.toHaveProperty("contentType");
  });

  it("stat of a missing blob is undefined", async () => {
    expect(await store.stat(sha(randomBytes(16)))).toBeUndefined();
  });

  it("storing the same bytes twice is one object, and the first content type stays", async () => {
    const before = await h.countObjects();
    const bytes = randomBytes(1024);
    const first = await store.put(bytes, { contentType: "text/plain" });
    const second = await store.put(bytes, { contentType: "application/octet-stream" });
    expect(second.sha256).toBe(first.sha256);
    expect(second.size).toBe(first.size);
    expect(second.contentType).toBe("application/octet-stream"); // the ref echoes its caller
    expect(await h.countObjects()).toBe(before + 1);
    expect((await store.stat(first.sha256))?.contentType).toBe("text/plain");
  });

  it("a missing blob throws BlobNotFoundError (terminal)", async () => {
    const missing = sha(randomBytes(16));
    const err: unknown = await store.get(missing).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlobNotFoundError);
    expect(err).toBeInstanceOf(BlobError);
    expect(err).toMatchObject({ name: "BlobNotFoundError", code: "MOSS_E_BLOB_NOT_FOUND", retryable: false, sha256: missing });
    expect((err as Error).message).toContain(missing);
  });

  it.each([
    ["path traversal", "../../../../etc/passwd"],
    ["traversal padded to 64 chars", "../" + "a".repeat(61)],
    ["uppercase hex", "A".repeat(64)],
    ["63 hex digits", "a".repeat(63)],
    ["65 hex digits", "a".repeat(65)],
    ["not hex", "g".repeat(64)],
    ["empty", ""],
  ])("rejects an invalid id (%s) with InvalidBlobIdError", async (_label, id) => {
    for (const op of [() => store.get(id), () => store.stat(id)]) {
      const err: unknown = await op().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidBlobIdError);
      expect(err).toMatchObject({ code: "MOSS_E_BLOB_INVALID_ID", retryable: false });
    }
  });

  it("rejects a content type that could inject headers, storing nothing", async () => {
    const before = await h.countObjects();
    const err: unknown = await store.put("x", { contentType: "text/plain\r\nX-Evil: 1" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidContentTypeError);
    expect(err).toMatchObject({ code: "MOSS_E_BLOB_INVALID_CONTENT_TYPE", retryable: false });
    expect(await h.countObjects()).toBe(before);
  });

  it("round-trips binary data, every byte value", async () => {
    const bytes = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(4096)]);
    const ref = await store.put(new Uint8Array(bytes));
    expect(ref).toEqual({ sha256: sha(bytes), size: bytes.length });
    expect((await store.get(ref.sha256)).equals(bytes)).toBe(true);
  });

  it("stores exactly the bytes of a Uint8Array view, not its whole backing buffer", async () => {
    const backing = randomBytes(1000);
    const view = new Uint8Array(backing.buffer, backing.byteOffset + 100, 500);
    const ref = await store.put(view);
    expect(ref).toEqual({ sha256: sha(view), size: 500 });
    expect((await store.get(ref.sha256)).equals(Buffer.from(view))).toBe(true);
  });

  it("round-trips an empty blob", async () => {
    const ref = await store.put(new Uint8Array(0));
    expect(ref).toEqual({ sha256: EMPTY_SHA, size: 0 });
    expect((await store.get(EMPTY_SHA)).length).toBe(0);
    expect(await store.stat(EMPTY_SHA)).toEqual({ sha256: EMPTY_SHA, size: 0 });
  });

  it("round-trips a 5 MiB blob", async () => {
    const bytes = randomBytes(5 * 1024 * 1024);
    const ref = await store.put(bytes, { contentType: "application/octet-stream" });
    expect(ref.size).toBe(bytes.length);
    expect((await store.stat(ref.sha256))?.size).toBe(bytes.length);
    expect((await store.get(ref.sha256)).equals(bytes)).toBe(true);
  });

  it("concurrent puts of the same bytes all succeed and store one object", async () => {
    const before = await h.countObjects();
    const bytes = randomBytes(256 * 1024);
    const refs = await Promise.all(Array.from({ length: 8 }, () => store.put(bytes)));
    for (const ref of refs) expect(ref).toEqual({ sha256: sha(bytes), size: bytes.length });
    expect(await h.countObjects()).toBe(before + 1);
    expect((await store.get(sha(bytes))).equals(bytes)).toBe(true);
  });

  it("detects stored bytes that no longer match their address (BlobCorruptError)", async () => {
    const bytes = randomBytes(2048);
    const ref = await store.put(bytes);
    const damaged = Buffer.from(bytes);
    damaged[100] = (damaged[100] ?? 0) ^ 0xff; // same length: only the hash can tell
    await writeFile(h.objectFile(ref.sha256), damaged);
    const err: unknown = await store.get(ref.sha256).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlobCorruptError);
    expect(err).toMatchObject({ code: "MOSS_E_BLOB_CORRUPT", retryable: false, sha256: ref.sha256, actualSha256: sha(damaged) });
  });
});

describe("fs blob store specifics", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "moss-blob-fs-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("lays blobs out as <dir>/<aa>/<sha256> and leaves no temp files", async () => {
    const root = path.join(dir, "layout");
    const store = createBlobStore({ kind: "fs", dir: root });
    await store.init();
    const ref = await store.put("layout", { contentType: "text/plain" });
    const file = path.join(root, ref.sha256.slice(0, 2), ref.sha256);
    expect(await readFile(file, "utf8")).toBe("layout");
    const names = await readdir(path.dirname(file));
    expect(names.sort()).toEqual([ref.sha256, `${ref.sha256}.meta.json`]);
  });

  it("put works before init (creates directories on demand)", async () => {
    const store = createBlobStore({ kind: "fs", dir: path.join(dir, "lazy", "nested") });
    const ref = await store.put("lazy");
    expect((await store.get(ref.sha256)).toString()).toBe("lazy");
  });

  it("putting the original bytes again repairs a corrupt copy", async () => {
    const root = path.join(dir, "repair");
    const store = createBlobStore({ kind: "fs", dir: root });
    const bytes = randomBytes(512);
    const ref = await store.put(bytes);
    const file = path.join(root, ref.sha256.slice(0, 2), ref.sha256);
    await writeFile(file, randomBytes(512));
    await expect(store.get(ref.sha256)).rejects.toBeInstanceOf(BlobCorruptError);
    await store.put(bytes);
    expect((await store.get(ref.sha256)).equals(bytes)).toBe(true);
  });

  it("a blob dir that is a file fails with a terminal BlobBackendError", async () => {
    const file = path.join(dir, "not-a-dir");
    await writeFile(file, "x");
    const store = createBlobStore({ kind: "fs", dir: file });
    const initErr: unknown = await store.init().catch((e: unknown) => e);
    expect(initErr).toBeInstanceOf(BlobBackendError);
    expect(initErr).toMatchObject({ code: "MOSS_E_BLOB_BACKEND", retryable: false });
    expect((initErr as Error).cause).toMatchObject({ code: "EEXIST" });
    await expect(store.put("x")).rejects.toBeInstanceOf(BlobBackendError);
    expect((await stat(file)).isFile()).toBe(true);
  });
});

describe("s3 blob store specifics", () => {
  it("stores objects as <prefix><sha256> with the content type as the object's Content-Type", async () => {
    const bucket = uniqueBucket();
    const store = createBlobStore(s3Config(bucket, { prefix: "moss/v1/" }));
    await store.init();
    const ref = await store.put("<p>hi</p>", { contentType: "text/html" });
    const client = new Client({ endPoint: "127.0.0.1", port: s3.port, useSSL: false, accessKey: S3RVER_KEY, secretKey: S3RVER_KEY, region: "us-east-1" });
    const st = await client.statObject(bucket, `moss/v1/${ref.sha256}`);
    expect(st.size).toBe(ref.size);
    expect(st.metaData["content-type"]).toBe("text/html");
  });

  it("init creates the bucket; a store on a missing bucket is a terminal backend error, not a missing blob", async () => {
    const store = createBlobStore(s3Config(uniqueBucket()));
    const err: unknown = await store.get(sha("x")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlobBackendError);
    expect(err).toMatchObject({ code: "MOSS_E_BLOB_BACKEND", retryable: false });
    expect((err as Error).cause).toMatchObject({ code: "NoSuchBucket" });
    await store.init();
    await expect(store.get(sha("x"))).rejects.toBeInstanceOf(BlobNotFoundError);
  });

  it("wrong credentials are a terminal BlobBackendError", async () => {
    const store = createBlobStore(s3Config(uniqueBucket(), { accessKey: "WRONG", secretKey: "WRONG" }));
    const err: unknown = await store.init().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlobBackendError);
    expect(err).toMatchObject({ retryable: false });
  });

  it("an unreachable endpoint is a retryable BlobUnavailableError", async () => {
    // A port that was free a moment ago: nothing listens there.
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.once("error", reject);
      srv.listen(0, "127.0.0.1", () => {
        const addr = srv.address();
        srv.close(() => resolve(typeof addr === "object" && addr ? addr.port : 0));
      });
    });
    const store = createBlobStore(s3Config(uniqueBucket(), { port }));
    for (const op of [() => store.init(), () => store.put("x"), () => store.get(sha("x")), () => store.stat(sha("x"))]) {
      const err: unknown = await op().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BlobUnavailableError);
      expect(err).toMatchObject({ code: "MOSS_E_BLOB_UNAVAILABLE", retryable: true });
      expect((err as Error).cause).toMatchObject({ code: "ECONNREFUSED" });
    }
  });

  it("5xx responses are a retryable BlobUnavailableError, whatever their body", async () => {
    // A stand-in S3 endpoint that is having a bad day.
    const server: Server = createHttpServer((req, res) => {
      if (req.method === "GET") {
        res.writeHead(500, { "content-type": "application/xml" });
        res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>');
      } else if (req.method === "PUT") {
        res.writeHead(502, { "content-type": "text/html" });
        res.end("<html><body>502 Bad Gateway</body></html>");
      } else {
        res.writeHead(503);
        res.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const addr = server.address();
    const port = typeof addr === "object" && addr ? addr.port : 0;
    try {
      const store = createBlobStore(s3Config("sick", { port }));
      const cases: Array<[string, () => Promise<unknown>]> = [
        ["HEAD 503", () => store.stat(sha("x"))],
        ["GET 500 InternalError", () => store.get(sha("x"))],
        ["HEAD 503 before PUT", () => store.put("x")],
      ];
      for (const [label, op] of cases) {
        const err: unknown = await op().catch((e: unknown) => e);
        expect(err, label).toBeInstanceOf(BlobUnavailableError);
        expect(err, label).toMatchObject({ code: "MOSS_E_BLOB_UNAVAILABLE", retryable: true });
      }
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
