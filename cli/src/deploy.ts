import { createBus, kvUpdate } from "@moss/bus";
import { Buckets, Deployment } from "@moss/contracts";
import type { LoadedConfig } from "@moss/config";
import { createRuntime } from "@moss/runtime";
import { simpleGit } from "simple-git";

/**
 * `moss deploy <agent> [ref]`: builds the agent's image from a commit of its repo and makes it the live
 * version (the first deployment, or a manual one). Promotions after that are the promoter's.
 */
export async function deployAgent(config: Readonly<LoadedConfig>, agent: string, ref = "HEAD"): Promise<{ image: string; commit: string; container: string }> {
  const a = config.agents[agent];
  if (!a) throw new Error(`agent '${agent}' is not in the Moss config; add agents.${agent}.repo`);
  const commit = (await simpleGit(a.repo).raw(["rev-parse", "--verify", `${ref}^{commit}`])).trim();
  const runtime = createRuntime();
  await runtime.ping();
  const tag = `moss/${agent}:${commit.slice(0, 12)}`;
  const { image } = await runtime.buildImage({ repoDir: a.repo, commit, tag, labels: { "moss.agent": agent } });
  const env = { ...a.env, PORT: String(a.livePort), AGENT_NAME: agent, MOSS_NATS_URL: config.nats.url, MOSS_AGENT_VERSION: commit };
  const { container } = await runtime.deployLive({ agent, image, version: commit, env, stateDir: a.stateDir });
  await waitHealthy(`http://127.0.0.1:${a.livePort}${a.healthPath}`, 20_000);
  const bus = await createBus({ url: config.nats.url, name: "moss-cli" });
  try {
    await bus.provision();
    await kvUpdate(
      await bus.kv(Buckets.deployments),
      agent,
      Deployment,
      (cur) => ({ agent, image, version: commit, container, previous: cur ? { image: cur.image, version: cur.version, container: cur.container } : undefined, updatedAt: new Date().toISOString() }),
      Buckets.deployments,
    );
  } finally {
    await bus.close();
  }
  return { image, commit, container };
}

export async function waitHealthy(url: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < end) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      if (res.ok) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not become healthy within ${timeoutMs} ms (last: ${last})`);
}
