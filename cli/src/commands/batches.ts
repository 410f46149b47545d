import type { BatchSummary } from "@moss/contracts";
import { auditorGet, type Command } from "../shared";

export const batches: Command = {
  name: "batches",
  help: "  batches                  list batches and their state",
  options: { json: { type: "boolean" } },
  async run({ values, config }) {
    const body = (await auditorGet(config(), "/v1/batches")) as { batches: BatchSummary[] };
    if (values["json"]) console.log(JSON.stringify(body, null, 2));
    else for (const b of body.batches) console.log(`${b.batchId}  ${(b.agent ?? "?").padEnd(12)} ${String(b.count ?? "?").padStart(5)} failures  ${b.verdict.padEnd(18)} ${b.lastAt}`);
    return 0;
  },
};
