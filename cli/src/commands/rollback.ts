import type { LoadedConfig } from "@moss/config";
import { Messages, RollbackDone } from "@moss/contracts";
import { operatorPost, withBus, type Command } from "../shared";

/**
 * `moss rollback AGENT [--to VERSION]`: puts the agent back on the version before the live one (or a kept version),
 * through the operator API (no consent needed; the operator is recorded), then waits for the promoter to say it is done.
 */
/**
 * Asks the operator API to roll `agent` back and waits for the promoter's answer (`moss.rollback.done.v1`). Throws when
 * the API refuses or the promoter does not answer within `timeoutMs`.
 */
export async function requestRollback(cfg: Readonly<LoadedConfig>, agent: string, o: { to?: string; reason?: string; timeoutMs?: number } = {}): Promise<RollbackDone & { by: string }> {
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
      if (o.to) body["to"] = o.to;
      if (o.reason) body["reason"] = o.reason;
      const r = await operatorPost(cfg, `/v1/agents/${encodeURIComponent(agent)}/rollback`, body);
      requestId = String(r["id"]);
      const timeoutMs = o.timeoutMs ?? 60_000;
      const d = await Promise.race([done, new Promise<undefined>((res) => setTimeout(() => res(undefined), timeoutMs))]);
      if (!d) throw new Error(`the promoter did not answer rollback ${requestId} within ${timeoutMs} ms: is it running (moss status)? It acts on the request when it comes back`);
      return d;
    } finally {
      sub.unsubscribe();
    }
  });
}

export const rollback: Command = {
  name: "rollback",
  help: "  rollback AGENT [--to VERSION] [--reason TEXT]   put the agent back on its last-known-good (or a kept) version now; no consent needed",
  options: { to: { type: "string" }, reason: { type: "string" }, "timeout-ms": { type: "string" } },
  async run({ args, values, config }) {
    const [agent] = args;
    if (!agent) throw new Error("usage: moss rollback AGENT [--to VERSION] [--reason TEXT]");
    console.log(`asking the promoter to roll ${agent} back${values["to"] ? ` to ${String(values["to"])}` : ""}`);
    const d = await requestRollback(config(), agent, {
      ...(values["to"] ? { to: String(values["to"]) } : {}),
      ...(values["reason"] ? { reason: String(values["reason"]) } : {}),
      ...(values["timeout-ms"] ? { timeoutMs: Number(values["timeout-ms"]) } : {}),
    });
    if (d.outcome === "refused") {
      console.error(`rollback refused: ${d.reason}`);
      return 1;
    }
    console.log(`${agent} rolled back${d.from ? ` from ${d.from.version.slice(0, 12)}` : ""} to ${d.to?.version.slice(0, 12)} (${d.to?.image}) by ${d.by}: ${d.reason}`);
    return 0;
  },
};
