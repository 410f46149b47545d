import { deploymentStore, imageTag, readGatewayStats, routeStore, waitDrained, withLastGood } from "@moss/batch";
import { createBus } from "@moss/bus";
import { knownAgent, type LoadedConfig } from "@moss/config";
import { ADMIN, Buckets } from "@moss/contracts";
import { busCredential, liveEnv } from "@moss/lifecycle";
import { resolveCommit } from "@moss/git";
import { createRuntime, httpProbe } from "@moss/runtime";

/**
 * `moss deploy <agent> [ref]`: builds the agent's image from a commit of its repo and makes it the live
 * version (the first deployment, or a manual one). Promotions after that are the promoter's. Behind the gateway the
 * new version starts next to the old one and the route moves once it is healthy: no request fails.
 */
export async function deployAgent(config: Readonly<LoadedConfig>, agent: string, ref = "HEAD"): Promise<{ image: string; commit: string; container: string }> {
  const a = knownAgent(config, agent).entry;
  const commit = await resolveCommit(a.repo, ref);
  const runtime = createRuntime();
  // The engine, not moss/node-base: an agent in any language deploys from its own base.
  await runtime.ping({ baseImage: false });
  const { image } = await runtime.buildImage({ repoDir: a.repo, commit, tag: imageTag(agent, commit), labels: { "moss.agent": agent } });
  const env = liveEnv(config, agent, commit);
  const bus = await createBus({ url: config.nats.url, name: "moss-cli", credential: busCredential(config, ADMIN), replicas: config.nats.replicas });
  let container: string;
  try {
    await bus.provision();
    let previous: string | undefined;
    if (a.serve === "gateway") {
      // Next to the version the gateway sends traffic to now; it takes traffic only once healthy, by one route write.
      const routes = routeStore(await bus.kv(Buckets.routes));
      const before = (await routes.get(agent))?.targets[0];
      const served = await runtime.serveVersion({ agent, image, version: commit, env, stateDir: a.stateDir, port: a.port });
      container = served.container;
      await waitHealthy(`${served.upstream}${a.healthPath}`, 20_000, agent);
      await routes.point(agent, { version: commit, image, container, upstream: served.upstream }, `moss deploy ${commit.slice(0, 12)}`);
      if (before && before.container !== container) {
        // The old version finishes what it has in flight, then stops, kept for a rollback.
        const stats = await bus.kv(Buckets.gatewayStats);
        await waitDrained(() => readGatewayStats(stats, agent), before.version, config.promoter.drainMs, config.gateway.statsIntervalMs);
        await runtime.stopVersion(before.container);
        previous = before.container;
      }
    } else {
      container = (await runtime.deployLive({ agent, image, version: commit, env, stateDir: a.stateDir })).container;
      await waitHealthy(`http://127.0.0.1:${a.livePort}${a.healthPath}`, 20_000, agent);
    }
    await deploymentStore(await bus.kv(Buckets.deployments)).record(agent, (cur) => ({
      agent,
      image,
      version: commit,
      container,
      previous: cur ? { image: cur.image, version: cur.version, container: previous ?? cur.container } : undefined,
      updatedAt: new Date().toISOString(),
      // An operator's own choice, and it answered its health check: a version to come back to.
      lastGood: withLastGood(cur?.lastGood, { version: commit, image, container, at: new Date().toISOString() }, config.promoter.keepVersions),
    }));
  } finally {
    await bus.close();
  }
  return { image, commit, container };
}

/** Waits for the agent's health endpoint; a 404 ends the wait at once (the path is wrong; waiting cannot help). */
export async function waitHealthy(url: string, timeoutMs: number, agent?: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  const probe = httpProbe(url, 1_000, agent);
  let last = "";
  while (Date.now() < end) {
    const r = await probe();
    if (r.healthy) return;
    last = r.detail;
    if (last.includes("answered 404")) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the agent did not become healthy within ${timeoutMs} ms: ${last}`);
}
