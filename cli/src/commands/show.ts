import type { BatchTimeline } from "@moss/contracts";
import { renderTimeline } from "../render";
import { operatorGet, type Command } from "../shared";

export const show: Command = {
  name: "show",
  help: "  show BATCH [--json] [--no-diff]   a batch's timeline: failures, diff, replay results, verdict, promotion",
  options: { json: { type: "boolean" }, "no-diff": { type: "boolean" } },
  async run({ args, values, config }) {
    const [batch] = args;
    if (!batch) throw new Error("usage: moss show BATCH");
    const t = (await operatorGet(config(), `/v1/batches/${encodeURIComponent(batch)}`)) as BatchTimeline;
    console.log(values["json"] ? JSON.stringify(t, null, 2) : renderTimeline(t, { diff: !values["no-diff"] }));
    return 0;
  },
};
