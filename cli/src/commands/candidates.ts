import { RejectedCandidate } from "@moss/contracts";
import { operatorGet, type Command } from "../shared";

export const candidates: Command = {
  name: "candidates",
  help: "  candidates AGENT        candidates that were not promoted (kept with their branch and the reason)",
  options: { json: { type: "boolean" } },
  async run({ args, values, config }) {
    const [agent] = args;
    if (!agent) throw new Error("usage: moss candidates AGENT");
    const v = await operatorGet(config(), `/v1/agents/${encodeURIComponent(agent)}/versions`);
    const rows = RejectedCandidate.array().parse(v["candidates"]);
    if (values["json"]) console.log(JSON.stringify(rows, null, 2));
    else for (const c of rows) console.log(`${c.at}  ${c.agent}  batch ${c.batchId} attempt ${c.attempt}  ${c.branch ?? "(no commit)"}  ${c.verdict}: ${c.reason}`);
    if (!rows.length) console.log("no rejected candidates");
    return 0;
  },
};
