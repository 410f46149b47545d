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

export class SidecarPool {
  private readonly ready: Sidecar[] = [];
  private filling = 0;
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

  /**
   * Starts making sidecars until `trialPoolSize` are ready or on their way; resolves, once those being made are done,
   * with how many are ready.
   */
  async fill(): Promise<number> {
    while (!this.closed && this.ready.length + this.filling < this.cfg.trialPoolSize) {
      this.filling++;
      const p: Promise<void> = this.make()
        .then((c) => {
          if (this.closed) return void c.container.remove({ force: true }).catch(() => undefined);
          this.ready.push(c);
        })
        // An engine that cannot make one now: the next take makes a sidecar for itself, and asks again.
        .catch(() => undefined)
        .finally(() => {
          this.filling--;
          this.making.delete(p);
        });
      this.making.add(p);
    }
    await Promise.all(this.making);
    return this.ready.length;
  }

  /** Removes the pool's sidecars; none is made after. */
  async close(): Promise<void> {
    this.closed = true;
    const all = this.ready.splice(0);
    await Promise.all(all.map((c) => c.container.remove({ force: true }).catch(() => undefined)));
  }

  private async make(): Promise<Sidecar> {
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
