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
import { packTar } from "./tar";
import { BASE_IMAGE } from "./types";

/** The role label of a sidecar made for the pool (it keeps it in the trial that takes it). */
export const POOLED_ROLE = "trial-pool";

/** Where the driver lives in its container. */
export const DRIVER_DIR = "/moss";

/** A sidecar container as every trial gets it: Moss's node base image, nobody, no capabilities, bounded. */
export function sidecarConfig(cfg: ResolvedRuntimeConfig, id: string, networkMode: string, binds: string[], labels: Record<string, string>): Docker.ContainerCreateOptions {
  return {
    name: `${cfg.namePrefix}-trial-${id}-driver`,
    Image: BASE_IMAGE,
    Entrypoint: ["/usr/bin/node"],
    Cmd: [`${DRIVER_DIR}/driver.mjs`],
    User: "65534:65534",
    Labels: { ...labels, "moss.trial.sidecar": "1" },
    Tty: false,
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

export class SidecarPool {
  private readonly ready: Docker.Container[] = [];
  private filling = 0;
  private closed = false;

  constructor(
    private readonly docker: Docker,
    private readonly cfg: ResolvedRuntimeConfig,
    private readonly driver: () => Promise<Buffer>,
  ) {}

  /** A started sidecar waiting for its trial, if one is ready (the pool refills either way). */
  take(): Docker.Container | undefined {
    const c = this.ready.shift();
    this.fill();
    return c;
  }

  /** Starts making sidecars until `trialPoolSize` are ready or on their way. */
  fill(): void {
    while (!this.closed && this.ready.length + this.filling < this.cfg.trialPoolSize) {
      this.filling++;
      this.make()
        .then((c) => {
          if (this.closed) return void c.remove({ force: true }).catch(() => undefined);
          this.ready.push(c);
        })
        // An engine that cannot make one now: the next take makes a sidecar for itself, and asks again.
        .catch(() => undefined)
        .finally(() => this.filling--);
    }
  }

  /** Removes the pool's sidecars; none is made after. */
  async close(): Promise<void> {
    this.closed = true;
    const all = this.ready.splice(0);
    await Promise.all(all.map((c) => c.remove({ force: true }).catch(() => undefined)));
  }

  private async make(): Promise<Docker.Container> {
    const id = randomBytes(6).toString("hex");
    const labels = { "moss.role": POOLED_ROLE, "moss.prefix": this.cfg.namePrefix, "moss.trial": id, "moss.owner": TRIAL_OWNER, "moss.trial.pooled": "1" };
    const c = await this.docker.createContainer(sidecarConfig(this.cfg, id, "none", [], labels));
    try {
      await c.putArchive(
        await packTar([
          { type: "directory", name: "moss/", mode: 0o755 },
          { type: "file", name: "moss/driver.mjs", content: await this.driver(), mode: 0o644 },
        ]),
        { path: "/" },
      );
      const { seen } = await watchLines(this.docker, c, (l) => l.includes("[moss-driver]") && l.includes("pooled"), { ms: 10_000 });
      await c.start();
      if (!(await seen)) throw new Error("a pooled trial driver did not start within 10 s");
      return c;
    } catch (err) {
      await c.remove({ force: true }).catch(() => undefined);
      throw err;
    }
  }
}
