import { withBus, type Command } from "../shared";

export const candidates: Command = {
  name: "candidates",
  help: "  candidates [AGENT]       candidates that were not promoted (kept with their branch and the reason)",
  options: { json: { type: "boolean" } },
  async run({ args, values, config }) {
    const [agent] = args;
    const rows = await withBus(config(), (_bus, stores) => stores.candidates.list(agent));
    if (values["json"]) console.log(JSON.stringify(rows, null, 2));
    else for (const c of rows) console.log(`${c.at}  ${c.agent}  batch ${c.batchId} attempt ${c.attempt}  ${c.branch ?? "(no commit)"}  ${c.verdict}: ${c.reason}`);
    if (!rows.length) console.log("no rejected candidates");
    return 0;
  },
};
