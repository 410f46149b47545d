import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, rename, rm, stat as fsStat } from "node:fs/promises";
import path from "node:path";
import type { BlobRef } from "@moss/contracts";
import { assertBlobId, assertContentType, sha256Hex, toBuffer } from "./address";
import { BlobBackendError, BlobCorruptError, BlobError, BlobNotFoundError, BlobUnavailableError } from "./errors";
import { makeRef } from "./ref";
import type { BlobStore, FsBlobConfig, PutOptions } from "./types";

// Errors a retry cannot fix: wrong permissions, or a file where the store expects a directory.
const TERMINAL_FS_CODES = new Set(["EACCES", "EPERM", "EROFS", "ENOTDIR", "EISDIR", "EEXIST", "ENAMETOOLONG", "ELOOP"]);

interface Meta {
  contentType?: string;
}

/**
 * Blobs as files `<dir>/<aa>/<sha256>` (aa = first two hex digits, so no directory grows past
 * 1/256 of the blobs), with the content type, when given, in a sidecar `<sha256>.meta.json`.
 * Both are written to a temp file in the same directory, fsynced, then renamed into place, so a
 * reader sees either nothing or the whole file.
 */
export function createFsBlobStore(cfg: FsBlobConfig): BlobStore {
  const root = path.resolve(cfg.dir);
  const where = `fs:${root}`;

  const locate = (sha256: string) => {
    const shard = path.join(root, sha256.slice(0, 2));
    return { shard, data: path.join(shard, sha256), meta: path.join(shard, `${sha256}.meta.json`) };
  };

  const guard = async <T>(operation: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      throw toBlobError(operation, where, err);
    }
  };

  return {
    kind: "fs",

    init: () =>
      guard("init", async () => {
        await mkdir(root, { recursive: true });
      }),

    put: (data: Uint8Array | string, opts?: PutOptions): Promise<BlobRef> =>
      guard("put", async () => {
        const contentType = opts?.contentType;
        assertContentType(contentType);
        const bytes = toBuffer(data);
        const sha256 = sha256Hex(bytes);
        const loc = locate(sha256);

        // Already stored and intact: nothing to write. A damaged copy is rewritten (repair).
        const existing = await readIfExists(loc.data);
        if (existing !== undefined && existing.length === bytes.length && sha256Hex(existing) === sha256) {
          return makeRef(sha256, bytes.length, contentType);
        }

        const created = await mkdir(loc.shard, { recursive: true });
        // Metadata first: once the data file is visible its sidecar is final.
        if (contentType !== undefined) {
          await writeAtomic(loc.meta, JSON.stringify({ contentType } satisfies Meta));
        } else {
          await rm(loc.meta, { force: true }); // a leftover from an interrupted put must not apply to these bytes
        }
        await writeAtomic(loc.data, bytes);
        await syncDir(loc.shard);
        if (created !== undefined) await syncDir(path.dirname(loc.shard));
        return makeRef(sha256, bytes.length, contentType);
      }),

    get: (sha256: string): Promise<Buffer> =>
      guard("get", async () => {
        assertBlobId(sha256);
        const bytes = await readIfExists(locate(sha256).data);
        if (bytes === undefined) throw new BlobNotFoundError(sha256, where);
        const actual = sha256Hex(bytes);
        if (actual !== sha256) throw new BlobCorruptError(sha256, actual, where);
        return bytes;
      }),

    stat: (sha256: string): Promise<BlobRef | undefined> =>
      guard("stat", async () => {
        assertBlobId(sha256);
        const loc = locate(sha256);
        let size: number;
        try {
          size = (await fsStat(loc.data)).size;
        } catch (err) {
          if (isErrno(err, "ENOENT")) return undefined;
          throw err;
        }
        return makeRef(sha256, size, await readContentType(loc.meta));
      }),
  };
}

async function readIfExists(file: string): Promise<Buffer | undefined> {
  try {
    return await readFile(file);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw err;
  }
}

async function readContentType(metaFile: string): Promise<string | undefined> {
  const raw = await readIfExists(metaFile);
  if (raw === undefined) return undefined;
  try {
    const meta = JSON.parse(raw.toString("utf8")) as Meta;
    return typeof meta.contentType === "string" ? meta.contentType : undefined;
  } catch {
    return undefined; // metadata is advisory; an unreadable sidecar must not hide the blob
  }
}

async function writeAtomic(file: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    const fh = await open(tmp, "wx");
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

/** fsync a directory so a rename or create in it survives a crash. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}

function toBlobError(operation: string, where: string, err: unknown): Error {
  if (err instanceof BlobError || err instanceof TypeError) return err;
  const code = err instanceof Error ? (err as NodeJS.ErrnoException).code : undefined;
  if (code !== undefined && TERMINAL_FS_CODES.has(code)) return new BlobBackendError(operation, where, { cause: err });
  // EIO, ENOSPC, EMFILE, EBUSY...: may pass.
  return new BlobUnavailableError(operation, where, { cause: err });
}
