/**
 * Small Moss-owned helper containers (an egress proxy, a forwarder): a node script run with `node -e` on Moss's node
 * base image, as nobody, with no capabilities and a read-only root. Started and waited for until it says
 * `{"listening": …}` on stdout; every other line goes to `onLine`.
 */
import { readFileSync } from "node:fs";
import { PassThrough } from "node:stream";
import type Docker from "dockerode";
import { BASE_IMAGE } from "./types";

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
    const stream = (await c.attach({ stream: true, stdout: true, stderr: true })) as NodeJS.ReadableStream;
    const out = new PassThrough();
    docker.modem.demuxStream(stream, out, out);
    let rest = "";
    let ready!: () => void;
    const listening = new Promise<void>((r) => (ready = r));
    const said: string[] = [];
    out.setEncoding("utf8");
    out.on("data", (d: string) => {
      const parts = (rest + d).split("\n");
      rest = parts.pop()!;
      for (const l of parts) {
        if (l.startsWith('{"listening"')) ready();
        else if (l.trim()) {
          said.push(l);
          o.onLine?.(l);
        }
      }
    });
    await c.start();
    let timer: NodeJS.Timeout | undefined;
    const up = await Promise.race([listening.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 15_000)))]);
    clearTimeout(timer);
    if (!up) throw new Error(`the helper container ${o.name} did not start listening within 15 s: ${said.join(" ").slice(0, 500)}`);
    return c;
  } catch (err) {
    await c.remove({ force: true }).catch(() => undefined);
    throw err;
  }
}
