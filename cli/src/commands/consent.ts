import { operatorPost, type Command } from "../shared";

/**
 * `moss approve` and `moss reject`: an operator's decision on a batch, through the operator API, which
 * records the operator its token authenticates — there is no `--by`.
 */
function consent(decision: "approve" | "reject"): Command {
  return {
    name: decision,
    help:
      decision === "approve"
        ? "  approve BATCH [--reason TEXT]     consent to promote a batch that passed replay (as the operator of your token)"
        : "  reject BATCH --reason TEXT        refuse it; it is never promoted",
    options: { by: { type: "string" }, reason: { type: "string" } },
    async run({ args, values, config }) {
      const [batch] = args;
      if (!batch) throw new Error(`usage: moss ${decision} BATCH${decision === "reject" ? " --reason TEXT" : " [--reason TEXT]"}`);
      if (values["by"] !== undefined) throw new Error(`moss ${decision} has no --by any more: the operator API records the operator your token names (MOSS_OPERATOR_TOKEN, or \`moss operator add NAME\`)`);
      if (decision === "reject" && !values["reason"]) throw new Error("moss reject needs --reason TEXT (it goes into the audit trail)");
      const a = await operatorPost(config(), `/v1/batches/${encodeURIComponent(batch)}/${decision}`, values["reason"] ? { reason: values["reason"] } : {});
      console.log(`${decision === "approve" ? "approved" : "rejected"} ${batch} as ${String(a["by"])}; the promoter acts on it`);
      return 0;
    },
  };
}

export const approve = consent("approve");
export const reject = consent("reject");
