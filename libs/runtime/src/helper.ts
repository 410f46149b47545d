/**
 * Small Moss-owned helper containers (an egress proxy, a forwarder): a node script run with `node -e` on Moss's node
 * base image, as nobody, with no capabilities and a read-only root. Started and waited for until it says
 * `{"listening": …}` on stdout; every other line goes to `onLine`.
 */
import { chmodSync, chownSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import type Docker from "dockerode";
import { BASE_IMAGE } from "./types";

/**
 * Attaches to a container before its start and reads its output (stdout and stderr) line by line. `seen` resolves
 * true at the first line `match` accepts, false after `ms` or when the output ends. With `onLine`, every other line
 * goes there for as long as the container runs; without it, reading stops at the match.
 */
export async function watchLines(
  docker: Docker,
  c: Docker.Container,
  match: (line: string) => boolean,
  opts: { ms: number; onLine?: (line: string) => void },
): Promise<{ seen: Promise<boolean> }> {
  const stream = (await c.attach({ stream: true, stdout: true, stderr: true })) as NodeJS.ReadableStream;
  const out = new PassThrough();
  docker.modem.demuxStream(stream, out, out);
  out.setEncoding("utf8");
  let settle!: (ok: boolean) => void;
  let settled = false;
  // Wrapped in an object: a promise returned from this async function would be awaited with it, before the start.
  const seen = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => settle(false), opts.ms);
    settle = (ok) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!opts.onLine) {
        out.removeAllListeners("data");
        (stream as unknown as { destroy?: () => void }).destroy?.();
      }
      resolve(ok);
    };
  });
  let rest = "";
  out.on("data", (d: string) => {
    const parts = (rest + d).split("\n");
    rest = parts.pop()!;
    for (const l of parts) {
      if (!settled && match(l)) settle(true);
      else if (l.trim()) opts.onLine?.(l);
    }
  });
  stream.on("end", () => settle(false));
  return { seen };
}

/** A directory for a unix socket that only the helpers' user (nobody) may enter. */
export function socketDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chownSync(dir, NOBODY, NOBODY);
  chmodSync(dir, 0o700);
  return dir;
}

/** The uid (and gid) helper containers run as. */
export const NOBODY = 65_534;

let proxyCode: string | undefined;
/** The egress proxy's code (./egress-proxy.mjs): an allow-listed HTTP proxy, or a loopback-to-socket forwarder. */
export const egressProxyCode = (): string => (proxyCode ??= readFileSync(new URL("./egress-proxy.mjs", import.meta.url), "utf8"));

export interface HelperOptions {
  name: string;
  code: string;
  env: string[];
  networkMode: string;
  binds: string[];
  labels: Record<string, string>;
  image?: string;
  onLine?: (line: string) => void;
}

export async function startNodeHelper(docker: Docker, o: HelperOptions): Promise<Docker.Container> {
  const c = await docker.createContainer({
    name: o.name,
    Image: o.image ?? BASE_IMAGE,
    Cmd: ["/usr/bin/node", "--input-type=module", "-e", o.code],
    Env: o.env,
    User: `${NOBODY}:${NOBODY}`,
    Labels: o.labels,
    HostConfig: { NetworkMode: o.networkMode, Binds: o.binds, CapDrop: ["ALL"], SecurityOpt: ["no-new-privileges"], ReadonlyRootfs: true, Memory: 128 * 2 ** 20, PidsLimit: 64 },
  });
  try {
    const said: string[] = [];
    const { seen } = await watchLines(docker, c, (l) => l.startsWith('{"listening"'), {
      ms: 15_000,
      onLine: (l) => {
        said.push(l);
        o.onLine?.(l);
      },
    });
    await c.start();
    const up = await seen;
    if (!up) throw new Error(`the helper container ${o.name} did not start listening within 15 s: ${said.join(" ").slice(0, 500)}`);
    return c;
  } catch (err) {
    await c.remove({ force: true }).catch(() => undefined);
    throw err;
  }
}
