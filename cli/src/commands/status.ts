import { kvValues } from "@moss/bus";
import { Buckets, ServiceStatus } from "@moss/contracts";
import { withBus, type Command } from "../shared";

export const status: Command = {
  name: "status",
  help: "  status                   services (as moss up supervises them), live deployments, batches",
  async run({ config }) {
    await withBus(config(), async (bus, { deployments, batches }) => {
      for (const { value: s } of await kvValues(await bus.kv(Buckets.services), ServiceStatus)) {
        const exit = s.lastExit ? `; last died ${s.lastExit.at} (${s.lastExit.signal ?? `exit ${s.lastExit.code}`})` : "";
        console.log(`service ${s.name} on ${s.host}: ${s.state}${s.pid ? ` (pid ${s.pid})` : ""} since ${s.since}, ${s.restarts} restart(s)${exit}`);
      }
      for (const d of await deployments.list()) {
        console.log(`${d.agent}: ${d.image} (${d.version.slice(0, 12)})${d.batchId ? ` from batch ${d.batchId}` : ""}${d.previous ? `; previous ${d.previous.image}` : ""}`);
      }
      for (const b of await batches.list()) {
        console.log(`  batch ${b.batchId} ${b.agent} ${b.state} (${b.count} failures, attempt ${b.attempt})${b.reason ? `: ${b.reason}` : ""}`);
      }
    });
    return 0;
  },
};
