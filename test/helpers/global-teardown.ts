// After the whole run: the trial bridges tests made under their own random name prefixes. Each prefix's runtime
// makes its own `<prefix>-trials` network and keeps it (replicas share it); left behind, a few dozen test runs would
// use up the engine's address pools. The production prefix (`moss`) and any network still in use are left alone.
import Docker from "dockerode";

export async function teardown(): Promise<void> {
  const docker = new Docker();
  const nets = await docker.listNetworks({ filters: { label: ["moss.role=trial-network"] } }).catch(() => []);
  await Promise.all(
    nets
      .filter((n) => n.Labels?.["moss.prefix"] && n.Labels["moss.prefix"] !== "moss")
      .map((n) => docker.getNetwork(n.Id).remove().catch(() => undefined)),
  );
}
