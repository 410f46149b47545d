import { Messages, RollbackDone } from "@moss/contracts";
import { operatorPost, withBus, type Command } from "../shared";

/**
 * `moss rollback AGENT [--to VERSION]`: puts the agent back on the version before the live one (or a kept version),
 * through the operator API (no consent needed; the operator is recorded), then waits for the promoter to say it is done.
 */
export const rollback: Command = {
  name: "rollback",
  help: "  rollback AGENT [--to VERSION] [--reason TEXT]   put the agent back on its previous (or a kept) version now; no consent needed",
  options: { to: { type: "string" }, reason: { type: "string" }, "timeout-ms": { type: "string" } },
  async run({ args, values, config }) {
    const [agent] = args;
    if (!agent) throw new Error("usage: moss rollback AGENT [--to VERSION] [--reason TEXT]");
    const cfg = config();
    const timeoutMs = Number(values["timeout-ms"] ?? 60_000);
    return withBus(cfg, async (bus) => {
      let requestId = "";
      let settle: (d: RollbackDone) => void = () => undefined;
      const done = new Promise<RollbackDone>((r) => (settle = r));
      // Subscribed before asking, so the answer cannot pass by unseen.
      const sub = bus.nc.subscribe(Messages.rollbackDone.subject, {
        callback: (_err, m) => {
          const d = RollbackDone.safeParse(m.json());
          if (d.success && d.data.requestId === requestId) settle(d.data);
        },
      });
      try {
        const body: Record<string, string> = {};
        if (values["to"]) body["to"] = String(values["to"]);
        if (values["reason"]) body["reason"] = String(values["reason"]);
        const r = await operatorPost(cfg, `/v1/agents/${encodeURIComponent(agent)}/rollback`, body);
        requestId = String(r["id"]);
        console.log(`rollback of ${agent} asked as ${String(r["by"])} (live now: ${String(r["live"]).slice(0, 12)}); waiting for the promoter`);
        const d = await Promise.race([done, new Promise<undefined>((r) => setTimeout(() => r(undefined), timeoutMs))]);
        if (!d) throw new Error(`the promoter did not answer rollback ${requestId} within ${timeoutMs} ms: is it running (moss status)? It acts on the request when it comes back`);
        if (d.outcome === "refused") {
          console.error(`rollback refused: ${d.reason}`);
          return 1;
        }
        console.log(`${agent} rolled back${d.from ? ` from ${d.from.version.slice(0, 12)}` : ""} to ${d.to?.version.slice(0, 12)} (${d.to?.image}): ${d.reason}`);
        return 0;
      } finally {
        sub.unsubscribe();
      }
    });
  },
};
