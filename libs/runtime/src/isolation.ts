/**
 * What a trial pod is held in beyond the container's own limits: the agent's user (never root), the writable places
 * of a read-only root filesystem (the restored state directory and Moss's out directory, as volumes of the trial's
 * own, prepared before the agent exists), the network a trial that may go out gets (a bridge of Moss's own on which
 * trials cannot reach each other, never the engine's default), and who owns a trial's leftovers, so the next
 * replayer can tell a dead owner's from a live one's.
 */
import { hostname } from "node:os";
import type Docker from "dockerode";
import tar from "tar-stream";
import { isNotFound, statusCodeOf } from "./docker";
import { NOBODY } from "./helper";

/** Who owns a trial's containers and volumes: this host, this process, and when it started (a pid can be reused). */
export const TRIAL_OWNER = `${hostname()}:${process.pid}:${Math.round(Date.now() - performance.now())}`;

/**
 * Whether leftovers labelled `owner` belong to no living replayer on this host: another process of this host that is
 * gone (or whose pid is now ours, so an earlier life of this container). Another host's owner cannot be told here.
 */
export function ownerIsGone(owner: string | undefined): boolean {
  if (!owner || owner === TRIAL_OWNER) return false;
  const [host, pidText] = owner.split(":");
  if (host !== hostname()) return false;
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return true;
  if (pid === process.pid) return true;
  return pidIsGone(pid);
}

/** Whether no process of this host has `pid` (one that exists but is not ours to signal is alive). */
export function pidIsGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
}

/** The user a trial's agent runs as: the image's own, unless that is root (or unset); then nobody. */
export function trialUser(imageUser: string | undefined): string {
  const u = (imageUser ?? "").trim();
  const name = u.split(":")[0];
  if (!u || name === "root" || name === "0") return `${NOBODY}:${NOBODY}`;
  return u;
}

/**
 * The numeric owner of `user` in a container's image (`uid[:gid]` as is; a name through the image's /etc/passwd and
 * /etc/group), so the files Moss puts in the pod belong to the agent. A name the image does not know is an error.
 */
export async function numericOwner(container: Docker.Container, user: string): Promise<{ uid: number; gid: number }> {
  const [u = "", g] = user.split(":");
  const numeric = /^\d+$/;
  let uid: number;
  let gid: number | undefined;
  if (numeric.test(u)) {
    uid = Number(u);
    if (g === undefined) {
      const row = (await readTable(container, "/etc/passwd")).find((r) => r[2] === u);
      if (row) gid = Number(row[3]);
    }
  } else {
    const row = (await readTable(container, "/etc/passwd")).find((r) => r[0] === u);
    if (!row) throw new Error(`the image's USER ${u} is not in its /etc/passwd`);
    uid = Number(row[2]);
    gid = Number(row[3]);
  }
  if (g !== undefined) {
    if (numeric.test(g)) gid = Number(g);
    else {
      const row = (await readTable(container, "/etc/group")).find((r) => r[0] === g);
      if (!row) throw new Error(`the image's USER group ${g} is not in its /etc/group`);
      gid = Number(row[2]);
    }
  }
  return { uid, gid: Number(gid ?? 0) };
}

/** A colon-separated table (/etc/passwd, /etc/group) from a container, or none when the image has no such file. */
async function readTable(container: Docker.Container, file: string): Promise<string[][]> {
  let archive: NodeJS.ReadableStream;
  try {
    archive = await container.getArchive({ path: file });
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
  const text = await new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    const extract = tar.extract();
    extract.on("entry", (_h, stream, next) => {
      stream.on("data", (c: unknown) => chunks.push(c as Buffer));
      stream.on("end", () => next());
    });
    extract.on("finish", () => resolve(Buffer.concat(chunks).toString("utf8")));
    extract.on("error", reject);
    archive.pipe(extract as unknown as NodeJS.WritableStream);
  });
  return text.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => l.split(":"));
}

const networks = new Map<string, Promise<string>>();

/**
 * The bridge a trial that may use the network joins: `<prefix>-trials`, made on first use, with inter-container
 * traffic off, so a trial reaches the outside but not another trial, nor a live agent on the default bridge.
 */
export function trialNetwork(docker: Docker, prefix: string): Promise<string> {
  const name = `${prefix}-trials`;
  let p = networks.get(name);
  if (!p) {
    p = (async () => {
      const found = await docker.listNetworks({ filters: { name: [name] } });
      if (found.some((n) => n.Name === name)) return name;
      try {
        await docker.createNetwork({
          Name: name,
          Driver: "bridge",
          CheckDuplicate: true,
          Labels: { "moss.role": "trial-network", "moss.prefix": prefix },
          Options: { "com.docker.network.bridge.enable_icc": "false" },
        });
      } catch (err) {
        // Another replayer made it first.
        if (statusCodeOf(err) !== 409) throw err;
      }
      return name;
    })();
    p.catch(() => networks.delete(name));
    networks.set(name, p);
  }
  return p;
}
