import { Messages } from "@moss/contracts";
import { actor, withBus, type Command } from "../shared";

/** `moss approve` and `moss reject`: an operator's decision on a batch, published for the promoter (and the audit log). */
function consent(decision: "approve" | "reject"): Command {
  return {
    name: decision,
    help:
      decision === "approve"
        ? "  approve BATCH [--by NAME] [--reason TEXT]   consent to promote a batch that passed replay"
        : "  reject BATCH --reason TEXT [--by NAME]      refuse it; it is never promoted",
    options: { by: { type: "string" }, reason: { type: "string" } },
    async run({ args, values, config }) {
      const [batch] = args;
      if (!batch) throw new Error(`usage: moss ${decision} BATCH${decision === "reject" ? " --reason TEXT" : ""}`);
      if (decision === "reject" && !values["reason"]) throw new Error("moss reject needs --reason TEXT (it goes into the audit trail)");
      const by = actor(values);
      await withBus(config(), async (bus, { batches }) => {
        const rec = await batches.get(batch);
        if (!rec) throw new Error(`no batch ${batch}; list them with \`moss batches\``);
        if (decision === "approve" && rec.state !== "awaiting-approval") throw new Error(`batch ${batch} is ${rec.state}, not awaiting-approval; only a batch whose candidate passed replay can be approved`);
        await bus.publish(Messages.approval, { batchId: batch, decision, by, reason: (values["reason"] as string | undefined) ?? "" });
      });
      console.log(`${decision === "approve" ? "approved" : "rejected"} ${batch} as ${by}`);
      return 0;
    },
  };
}

export const approve = consent("approve");
export const reject = consent("reject");
