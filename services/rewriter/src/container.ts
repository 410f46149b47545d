/**
 * The coding agent in a container (rewriter.sandbox.kind "container", the default): the sandbox's box is bind-mounted
 * at its own path, so every path an adapter hands the tool means the same inside; nothing else of the host is there
 * but what rewriter.sandbox.mounts names (read-only). It runs as the sandbox's unprivileged uid with no capabilities,
 * no new privileges, a read-only root, a private /tmp, limits on memory and processes. Its network is none at all, or
 * — when rewriter.sandbox.allow names destinations — a loopback whose one open port leads to the egress proxy
 * (@moss/runtime's egress-proxy.mjs), which lets through exactly those. When the tool exits, its container goes, and with it
 * every process it started.
 */
import { randomBytes } from "node:crypto";
import { createReadStream, rmSync } from "node:fs";
import { constants, hostname } from "node:os";
import { PassThrough, type Duplex } from "node:stream";
import { egressProxyCode, engineMessage, pidIsGone, socketDir, startNodeHelper } from "@moss/runtime";
import type Docker from "dockerode";
import type { Logger } from "@moss/telemetry";
import { capture, type ProcessOptions, type ProcessRun } from "./adapters/process";

export interface ContainerSpec {
  /** The image the tool runs in (it must hold the tool, or get it from `mounts`). */
  image: string;
  /** The image the egress proxy runs in: anything with /usr/bin/node (Moss's node base). */
  proxyImage: string;
  /** Host paths mounted read-only at the same path (the tool's installation, say). */
  mounts: readonly string[];
  /** `host:port` destinations the tool may reach, through the proxy; empty: no network. */
  allow: readonly string[];
  memoryMiB: number;
  pids: number;
}

/** Where the tool finds the proxy: its own loopback (the forwarder's, whose network namespace it shares). */
const PROXY = "http://127.0.0.1:3128";
const DRAIN_MS = 1_000;
const LABEL = "moss.sandbox";
const OWNER = `${hostname()}:${process.pid}`;

export interface Egress {
  /** The tool container's NetworkMode: the forwarder's network namespace. */
  network: string;
  env: Record<string, string>;
  /** The proxy's decisions so far, one `{egress, target, method}` each. */
  decisions(): { egress: "allowed" | "refused"; target: string; method: string }[];
  close(): Promise<void>;
}

/**
 * The way out for one run, when rewriter.sandbox.allow names destinations. The tool's network namespace is a
 * forwarder's, which has a loopback and no interface besides (NetworkMode none): the forwarder listens on
 * 127.0.0.1:3128 and hands each connection to a unix socket in a directory only it and the proxy mount; the proxy, on
 * the engine's default bridge, lets through the allowed destinations only. So the tool has no route to anything —
 * not the host's addresses, not the bus, not the engine — but the proxy's port, and no Docker network feature (an
 * "internal" network still routes to the host) has to be trusted for it.
 */
export async function openEgress(docker: Docker, spec: ContainerSpec): Promise<Egress> {
  const name = `moss-sandbox-${randomBytes(6).toString("hex")}`;
  const sockets = socketDir("moss-egress-");
  const started: Docker.Container[] = [];
  const lines: string[] = [];
  const close = async () => {
    for (const c of started.reverse()) await c.remove({ force: true }).catch(() => undefined);
    rmSync(sockets, { recursive: true, force: true });
  };
  try {
    const helper = async (role: string, env: string[], networkMode: string) => {
      const c = await startNodeHelper(docker, {
        name: `${name}-${role}`,
        image: spec.proxyImage,
        code: egressProxyCode(),
        env,
        networkMode,
        binds: [`${sockets}:/egress`],
        labels: { [LABEL]: OWNER },
        onLine: (l) => l.startsWith('{"egress"') && lines.push(l),
      });
      started.push(c);
      return c;
    };
    await helper("proxy", [`MOSS_EGRESS_ALLOW=${spec.allow.join(",")}`, "MOSS_EGRESS_LISTEN=/egress/proxy.sock"], "bridge");
    const forwarder = await helper("forwarder", ["MOSS_EGRESS_FORWARD=/egress/proxy.sock"], "none");
    return {
      network: `container:${forwarder.id}`,
      env: { HTTPS_PROXY: PROXY, HTTP_PROXY: PROXY, https_proxy: PROXY, http_proxy: PROXY, NO_PROXY: "", no_proxy: "" },
      decisions: () =>
        lines.flatMap((l) => {
          try {
            const o = JSON.parse(l) as { egress?: "allowed" | "refused"; target?: string; method?: string };
            return o.egress ? [{ egress: o.egress, target: String(o.target), method: String(o.method) }] : [];
          } catch {
            return [];
          }
        }),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * Runs one tool in a fresh container and reads it like a process ({@link ProcessRun}): its exit code, its capped
 * output, a timeout that kills it, a spawn error when the image or the program is missing.
 */
export async function runInContainer(
  docker: Docker,
  spec: ContainerSpec,
  box: string,
  egress: Egress | undefined,
  argv: readonly string[],
  opts: ProcessOptions,
): Promise<ProcessRun> {
  const { finish, listen } = capture(opts.maxOutput);
  const spawnError = (error: string) => finish({ kind: "spawn-error", exitCode: null, signal: null, error });
  if (!argv[0]) return spawnError("empty command");
  if (!opts.runAs) return spawnError("a sandbox container needs the sandbox's uid");
  const env = { ...opts.env, ...(egress?.env ?? {}) };
  let container: Docker.Container;
  try {
    container = await docker.createContainer({
      Image: spec.image,
      Cmd: [...argv],
      WorkingDir: opts.cwd,
      Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      User: `${opts.runAs.uid}:${opts.runAs.gid}`,
      OpenStdin: opts.stdinFile !== undefined,
      StdinOnce: true,
      Labels: { [LABEL]: OWNER },
      HostConfig: {
        Binds: [`${box}:${box}`, ...spec.mounts.map((m) => `${m}:${m}:ro`)],
        NetworkMode: egress?.network ?? "none",
        CapDrop: ["ALL"],
        SecurityOpt: ["no-new-privileges"],
        ReadonlyRootfs: true,
        Tmpfs: { "/tmp": "rw,nosuid,nodev,size=512m" },
        Memory: spec.memoryMiB * 2 ** 20,
        PidsLimit: spec.pids,
      },
    });
  } catch (err) {
    const status = (err as { statusCode?: number }).statusCode;
    if (status === 404)
      return spawnError(`the sandbox image ${spec.image} is not on this Docker engine: \`npm run setup\` builds moss/coding-agent, or build your tool's image and name it in rewriter.sandbox.image`);
    return spawnError(`cannot create the sandbox container: ${engineMessage(err)}`);
  }
  try {
    const stream = (await container.attach({ stream: true, stdin: opts.stdinFile !== undefined, stdout: true, stderr: true, hijack: opts.stdinFile !== undefined })) as Duplex;
    const out = new PassThrough();
    const err = new PassThrough();
    docker.modem.demuxStream(stream, out, err);
    listen(out, err);
    const ended = new Promise<void>((r) => {
      stream.once("end", r);
      stream.once("close", r);
    });
    try {
      await container.start();
    } catch (e) {
      // The engine says why: "exec: \"claude\": executable file not found in $PATH", a missing working directory, …
      return spawnError(engineMessage(e));
    }
    if (opts.stdinFile !== undefined) createReadStream(opts.stdinFile).on("error", () => stream.end()).pipe(stream);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      void container.kill().catch(() => undefined);
    }, opts.timeoutMs);
    const { StatusCode } = (await container.wait()) as { StatusCode: number };
    clearTimeout(timer);
    let drain: NodeJS.Timeout | undefined;
    await Promise.race([ended, new Promise<void>((r) => (drain = setTimeout(r, DRAIN_MS)))]);
    clearTimeout(drain);
    stream.destroy();
    if (timedOut) return finish({ kind: "timeout", exitCode: null, signal: "SIGKILL" });
    // A process killed by a signal exits 128 + its number, as a shell reports it.
    const sig = StatusCode > 128 ? (Object.entries(constants.signals).find(([, n]) => n === StatusCode - 128)?.[0] as NodeJS.Signals | undefined) : undefined;
    return finish(sig ? { kind: "exited", exitCode: null, signal: sig } : { kind: "exited", exitCode: StatusCode, signal: null });
  } finally {
    await container.remove({ force: true }).catch(() => undefined);
  }
}

/**
 * Removes what an earlier rewriter process on this host left behind when it died mid-run: sandbox containers
 * labelled with a pid of this host that no longer runs.
 */
export async function sweepSandboxes(docker: Docker, log?: Logger): Promise<void> {
  const host = hostname();
  const stale = (owner: string | undefined) => {
    if (!owner) return false;
    const i = owner.lastIndexOf(":");
    if (owner.slice(0, i) !== host) return false;
    const pid = Number(owner.slice(i + 1));
    return pid !== process.pid && pidIsGone(pid);
  };
  const containers = (await docker.listContainers({ all: true, filters: { label: [LABEL] } })).filter((c) => stale(c.Labels[LABEL]));
  for (const c of containers) await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
  const n = containers.length;
  if (n) log?.info("removed sandbox containers left by a rewriter that died", { containers: n });
}
