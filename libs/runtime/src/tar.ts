import tar from "tar-stream";

export type TarEntry =
  | { type: "file"; name: string; content: Buffer | string; mode?: number; uid?: number; gid?: number }
  | { type: "directory"; name: string; mode?: number; uid?: number; gid?: number };

/** Packs entries into an in-memory tar (owner root unless given, fixed mtime). Names are relative to the extraction dir. */
export async function packTar(entries: readonly TarEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const mtime = new Date(0);
  const chunks: Buffer[] = [];
  const collected = new Promise<void>((resolve, reject) => {
    pack.on("data", (chunk: unknown) => chunks.push(chunk as Buffer));
    pack.on("end", () => resolve());
    pack.on("error", reject);
  });
  for (const e of entries) {
    if (e.type === "directory") {
      await addEntry(pack, { name: e.name, type: "directory", mode: e.mode ?? 0o755, uid: e.uid ?? 0, gid: e.gid ?? 0, mtime });
    } else {
      const content = typeof e.content === "string" ? Buffer.from(e.content, "utf8") : e.content;
      await addEntry(pack, { name: e.name, type: "file", mode: e.mode ?? 0o644, uid: e.uid ?? 0, gid: e.gid ?? 0, mtime, size: content.length }, content);
    }
  }
  pack.finalize();
  await collected;
  return Buffer.concat(chunks);
}

function addEntry(pack: tar.Pack, header: Partial<tar.Header> & { name: string }, content?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const cb = (err?: Error | null) => (err ? reject(err) : resolve());
    if (content === undefined) pack.entry(header, cb);
    else pack.entry(header, content, cb);
  });
}

/**
 * The entry names of a tar (ustar, with PAX `path` records and GNU long names, as Docker's archives write them), in
 * order, without a trailing slash.
 */
export function tarNames(tar: Buffer): string[] {
  const names: string[] = [];
  let next: string | undefined;
  for (let off = 0; off + 512 <= tar.length; ) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const str = (a: number, b: number) => h.subarray(a, b).toString("utf8").replace(/\0.*$/s, "");
    const size = parseInt(str(124, 136).trim() || "0", 8);
    const type = String.fromCharCode(h[156]!);
    const body = tar.subarray(off + 512, off + 512 + size);
    if (type === "x") {
      for (const rec of body.toString("utf8").split("\n")) {
        const m = /^\d+ path=(.*)$/s.exec(rec);
        if (m) next = m[1];
      }
    } else if (type === "L") {
      next = body.toString("utf8").replace(/\0.*$/s, "");
    } else if (type !== "g") {
      const prefix = str(345, 500);
      const name = next ?? (prefix ? `${prefix}/${str(0, 100)}` : str(0, 100));
      names.push(name.replace(/\/+$/, ""));
      next = undefined;
    }
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return names;
}
