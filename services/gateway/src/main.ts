// Gateway: each HTTP agent's public address, following its route on the bus. Wiring only.
import { Buckets } from "@moss/contracts";
import { runService } from "@moss/lifecycle";
import { startGateway } from "./gateway";

await runService({
  name: "gateway",
  env: process.env,
  async start({ config, log, bus }) {
    const agents = Object.entries(config.agents)
      .filter(([, a]) => a.serve === "gateway")
      .map(([name, a]) => ({ name, port: a.livePort }));
    if (agents.length === 0) log.warn("no agent is served through the gateway (agents.<name>.serve); it serves nothing");
    const gw = await startGateway({ ...config.gateway, agents, routes: await bus.kv(Buckets.routes), stats: await bus.kv(Buckets.gatewayStats), log });
    return { consumers: [], onStop: () => gw.close() };
  },
});
