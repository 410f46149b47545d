import { StatusReport } from "@moss/contracts";
import { operatorGet, type Command } from "../shared";

export const status: Command = {
  name: "status",
  help: "  status                   services (as moss up supervises them), live deployments, batches by state",
  options: { json: { type: "boolean" } },
  async run({ values, config }) {
    const r = StatusReport.parse(await operatorGet(config(), "/v1/status"));
    if (values["json"]) {
      console.log(JSON.stringify(r, null, 2));
      return 0;
    }
    for (const s of r.services) {
      const exit = s.lastExit ? `; last died ${s.lastExit.at} (${s.lastExit.signal ?? `exit ${s.lastExit.code}`})` : "";
      console.log(`service ${s.name} on ${s.host}: ${s.state}${s.pid ? ` (pid ${s.pid})` : ""} since ${s.since}, ${s.restarts} restart(s)${exit}`);
    }
    for (const d of r.deployments) {
      console.log(`${d.agent}: ${d.image} (${d.version.slice(0, 12)})${d.batchId ? ` from batch ${d.batchId}` : ""}${d.previous ? `; previous ${d.previous.image}` : ""}`);
    }
    const states = Object.entries(r.batches);
    console.log(states.length ? `batches: ${states.map(([s, n]) => `${n} ${s}`).join(", ")} (\`moss batches --state S\` lists them)` : "no batches yet");
    return 0;
  },
};
