import type Docker from "dockerode";
import { buildImage } from "./build";
import { resolveConfig } from "./config";
import { createDockerClient, isNotFound, statusCodeOf, toRuntimeError } from "./docker";
import { ownerIsGone } from "./isolation";
import { BaseImageMissingError, DockerUnavailableError } from "./errors";
import { LiveContainers } from "./live";
import { PodPool, POOLED_ROLE, SidecarPool } from "./pool";
import { discardWarmPod, loadDriver, makeWarmPod, podEligible, podShape, runTrial, type TrialPools } from "./trial";
import { BASE_IMAGE, type Runtime, type RuntimeConfig } from "./types";

/**
 * A Runtime backed by the Docker engine at `cfg.socketPath`. Nothing is contacted until a method
 * is called; `ping()` is the cheap way to check the engine and the base image up front.
 */
export function createRuntime(cfg: RuntimeConfig = {}): Runtime {
  const config = resolveConfig(cfg);
  const docker: Docker = createDockerClient(config.socketPath);
  const live = new LiveContainers(docker, config);
  const sidecars = new SidecarPool(docker, config, loadDriver);
  const pods = new PodPool(config, (pod) => discardWarmPod(docker, pod));
  // With a pool, trials hand back their result first and their pods go behind them; close() waits for those.
  const teardowns = new Set<Promise<void>>();
  const pools: TrialPools = {
    sidecars,
    pods,
    ...(config.trialPoolSize > 0
      ? {
          defer: (t: Promise<void>) => {
            const p = t.catch(() => undefined).finally(() => teardowns.delete(p));
            teardowns.add(p);
          },
        }
      : {}),
  };
  const idle = async () => {
    while (teardowns.size) await Promise.all(teardowns);
  };

  return {
    async ping(opts = {}) {
      try {
        await docker.ping();
      } catch (err) {
        throw new DockerUnavailableError(config.socketPath, { cause: err });
      }
      if (opts.baseImage === false) return;
      try {
        await docker.getImage(BASE_IMAGE).inspect();
      } catch (err) {
        if (isNotFound(err)) throw new BaseImageMissingError(BASE_IMAGE, { cause: err });
        throw toRuntimeError(err, "image inspect", config.socketPath);
      }
    },
    buildImage: (opts) => buildImage(docker, config, opts),
    async imageExists(tag) {
      try {
        await docker.getImage(tag).inspect();
        return true;
      } catch (err) {
        if (isNotFound(err)) return false;
        throw toRuntimeError(err, "image inspect", config.socketPath);
      }
    },
    runTrial: (spec) => runTrial(docker, config, spec, pools),
    async warmTrials(like) {
      if (!like || !podEligible(like) || config.trialPoolSize === 0) return sidecars.fill();
      let info: Docker.ImageInspectInfo;
      try {
        info = await docker.getImage(like.image).inspect();
      } catch {
        // No such image (yet): the trial itself says so.
        return 0;
      }
      // Inspected once: every pod of this shape is of this image (its id is in the key).
      return pods.want(podShape(info, like).key, () => makeWarmPod(docker, config, info, like, sidecars));
    },
    idle,
    async close() {
      await pods.close();
      await sidecars.close();
      await idle();
    },
    deployLive: (spec) => live.deployLive(spec),
    rollbackLive: (agent) => live.rollbackLive(agent),
    liveStatus: (agent) => live.liveStatus(agent),
    liveNetwork: () => live.liveNetwork(),
    serveVersion: (spec) => live.serveVersion(spec),
    stopVersion: (container) => live.stopVersion(container),
    resumeVersion: (container) => live.resumeVersion(container),
    saveState: (container, stateDir) => live.saveState(container, stateDir),
    restoreState: (agent, stateDir, tar) => live.restoreState(agent, stateDir, tar),
    versionStatus: (container) => live.versionStatus(container),
    servedVersions: (agent) => live.servedVersions(agent),
    pruneVersions: (agent, keep, spare) => live.pruneVersions(agent, keep, spare),
    removeAgent: (agent, opts) => live.removeAgent(agent, opts),
    async removeStaleTrials(olderThanMs) {
      const cutoff = Math.floor((Date.now() - olderThanMs) / 1000);
      const filters = { label: ["moss.role=trial", `moss.prefix=${config.namePrefix}`] };
      const stale = (labels: Record<string, string> | undefined, createdSeconds: number) => ownerIsGone(labels?.["moss.owner"]) || createdSeconds < cutoff;
      const pooled = await docker.listContainers({ all: true, filters: { label: [`moss.role=${POOLED_ROLE}`, `moss.prefix=${config.namePrefix}`] } });
      const containers = [...(await docker.listContainers({ all: true, filters })), ...pooled];
      let removed = 0;
      // A pooled sidecar may idle for hours in a live replica: only its owner's death makes it stale.
      const isStale = (x: Docker.ContainerInfo) => (x.Labels["moss.role"] === POOLED_ROLE ? ownerIsGone(x.Labels["moss.owner"]) : stale(x.Labels, x.Created));
      for (const c of containers.filter(isStale)) {
        await docker
          .getContainer(c.Id)
          .remove({ force: true, v: true })
          .then(() => removed++)
          .catch((err: unknown) => {
            if (!isNotFound(err)) throw toRuntimeError(err, "remove stale trial", config.socketPath);
          });
      }
      const { Volumes } = await docker.listVolumes({ filters });
      // A warm pod's volumes, like its sidecar, are stale only when their owner is gone.
      const { Volumes: pooledVolumes } = await docker.listVolumes({ filters: { label: [`moss.role=${POOLED_ROLE}`, `moss.prefix=${config.namePrefix}`] } });
      for (const v of [...(Volumes ?? []), ...(pooledVolumes ?? [])]) {
        const created = Math.floor(Date.parse((v as { CreatedAt?: string }).CreatedAt ?? "") / 1000);
        const gone = v.Labels?.["moss.role"] === POOLED_ROLE ? ownerIsGone(v.Labels["moss.owner"]) : stale(v.Labels ?? undefined, Number.isNaN(created) ? 0 : created);
        if (!gone) continue;
        // 409: still in use by a container not yet gone; the next sweep takes it.
        await docker.getVolume(v.Name).remove().catch((err: unknown) => {
          if (!isNotFound(err) && statusCodeOf(err) !== 409) throw toRuntimeError(err, "remove stale trial volume", config.socketPath);
        });
      }
      return removed;
    },
  };
}
