/**
 * A failure's state snapshot is hostile until proven otherwise: it comes from whoever reported the failure. Before it
 * reaches a trial container it is read entry by entry and packed again, under a strict policy — regular files,
 * directories and symlinks that stay inside the state directory only; no absolute path, no `..`, no entry reached
 * through a symlink, no hard link, no device or fifo, no setuid/setgid bit; bounded size and entry count. What is
 * extracted in the container is the clean copy, under the directory the agent's config names.
 */
import { posix } from "node:path";
import { Readable } from "node:stream";
import tar from "tar-stream";
import { SnapshotRejectedError, TrialError } from "./errors";

export interface SnapshotLimits {
  /** Most bytes of file content. */
  maxBytes: number;
  /** Most entries. */
  maxEntries: number;
}

type Clean =
  | { type: "file"; name: string; mode: number; uid: number; gid: number; mtime: Date; content: Buffer }
  | { type: "directory"; name: string; mode: number; uid: number; gid: number; mtime: Date }
  | { type: "symlink"; name: string; mode: number; uid: number; gid: number; mtime: Date; linkname: string };

/** How the clean copy is packed: owned by the trial's user, and under a directory of that name (its root entry). */
export interface Repack {
  owner?: { uid: number; gid: number };
  /** A relative path (`app/state`): every entry goes under it, and it gets an entry of its own (the root's mode). */
  under?: string;
  /** Directories packed before everything else (other places the same upload prepares). */
  first?: ReadonlyArray<{ type: "directory"; name: string; mode: number; uid: number; gid: number }>;
}

/** A tar entry's name as a path inside the state directory, or why it is not one. */
function insideName(raw: string): { name: string } | { why: string } {
  if (!raw) return { why: "an entry without a name" };
  if (raw.includes("\0")) return { why: `entry ${JSON.stringify(raw)} has a NUL byte in its name` };
  if (raw.startsWith("/")) return { why: `entry ${raw} has an absolute path` };
  if (raw.split("/").includes("..")) return { why: `entry ${raw} climbs out with ..` };
  const name = posix.normalize(raw).replace(/\/+$/, "");
  if (name === "." || name === "") return { name: "." };
  return { name };
}

/**
 * Reads a snapshot tar and returns a clean tar of what it may hold; SnapshotRejectedError (terminal) names the first
 * entry that breaks the policy, TrialError says when it is not a tar at all.
 */
export async function cleanSnapshot(input: Buffer, limits: SnapshotLimits, image: string, repack: Repack = {}): Promise<Buffer> {
  const entries: Clean[] = [];
  let rootMode = 0o755;
  const links = new Set<string>();
  let bytes = 0;
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on("entry", (header, stream, next) => {
      const fail = (why: string) => {
        stream.resume();
        reject(new SnapshotRejectedError(why));
      };
      if (entries.length >= limits.maxEntries) return fail(`more than ${limits.maxEntries} entries`);
      const n = insideName(header.name);
      if ("why" in n) return fail(n.why);
      const name = n.name;
      // An entry below a symlink this tar made would be written wherever the link points.
      for (let p = posix.dirname(name); p !== "." && p !== "/"; p = posix.dirname(p)) {
        if (links.has(p)) return fail(`entry ${name} goes through the symlink ${p}`);
      }
      const base = { name, mode: (header.mode ?? 0o644) & 0o777, uid: header.uid ?? 0, gid: header.gid ?? 0, mtime: header.mtime ?? new Date(0) };
      switch (header.type) {
        case "file":
        case "contiguous-file": {
          const chunks: Buffer[] = [];
          stream.on("data", (c: unknown) => {
            bytes += (c as Buffer).length;
            chunks.push(c as Buffer);
          });
          stream.on("end", () => {
            if (bytes > limits.maxBytes) return reject(new SnapshotRejectedError(`more than ${limits.maxBytes} bytes of files`));
            entries.push({ type: "file", ...base, content: Buffer.concat(chunks) });
            next();
          });
          stream.on("error", reject);
          return;
        }
        case "directory":
          if (name !== ".") entries.push({ type: "directory", ...base });
          else rootMode = base.mode;
          stream.resume();
          return next();
        case "symlink": {
          const target = header.linkname ?? "";
          const resolved = posix.normalize(posix.join(posix.dirname(name), target));
          if (!target || target.startsWith("/") || resolved === ".." || resolved.startsWith("../")) {
            return fail(`symlink ${name} -> ${target} leaves the state directory`);
          }
          links.add(name);
          entries.push({ type: "symlink", ...base, linkname: target });
          stream.resume();
          return next();
        }
        default:
          return fail(`entry ${name} is a ${header.type ?? "special file"}; a snapshot holds files, directories and symlinks only`);
      }
    });
    extract.on("finish", () => resolve());
    extract.on("error", (err) => reject(new TrialError(image, "snapshot read: is the snapshot a valid tar?", false, { cause: err })));
  });
  Readable.from([input]).pipe(extract);
  await done;

  // Owned by the trial's user, with every parent directory present (the engine would make a missing one root's).
  if (repack.owner) {
    const dirs = new Set(entries.filter((e) => e.type === "directory").map((e) => e.name));
    const missing = new Set<string>();
    for (const e of entries) {
      for (let p = posix.dirname(e.name); p !== "." && !dirs.has(p); p = posix.dirname(p)) missing.add(p);
    }
    const made = [...missing].sort((a, b) => a.split("/").length - b.split("/").length).map((name): Clean => ({ type: "directory", name, mode: 0o755, uid: 0, gid: 0, mtime: new Date(0) }));
    entries.unshift(...made);
    for (const e of entries) Object.assign(e, repack.owner);
  }
  if (repack.under) {
    for (const e of entries) e.name = `${repack.under}/${e.name}`;
    entries.unshift({ type: "directory", name: repack.under, mode: rootMode, uid: repack.owner?.uid ?? 0, gid: repack.owner?.gid ?? 0, mtime: new Date(0) });
  }

  if (repack.first) entries.unshift(...repack.first.map((d): Clean => ({ ...d, mtime: new Date(0) })));

  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const packed = new Promise<void>((resolve, reject) => {
    pack.on("data", (c: unknown) => void chunks.push(c as Buffer));
    pack.on("end", () => resolve());
    pack.on("error", reject);
  });
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (e.type === "file") pack.entry({ name: e.name, type: "file", mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, size: e.content.length }, e.content, cb);
      else if (e.type === "directory") pack.entry({ name: `${e.name}/`, type: "directory", mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime }, cb);
      else pack.entry({ name: e.name, type: "symlink", linkname: e.linkname, mode: 0o777, uid: e.uid, gid: e.gid, mtime: e.mtime }, cb);
    });
  }
  pack.finalize();
  await packed;
  return Buffer.concat(chunks);
}
