import { AuditVerifyReport } from "@moss/contracts";
import { operatorGet, type Command } from "../shared";

/** `moss audit verify`: the auditor recomputes the log's chain and holds it to every signed checkpoint and segment. */
export const audit: Command = {
  name: "audit",
  help: "  audit verify             recompute the audit log's chain and check it against its signed checkpoints and exported segments",
  options: { json: { type: "boolean" } },
  async run({ args, values, config }) {
    if (args[0] !== "verify" || args.length !== 1) throw new Error("usage: moss audit verify");
    const r = AuditVerifyReport.parse(await operatorGet(config(), "/v1/audit/verify"));
    if (values["json"]) console.log(JSON.stringify(r, null, 2));
    else if (r.ok) {
      const git = r.git?.copies ? `; ${r.git.copies} checkpoint(s) match their copies in git (refs/notes/moss-audit)` : "";
      const streams = r.stream ? `; the newest ${r.stream.compared} match their streams' own copies${r.stream.aged ? ` (${r.stream.aged} aged out of the streams)` : ""}` : "";
      console.log(`audit log intact: ${r.records} record(s), held to ${r.checkpoints} checkpoint(s)${r.unsigned ? ` (${r.unsigned} unsigned: no rewriter.signing.key was set when they were made)` : ""}${git}${streams}`);
    }
    else {
      console.log(`audit log BROKEN at record ${r.brokenAt}: ${r.why}`);
      if (r.contradicts) console.log(`  it contradicts the checkpoint at record ${r.contradicts.seq} (made ${r.contradicts.at}): ${r.contradicts.why}`);
    }
    return r.ok ? 0 : 1;
  },
};
