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
