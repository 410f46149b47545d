import type { LoadedConfig } from "@moss/config";
import { RollbackDone } from "@moss/contracts";
import { operatorPost, type Command } from "../shared";

/**
 * `moss rollback AGENT [--to VERSION]`: puts the agent back on the version before the live one (or a kept version),
 * through the operator API (no consent needed; the operator is recorded), which answers with the promoter's outcome.
 * Throws when the API refuses, or the promoter does not answer within `timeoutMs`.
 */
export async function requestRollback(cfg: Readonly<LoadedConfig>, agent: string, o: { to?: string; reason?: string; timeoutMs?: number } = {}): Promise<RollbackDone & { by: string }> {
  const body: Record<string, string | number> = { waitMs: o.timeoutMs ?? 60_000 };
  if (o.to) body["to"] = o.to;
  if (o.reason) body["reason"] = o.reason;
  const r = await operatorPost(cfg, `/v1/agents/${encodeURIComponent(agent)}/rollback`, body);
  if (!r["settled"]) throw new Error(String(r["message"]));
  return RollbackDone.parse(r["done"]);
}

export const rollback: Command = {
  name: "rollback",
  help: "  rollback AGENT [--to VERSION] [--reason TEXT]   put the agent back on its last-known-good (or a kept) version now; no consent needed",
  options: { to: { type: "string" }, reason: { type: "string" }, "timeout-ms": { type: "string" }, json: { type: "boolean" } },
  async run({ args, values, config }) {
    const [agent] = args;
    if (!agent) throw new Error("usage: moss rollback AGENT [--to VERSION] [--reason TEXT]");
    if (!values["json"]) console.log(`asking the promoter to roll ${agent} back${values["to"] ? ` to ${String(values["to"])}` : ""}`);
    const d = await requestRollback(config(), agent, {
      ...(values["to"] ? { to: String(values["to"]) } : {}),
      ...(values["reason"] ? { reason: String(values["reason"]) } : {}),
      ...(values["timeout-ms"] ? { timeoutMs: Number(values["timeout-ms"]) } : {}),
    });
    if (values["json"]) {
      console.log(JSON.stringify(d, null, 2));
      return d.outcome === "refused" ? 1 : 0;
    }
    if (d.outcome === "refused") {
      console.error(`rollback refused: ${d.reason}`);
      return 1;
    }
    console.log(`${agent} rolled back${d.from ? ` from ${d.from.version.slice(0, 12)}` : ""} to ${d.to?.version.slice(0, 12)} (${d.to?.image}) by ${d.by}: ${d.reason}`);
    return 0;
  },
};
