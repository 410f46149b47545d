import { lstat, readFile, readdir, readlink } from "node:fs/promises";
import { join, posix } from "node:path";
import { pack } from "tar-stream";
import { MossSdkError, SdkErrorCodes } from "./errors";

/** Largest snapshot carried inline in a failure event: 1 MiB of tar (its base64 fits the schema's 1.4 MB). */
export const MAX_INLINE_SNAPSHOT_BYTES = 1024 * 1024;
/** Largest snapshot sent by reference through `uploadSnapshot`: 64 MiB of tar (it is held in memory while it is built). */
export const MAX_UPLOADED_SNAPSHOT_BYTES = 64 * 1024 * 1024;

const BLOCK = 512;
const padded = (n: number): number => Math.ceil(n / BLOCK) * BLOCK;

interface Entry {
  /** POSIX path relative to the snapshot root. */
  name: string;
  type: "file" | "directory" | "symlink";
  abs: string;
  mode: number;
  mtime: Date;
  size: number;
}

async function walk(root: string, rel: string, out: Entry[]): Promise<void> {
  const dirents = await readdir(join(root, rel), { withFileTypes: true });
  dirents.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const d of dirents) {
    const name = rel === "" ? d.name : posix.join(rel, d.name);
    const abs = join(root, name);
    const st = await lstat(abs);
    const base = { name, abs, mode: st.mode & 0o7777, mtime: st.mtime, size: 0 };
    if (st.isDirectory()) {
      out.push({ ...base, type: "directory" });
      await walk(root, name, out);
    } else if (st.isFile()) {
      out.push({ ...base, type: "file", size: st.size });
    } else if (st.isSymbolicLink()) {
      out.push({ ...base, type: "symlink" });
    }
    // Sockets, FIFOs and devices are not state; they are left out.
  }
}

/** Upper bound of the tar size, before reading any file (long names cost a PAX header). */
function estimate(entries: readonly Entry[]): number {
  let total = 2 * BLOCK;
  for (const e of entries) total += BLOCK + padded(e.size) + (Buffer.byteLength(e.name) > 99 ? 3 * BLOCK : 0);
  return total;
}

/**
 * Archive `dir` as a tar held in memory; paths inside are relative to `dir` (`state.json`, `sub/x`).
 * Regular files, directories and symlinks are kept, with their modes and mtimes.
 * Throws `MOSS_E_SNAPSHOT_TOO_LARGE` (without reading the files) when the archive would exceed `maxBytes`.
 */
export async function snapshotDirectory(dir: string, maxBytes: number = MAX_INLINE_SNAPSHOT_BYTES): Promise<Buffer> {
  const entries: Entry[] = [];
  await walk(dir, "", entries);
  const est = estimate(entries);
  if (est > maxBytes) {
    throw new MossSdkError(SdkErrorCodes.snapshotTooLarge, `state directory ${dir} needs about ${est} bytes of tar, more than the ${maxBytes} allowed`);
  }
  const p = pack();
  const chunks: Buffer[] = [];
  let size = 0;
  const collected = (async () => {
    for await (const c of p as AsyncIterable<Buffer>) {
      chunks.push(c);
      size += c.length;
    }
  })();
  try {
    for (const e of entries) {
      const header = { name: e.name, mode: e.mode, mtime: e.mtime };
      if (e.type === "directory") {
        // A trailing slash marks a directory entry, as tar(1) writes it.
        p.entry({ ...header, name: `${e.name}/`, type: "directory" });
      } else if (e.type === "symlink") {
        p.entry({ ...header, type: "symlink", linkname: await readlink(e.abs) });
      } else {
        // The file may have changed since it was listed: its content, not its listed size, goes in.
        const data = await readFile(e.abs);
        p.entry({ ...header, type: "file", size: data.length }, data);
      }
    }
    p.finalize();
  } catch (err) {
    p.destroy(err instanceof Error ? err : new Error(String(err)));
    await collected.catch(() => undefined);
    throw err;
  }
  await collected;
  if (size > maxBytes) {
    throw new MossSdkError(SdkErrorCodes.snapshotTooLarge, `state directory ${dir} produced ${size} bytes of tar, more than the ${maxBytes} allowed`);
  }
  return Buffer.concat(chunks, size);
}
