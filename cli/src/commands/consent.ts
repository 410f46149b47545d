import { operatorPost, type Command } from "../shared";

/**
 * `moss approve` and `moss reject`: an operator's decision on a batch, through the operator API, which
 * records the operator its token authenticates — there is no `--by` — and answers with what became of the batch.
 * Exit 0: done as asked; 1: the batch ended otherwise first; 2: the promoter has not acted on it yet.
 */
function consent(decision: "approve" | "reject"): Command {
  return {
    name: decision,
    help:
      decision === "approve"
        ? "  approve BATCH [--reason TEXT]     consent to promote a batch that passed replay (as the operator of your token)"
        : "  reject BATCH --reason TEXT        refuse it from any state it can still leave; it is never promoted (a baking one is rolled back)",
    options: { by: { type: "string" }, reason: { type: "string" }, json: { type: "boolean" } },
    async run({ args, values, config }) {
      const [batch] = args;
      if (!batch) throw new Error(`usage: moss ${decision} BATCH${decision === "reject" ? " --reason TEXT" : " [--reason TEXT]"}`);
      if (values["by"] !== undefined) throw new Error(`moss ${decision} has no --by any more: the operator API records the operator your token names (MOSS_OPERATOR_TOKEN, or \`moss operator add NAME\`)`);
      if (decision === "reject" && !values["reason"]) throw new Error("moss reject needs --reason TEXT (it goes into the audit trail)");
      const a = await operatorPost(config(), `/v1/batches/${encodeURIComponent(batch)}/${decision}`, values["reason"] ? { reason: values["reason"] } : {});
      if (values["json"]) console.log(JSON.stringify(a, null, 2));
      const { by, from, state, reason } = a as { by: string; from: string; state: string; reason?: string };
      // The real outcome, as the batch's record says it once the promoter acted (or that it has not yet).
      if (!a["settled"]) {
        if (!values["json"]) console.log(`${decision === "approve" ? "approval" : "reject"} of ${batch} sent as ${by}, not acted on yet: ${String(a["message"])}`);
        return 2;
      }
      if (values["json"]) return decision === "approve" || state === "rejected" || state === "rolled-back" ? 0 : 1;
      if (decision === "approve") console.log(`approved ${batch} as ${by}: it is ${state}${reason ? ` (${reason})` : ""}`);
      else if (state === "rejected") console.log(`rejected ${batch} (it was ${from}) as ${by}: ${reason ?? ""}; whatever a stage was doing for it is dropped`);
      else if (state === "rolled-back") console.log(`${batch} was baking when you rejected it: rolled back (${reason ?? ""})`);
      else {
        console.error(`${batch} ended ${state} before the reject could act${reason ? ` (${reason})` : ""}; \`moss rollback AGENT\` puts the previous version back`);
        return 1;
      }
      return 0;
    },
  };
}

export const approve = consent("approve");
export const reject = consent("reject");
