/**
 * A warm pool of trial sidecars: Moss's driver containers, created and started ahead of any trial (they do not depend
 * on the candidate image), waiting with no network for the trial they will serve. A trial that takes one pays neither
 * the sidecar's create nor its start: it writes the trial in and says go. Only offline trials use the pool (a trial
 * with the network on, or forwarding through an egress proxy, needs a sidecar made for it). Refilled in the
 * background; every pooled sidecar carries its owner, so a replayer killed with its pool full leaves nothing the next
 * start does not sweep.
 */
import { randomBytes } from "node:crypto";
import type Docker from "dockerode";
import type { ResolvedRuntimeConfig } from "./config";
import { watchLines } from "./helper";
import { TRIAL_OWNER } from "./isolation";
import { BASE_IMAGE } from "./types";

/** The role label of a sidecar made for the pool (it keeps it in the trial that takes it). */
export const POOLED_ROLE = "trial-pool";

/**
 * A sidecar container as every trial gets it: Moss's node base image running the driver's code (`node -e`: nothing
 * to upload), nobody, no capabilities, bounded; its trial comes on stdin.
 */
export function sidecarConfig(cfg: ResolvedRuntimeConfig, id: string, driver: string, networkMode: string, binds: string[], labels: Record<string, string>): Docker.ContainerCreateOptions {
  return {
    name: `${cfg.namePrefix}-trial-${id}-driver`,
    Image: BASE_IMAGE,
    Entrypoint: ["/usr/bin/node"],
    Cmd: ["--input-type=module", "-e", driver],
    User: "65534:65534",
    Labels: { ...labels, "moss.trial.sidecar": "1" },
    Tty: false,
    OpenStdin: true,
    StdinOnce: true,
    AttachStdin: true,
    HostConfig: {
      NetworkMode: networkMode,
      Binds: binds,
      Memory: 128 * 2 ** 20,
      PidsLimit: 64,
      CapDrop: ["ALL"],
      SecurityOpt: ["no-new-privileges"],
      RestartPolicy: { Name: "no" },
    },
  };
}

/** A started sidecar and its stdin, where its trial goes. */
export interface Sidecar {
  container: Docker.Container;
  stdin: NodeJS.WritableStream;
}

/** Creates a sidecar and holds its stdin; not started. */
export async function createSidecar(docker: Docker, options: Docker.ContainerCreateOptions): Promise<Sidecar> {
  const container = await docker.createContainer(options);
  try {
    const stdin = (await container.attach({ stream: true, stdin: true, hijack: true })) as NodeJS.ReadWriteStream;
    return { container, stdin };
  } catch (err) {
    await container.remove({ force: true }).catch(() => undefined);
    throw err;
  }
}

/**
 * Starts making items while `more()` says so, each tracked in `making` until it is made and handed to `keep` (a failed
 * make is dropped: the pool asks again on its next take); resolves once all being made are done.
 */
async function topUp<T>(making: Set<Promise<void>>, more: () => boolean, make: () => Promise<T>, keep: (item: T) => Promise<void>): Promise<void> {
  while (more()) {
    const p: Promise<void> = make()
      .then(keep)
      .catch(() => undefined)
      .finally(() => making.delete(p));
    making.add(p);
  }
  await Promise.all(making);
}

export class SidecarPool {
  private readonly ready: Sidecar[] = [];
  private closed = false;

  constructor(
    private readonly docker: Docker,
    private readonly cfg: ResolvedRuntimeConfig,
    private readonly driver: () => Promise<Buffer>,
  ) {}

  private readonly making = new Set<Promise<void>>();

  /** A started sidecar waiting for its trial, if one is ready (the pool refills either way). */
  take(): Sidecar | undefined {
    const c = this.ready.shift();
    void this.fill();
    return c;
  }

  /** A started sidecar waiting for its trial: a ready one, or one made now. */
  async takeOrMake(): Promise<Sidecar> {
    return this.take() ?? (await this.make());
  }

  /**
   * Starts making sidecars until `trialPoolSize` are ready or on their way; resolves, once those being made are done,
   * with how many are ready.
   */
  async fill(): Promise<number> {
    // An engine that cannot make one now: the next take makes a sidecar for itself, and asks again.
    await topUp(this.making, () => !this.closed && this.ready.length + this.making.size < this.cfg.trialPoolSize, () => this.make(), async (c) => {
      if (this.closed) await c.container.remove({ force: true }).catch(() => undefined);
      else this.ready.push(c);
    });
    return this.ready.length;
  }

  /** Removes the pool's sidecars; none is made after. */
  async close(): Promise<void> {
    this.closed = true;
    const all = this.ready.splice(0);
    await Promise.all(all.map((c) => c.container.remove({ force: true }).catch(() => undefined)));
  }

  private async make(): Promise<Sidecar> {
    if (this.closed) throw new Error("the trial pool is closed");
    const id = randomBytes(6).toString("hex");
    const labels = { "moss.role": POOLED_ROLE, "moss.prefix": this.cfg.namePrefix, "moss.trial": id, "moss.owner": TRIAL_OWNER, "moss.trial.pooled": "1" };
    const sidecar = await createSidecar(this.docker, sidecarConfig(this.cfg, id, (await this.driver()).toString("utf8"), "none", [], labels));
    const c = sidecar.container;
    try {
      const { seen } = await watchLines(this.docker, c, (l) => l.includes("[moss-driver]") && l.includes("waiting for a trial"), { ms: 10_000 });
      await c.start();
      if (!(await seen)) throw new Error("a pooled trial driver did not start within 10 s");
      return sidecar;
    } catch (err) {
      await c.remove({ force: true }).catch(() => undefined);
      throw err;
    }
  }
}

/**
 * A pod made ahead for trials of one candidate image: a started sidecar waiting for its trial, and the agent's out and
 * state volumes, created and staged (owned by the image's user) — all a trial needs but its agent container, which
 * carries the trial's own environment and so is created with it. With a snapshot to come, the staging container stays
 * (the snapshot goes in through it). Everything carries the pool's role and its owner, like a pooled sidecar.
 */
export interface WarmPod {
  /** What the pod fits: image id, the agent's user, the state directory, whether a snapshot is to come. */
  key: string;
  id: string;
  sidecar: Sidecar;
  outVolume: string;
  stateVolume?: string;
  /** Kept while a snapshot is still to come. */
  stage?: Docker.Container;
}

/**
 * Warm pods for the shape of trial a replica is running now (a candidate's image): when a trial of that shape takes
 * one, another is made behind it, so the next trial finds its pod ready. Asking for a new shape discards the old
 * shape's pods (a new candidate supersedes the last). At most `trialPoolSize` pods.
 */
export class PodPool {
  private ready: WarmPod[] = [];
  private closed = false;
  private wanted?: { key: string; make: () => Promise<WarmPod> };
  private readonly making = new Set<Promise<void>>();

  constructor(
    private readonly cfg: ResolvedRuntimeConfig,
    private readonly discard: (pod: WarmPod) => Promise<void>,
  ) {}

  /** Pods of this shape from now on (the others go); resolves, once those being made are done, with how many are ready. */
  async want(key: string, make: () => Promise<WarmPod>): Promise<number> {
    if (this.wanted?.key !== key) {
      this.wanted = { key, make };
      const old = this.ready.filter((p) => p.key !== key);
      this.ready = this.ready.filter((p) => p.key === key);
      await Promise.all(old.map((p) => this.discard(p)));
    }
    return this.fill();
  }

  /** A ready pod of this shape, if there is one (another is made behind it). */
  take(key: string): WarmPod | undefined {
    const i = this.ready.findIndex((p) => p.key === key);
    const pod = i < 0 ? undefined : this.ready.splice(i, 1)[0];
    if (pod) void this.fill();
    return pod;
  }

  private async fill(): Promise<number> {
    const wanted = this.wanted;
    // An engine that cannot make one now: the next trial makes its own pod, and asks again.
    if (wanted) {
      await topUp(this.making, () => !this.closed && this.ready.length + this.making.size < this.cfg.trialPoolSize, wanted.make, async (pod) => {
        if (this.closed || this.wanted?.key !== pod.key) await this.discard(pod);
        else this.ready.push(pod);
      });
    }
    return this.ready.filter((p) => p.key === wanted?.key).length;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.making);
    await Promise.all(this.ready.splice(0).map((p) => this.discard(p)));
  }
}
