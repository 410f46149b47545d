import type Docker from "dockerode";
import { checkNamePart, type ResolvedRuntimeConfig } from "./config";
import { isNotFound, isRetryableDockerError, statusCodeOf, toRuntimeError } from "./docker";
import { DockerError, ImageMismatchError, ImageNotFoundError, InvalidSpecError, LiveDeployError, NoPreviousVersionError, RuntimeError, type PreviousVersionOutcome } from "./errors";
import { tarNames } from "./tar";
import { BASE_IMAGE, type DeployLiveResult, type LiveNetwork, type LiveSpec, type LiveStatus, type ServedVersion } from "./types";

/**
 * The live containers of agents. Per agent there are at most:
 *   `<prefix>-live-<agent>`  the running version (host network: it owns the agent's port)
 *   `<prefix>-prev-<agent>`  the version before it, stopped, kept for one rollback
 *   `<prefix>-next-<agent>`  only during a deploy: created before the live one is stopped, so a
 *                            bad image fails before any downtime
 * The name says the role; the `moss.role=live` label only says the container was created as live
 * (labels cannot change when a container is renamed to prev).
 *
 * Calls for one agent are serialized within this process; across processes the caller needs a
 * lease (the promoter holds one per agent).
 */
export class LiveContainers {
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(
    private readonly docker: Docker,
    private readonly cfg: ResolvedRuntimeConfig,
  ) {}

  names(agent: string): { live: string; prev: string; next: string } {
    checkNamePart("agent", agent);
    const p = this.cfg.namePrefix;
    return { live: `${p}-live-${agent}`, prev: `${p}-prev-${agent}`, next: `${p}-next-${agent}` };
  }

  async deployLive(spec: LiveSpec): Promise<DeployLiveResult> {
    const n = this.names(spec.agent);
    if (!spec.image) throw new InvalidSpecError("LiveSpec.image", "must not be empty");
    return this.locked(spec.agent, async () => {
      const image = await this.checkedImage(spec);
      const fail = (outcome: PreviousVersionOutcome, err: unknown): LiveDeployError =>
        new LiveDeployError(spec.agent, spec.image, outcome, retryable(err), { cause: err });

      // 1. The new container, created (not started) under a temporary name: a bad image or spec
      //    fails here, while the current version keeps serving.
      let next: Docker.Container;
      try {
        await this.removeIfExists(n.next);
        next = await this.docker.createContainer({
          name: n.next,
          // The id that was checked, not the tag: the tag may move meanwhile. `moss.image` keeps the name people read.
          Image: image.Id,
          Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
          Labels: { "moss.agent": spec.agent, "moss.role": "live", "moss.version": spec.version, "moss.image": spec.image, "moss.prefix": this.cfg.namePrefix },
          Tty: false,
          HostConfig: {
            NetworkMode: "host",
            RestartPolicy: { Name: "no" },
            // The agent's state outlives its versions: one named volume per agent, handed from version to version.
            ...(spec.stateDir ? { Binds: [`${this.stateVolume(spec.agent)}:${spec.stateDir}`] } : {}),
            // tini as PID 1 forwards SIGTERM, so a node agent without a handler stops at once.
            Init: true,
          },
        });
      } catch (err) {
        throw fail("untouched", err);
      }

      // 2. Retire the current version to prev (host networking: it must release the port first).
      let previous: { container: string; image: string } | undefined;
      let current: Docker.ContainerInspectInfo | undefined;
      try {
        current = await this.inspectIfExists(n.live);
        if (current) {
          await this.stopIfRunning(n.live);
          await this.removeIfExists(n.prev);
          await this.docker.getContainer(n.live).rename({ name: n.prev });
          previous = { container: n.prev, image: imageName(current) };
        }
      } catch (err) {
        await next.remove({ force: true }).catch(() => undefined);
        throw fail(current ? await this.restoreLive(n, imageName(current)) : "untouched", err);
      }

      // 3. Start the new version under the live name; on failure put the previous one back.
      try {
        await next.rename({ name: n.live });
        await next.start();
      } catch (err) {
        await next.remove({ force: true }).catch(() => undefined);
        throw fail(previous ? await this.restoreLive(n, previous.image) : "none", err);
      }
      return previous ? { container: n.live, previous } : { container: n.live };
    });
  }

  async rollbackLive(agent: string): Promise<{ container: string; image: string }> {
    const n = this.names(agent);
    return this.locked(agent, async () => {
      let prev: Docker.ContainerInspectInfo | undefined;
      try {
        prev = await this.inspectIfExists(n.prev);
      } catch (err) {
        throw this.engineError(err, `inspect ${n.prev}`);
      }
      if (!prev) throw new NoPreviousVersionError(agent, n.prev);
      try {
        await this.stopIfRunning(n.live);
        await this.removeIfExists(n.live);
        await this.docker.getContainer(n.prev).rename({ name: n.live });
        await this.docker.getContainer(n.live).start();
      } catch (err) {
        throw new LiveDeployError(agent, imageName(prev), "not-restored", retryable(err), { cause: err });
      }
      return { container: n.live, image: imageName(prev) };
    });
  }

  async liveStatus(agent: string): Promise<LiveStatus | undefined> {
    const n = this.names(agent);
    let info: Docker.ContainerInspectInfo | undefined;
    try {
      info = await this.inspectIfExists(n.live);
    } catch (err) {
      throw this.engineError(err, `inspect ${n.live}`);
    }
    if (!info) return undefined;
    const status: LiveStatus = { container: n.live, image: imageName(info), running: info.State.Running };
    const version = info.Config.Labels?.["moss.version"];
    if (version !== undefined) status.version = version;
    return status;
  }

  async removeAgent(agent: string, opts: { state?: boolean } = {}): Promise<void> {
    const n = this.names(agent);
    return this.locked(agent, async () => {
      const servedList = await this.servedVersions(agent).catch(() => []);
      for (const name of [n.next, n.live, n.prev, ...servedList.map((v) => v.container)]) {
        try {
          await this.removeIfExists(name);
        } catch (err) {
          throw this.engineError(err, `remove ${name}`);
        }
      }
      if (opts.state) {
        await this.docker
          .getVolume(this.stateVolume(agent))
          .remove()
          .catch((err: unknown) => {
            if (!isNotFound(err)) throw this.engineError(err, `remove volume ${this.stateVolume(agent)}`);
          });
      }
    });
  }

  /** The image a live spec names, refused unless it is the one the spec says was built (ImageMismatchError). */
  private async checkedImage(spec: LiveSpec): Promise<Docker.ImageInspectInfo> {
    let image: Docker.ImageInspectInfo;
    try {
      image = await this.docker.getImage(spec.image).inspect();
    } catch (err) {
      if (isNotFound(err)) throw new ImageNotFoundError(spec.image, { cause: err });
      throw this.engineError(err, "image inspect");
    }
    if (spec.imageId !== undefined) {
      if (image.Id !== spec.imageId) throw new ImageMismatchError(spec.image, `its id is ${image.Id}, the build made ${spec.imageId}`);
      const labelled = image.Config?.Labels?.["moss.commit"];
      if (labelled !== spec.version) throw new ImageMismatchError(spec.image, `its moss.commit label is ${labelled ?? "missing"}, not ${spec.version}`);
    }
    return image;
  }

  /** The live network, created (a plain bridge, labelled) when missing. Serialized: two creates would make two. */
  liveNetwork(): Promise<LiveNetwork> {
    return this.locked("\0network", async () => {
      const name = `${this.cfg.namePrefix}-live`;
      let info: Docker.NetworkInspectInfo | undefined;
      try {
        info = (await this.docker.getNetwork(name).inspect()) as Docker.NetworkInspectInfo;
      } catch (err) {
        if (!isNotFound(err)) throw this.engineError(err, `inspect network ${name}`);
      }
      if (!info) {
        try {
          await this.docker.createNetwork({ Name: name, Driver: "bridge", CheckDuplicate: true, Labels: { "moss.role": "live-network", "moss.prefix": this.cfg.namePrefix } });
        } catch (err) {
          if (statusCodeOf(err) !== 409) throw this.engineError(err, `create network ${name}`);
        }
        info = (await this.docker.getNetwork(name).inspect()) as Docker.NetworkInspectInfo;
      }
      const hostIp = info.IPAM?.Config?.find((c) => c.Gateway)?.Gateway ?? "";
      if (!hostIp) throw new DockerError(`inspect network ${name}`, 500, { cause: new Error(`the network has no gateway address; remove it (docker network rm ${name}) and Moss makes it again`) });
      return { name, hostIp };
    });
  }

  async serveVersion(spec: LiveSpec & { port: number }): Promise<ServedVersion> {
    if (!spec.image) throw new InvalidSpecError("LiveSpec.image", "must not be empty");
    const name = this.servedName(spec.agent, spec.version);
    return this.locked(spec.agent, async () => {
      const image = await this.checkedImage(spec);
      const net = await this.liveNetwork();
      try {
        const kept = await this.inspectIfExists(name);
        if (kept && kept.Image === image.Id) {
          if (!kept.State.Running) await this.docker.getContainer(name).start();
        } else {
          if (kept) await this.removeIfExists(name);
          const c = await this.docker.createContainer({
            name,
            Image: image.Id,
            Env: Object.entries({ ...spec.env, PORT: String(spec.port) }).map(([k, v]) => `${k}=${v}`),
            Labels: { "moss.agent": spec.agent, "moss.role": "serve", "moss.version": spec.version, "moss.image": spec.image, "moss.prefix": this.cfg.namePrefix, "moss.port": String(spec.port) },
            Tty: false,
            HostConfig: {
              NetworkMode: net.name,
              RestartPolicy: { Name: "no" },
              // The host's Moss services (the bus, the ingest) are reached through what `moss up` relays at this address.
              ExtraHosts: [`moss-host:${net.hostIp}`],
              ...(spec.stateDir ? { Binds: [`${this.stateVolume(spec.agent)}:${spec.stateDir}`] } : {}),
              Init: true,
            },
          });
          await c.start();
        }
      } catch (err) {
        throw new LiveDeployError(spec.agent, spec.image, "untouched", retryable(err), { cause: err });
      }
      const served = await this.versionStatus(name);
      if (!served?.running) throw new LiveDeployError(spec.agent, spec.image, "untouched", false, { cause: new Error(`${name} exited as soon as it started; see docker logs ${name}`) });
      return served;
    });
  }

  async resumeVersion(container: string): Promise<ServedVersion> {
    try {
      await this.docker.getContainer(container).start();
    } catch (err) {
      // 304: it runs already.
      if (statusCodeOf(err) !== 304) throw this.engineError(err, `start ${container}`);
    }
    const v = await this.versionStatus(container);
    if (!v?.running) throw this.engineError(new Error(`${container} exited as soon as it started; see docker logs ${container}`), `start ${container}`);
    return v;
  }

  async stopVersion(container: string): Promise<void> {
    try {
      await this.stopIfRunning(container);
    } catch (err) {
      throw this.engineError(err, `stop ${container}`);
    }
  }

  async versionStatus(container: string): Promise<ServedVersion | undefined> {
    let info: Docker.ContainerInspectInfo | undefined;
    try {
      info = await this.inspectIfExists(container);
    } catch (err) {
      throw this.engineError(err, `inspect ${container}`);
    }
    return info ? served(info) : undefined;
  }

  async servedVersions(agent: string): Promise<ServedVersion[]> {
    checkNamePart("agent", agent);
    try {
      const list = await this.docker.listContainers({ all: true, filters: { label: [`moss.role=serve`, `moss.agent=${agent}`, `moss.prefix=${this.cfg.namePrefix}`] } });
      const out: ServedVersion[] = [];
      for (const c of list) {
        const info = await this.inspectIfExists(c.Id);
        if (info) out.push(served(info));
      }
      return out.sort((a, b) => b.created.localeCompare(a.created));
    } catch (err) {
      throw this.engineError(err, `list the served versions of ${agent}`);
    }
  }

  async pruneVersions(agent: string, keep: number, spare: readonly string[]): Promise<string[]> {
    const removed: string[] = [];
    let kept = 0;
    for (const v of await this.servedVersions(agent)) {
      if (spare.includes(v.container) || v.running) continue;
      if (kept++ < keep) continue;
      try {
        await this.removeIfExists(v.container);
      } catch (err) {
        throw this.engineError(err, `remove ${v.container}`);
      }
      removed.push(v.container);
    }
    return removed;
  }

  async saveState(container: string, stateDir: string): Promise<Buffer> {
    checkStateDir(stateDir);
    try {
      const stream = await this.docker.getContainer(container).getArchive({ path: stateDir });
      const chunks: Buffer[] = [];
      for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
      return Buffer.concat(chunks);
    } catch (err) {
      throw this.engineError(err, `archive ${stateDir} of ${container}`);
    }
  }

  async restoreState(agent: string, stateDir: string, tar: Buffer): Promise<void> {
    checkStateDir(stateDir);
    // The archive's one top entry is the directory's own name: the volume is mounted under that name in a helper. The
    // saved files go in first, over what is there (owners and modes kept), then what the snapshot did not hold is
    // removed (node: the base image has no shell) — a version still running never finds its directory empty.
    const name = stateDir.split("/").filter(Boolean).at(-1)!;
    const at = `/moss-restore/${name}`;
    const keep = tarNames(tar).filter((n) => n === name || n.startsWith(`${name}/`)).map((n) => n.slice(name.length + 1)).filter(Boolean);
    const prune = [
      'const fs=require("fs"),path=require("path");',
      `const root=${JSON.stringify(at)},keep=new Set(JSON.parse(process.env.KEEP));`,
      "const walk=(rel)=>{for(const e of fs.readdirSync(path.join(root,rel),{withFileTypes:true})){const r=rel?rel+'/'+e.name:e.name;",
      "if(!keep.has(r)){fs.rmSync(path.join(root,r),{recursive:true,force:true});continue}if(e.isDirectory())walk(r)}};walk('')",
    ].join("");
    let helper: Docker.Container | undefined;
    try {
      helper = await this.docker.createContainer({
        Image: BASE_IMAGE,
        Entrypoint: ["node", "-e", prune],
        Env: [`KEEP=${JSON.stringify(keep)}`],
        Labels: { "moss.agent": agent, "moss.role": "state-restore", "moss.prefix": this.cfg.namePrefix },
        HostConfig: { NetworkMode: "none", Binds: [`${this.stateVolume(agent)}:${at}`] },
      });
      await helper.putArchive(tar, { path: "/moss-restore" });
      await helper.start();
      const r = (await helper.wait()) as { StatusCode: number };
      if (r.StatusCode !== 0) throw new Error(`removing what the saved state did not hold exited ${r.StatusCode}`);
    } catch (err) {
      throw this.engineError(err, `restore the state of ${agent}`);
    } finally {
      await helper?.remove({ force: true }).catch(() => undefined);
    }
  }

  /** Name of a version's container behind the gateway. */
  private servedName(agent: string, version: string): string {
    checkNamePart("agent", agent);
    checkNamePart("version", version);
    return `${this.cfg.namePrefix}-serve-${agent}-${version.slice(0, 12)}`;
  }

  /** Name of the volume holding an agent's live state. */
  private stateVolume(agent: string): string {
    return `${this.cfg.namePrefix}-state-${agent}`;
  }

  /** Puts prev back as live and starts it; says whether that worked. */
  private async restoreLive(n: { live: string; prev: string }, image: string): Promise<PreviousVersionOutcome> {
    try {
      const live = await this.inspectIfExists(n.live);
      if (!live) await this.docker.getContainer(n.prev).rename({ name: n.live });
      else if (imageName(live) !== image) return "not-restored";
      await this.docker.getContainer(n.live).start();
      return "restored";
    } catch (err) {
      return statusCodeOf(err) === 304 ? "restored" : "not-restored";
    }
  }

  private async inspectIfExists(name: string): Promise<Docker.ContainerInspectInfo | undefined> {
    try {
      return await this.docker.getContainer(name).inspect();
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  private async removeIfExists(name: string): Promise<void> {
    try {
      await this.docker.getContainer(name).remove({ force: true });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  private async stopIfRunning(name: string): Promise<void> {
    try {
      await this.docker.getContainer(name).stop({ t: this.cfg.liveStopTimeoutSeconds });
    } catch (err) {
      // 304: already stopped; 404: gone.
      if (statusCodeOf(err) !== 304 && !isNotFound(err)) throw err;
    }
  }

  /** Helpers below throw raw dockerode errors; public methods wrap them. */
  private engineError(err: unknown, operation: string): RuntimeError {
    return toRuntimeError(err, operation, this.cfg.socketPath);
  }

  private locked<T>(agent: string, fn: () => Promise<T>): Promise<T> {
    const prior = this.locks.get(agent) ?? Promise.resolve();
    const run = prior.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(agent, tail);
    void tail.then(() => {
      if (this.locks.get(agent) === tail) this.locks.delete(agent);
    });
    return run;
  }
}

function retryable(err: unknown): boolean {
  return err instanceof RuntimeError ? err.retryable : isRetryableDockerError(err);
}

/** A state directory that can be archived and restored whole: absolute, and not the root. */
function checkStateDir(stateDir: string): void {
  if (!stateDir.startsWith("/") || stateDir === "/") throw new InvalidSpecError("stateDir", `${stateDir} must be an absolute directory other than /`);
}

/** What a served version's container says of itself. */
function served(info: Docker.ContainerInspectInfo): ServedVersion {
  const nets = Object.values(info.NetworkSettings?.Networks ?? {});
  const ip = info.State.Running ? (nets.find((n) => n.IPAddress)?.IPAddress ?? "") : "";
  const port = info.Config.Labels?.["moss.port"] ?? "";
  return {
    container: info.Name.replace(/^\//, ""),
    image: imageName(info),
    version: info.Config.Labels?.["moss.version"] ?? "",
    running: info.State.Running,
    ip,
    upstream: ip && port ? `http://${ip}:${port}` : "",
    created: info.Created,
  };
}

/** The image a container runs, by the name it was deployed under (`moss.image`), else as the engine knows it. */
function imageName(c: Docker.ContainerInspectInfo): string {
  return c.Config.Labels?.["moss.image"] ?? c.Config.Image;
}
