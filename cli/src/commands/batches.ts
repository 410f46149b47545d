import { BatchList } from "@moss/contracts";
import { operatorGet, type Command } from "../shared";
import { paintState, table } from "../render";

export const batches: Command = {
  name: "batches",
  help: "  batches [--state S[,S]] [--agent A] [--fingerprint FP] [--limit N]   batches as they are now, newest first",
  options: { json: { type: "boolean" }, state: { type: "string" }, agent: { type: "string" }, fingerprint: { type: "string" }, limit: { type: "string" } },
  async run({ values, config }) {
    const q = new URLSearchParams();
    for (const k of ["state", "agent", "fingerprint", "limit"]) if (typeof values[k] === "string") q.set(k, values[k] as string);
    const body = BatchList.parse(await operatorGet(config(), `/v1/batches${q.size ? `?${q}` : ""}`));
    if (values["json"]) {
      console.log(JSON.stringify(body, null, 2));
      return 0;
    }
    if (!body.batches.length) {
      console.log(q.size ? "no batch matches" : "no batches yet");
      return 0;
    }
    const rows = body.batches.map((b) => [b.batchId, b.agent, b.state, String(b.count), String(b.attempt), b.updatedAt, b.fingerprint.slice(0, 60)]);
    for (const l of table(["BATCH", "AGENT", "STATE", "FAILURES", "ATTEMPT", "UPDATED", "FINGERPRINT"], rows, (col, cell) => (col === 2 ? paintState(cell) : cell))) console.log(l);
    if (body.total > body.batches.length) console.log(`(${body.batches.length} of ${body.total}; --limit N shows more)`);
    return 0;
  },
};
