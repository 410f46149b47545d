import { withBus, type Command } from "../shared";

export const status: Command = {
  name: "status",
  help: "  status                   live deployments",
  async run({ config }) {
    await withBus(config(), async (_bus, { deployments, batches }) => {
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
