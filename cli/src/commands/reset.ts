import type { BreakerReset } from "@moss/contracts";
import { operatorPost, type Command } from "../shared";

export const reset: Command = {
  name: "reset",
  help: [
    "  reset BATCH|AGENT.FPKEY",
    "                           close a fingerprint's circuit breaker (after a human looked), so its failures are",
    "                           batched and rewritten again; BATCH takes the fingerprint from that batch",
  ].join("\n"),
  options: { by: { type: "string" }, json: { type: "boolean" } },
  async run({ args, values, config }) {
    const [target] = args;
    if (!target) throw new Error("usage: moss reset BATCH|AGENT.FPKEY");
    if (values["by"] !== undefined) throw new Error("moss reset has no --by any more: the operator API records the operator your token names (MOSS_OPERATOR_TOKEN, or `moss operator add NAME`)");
    const r = (await operatorPost(config(), "/v1/breakers/reset", { target })) as unknown as BreakerReset;
    if (values["json"]) {
      console.log(JSON.stringify(r, null, 2));
      return 0;
    }
    const released = r.released.length ? `; ${r.released.join(", ")} ended (released)` : "";
    console.log(
      `reset the circuit breaker of ${r.breaker} (fingerprint ${r.fingerprint}) as ${r.by}: it was ${r.was.consecutiveRejections} rejection(s) in a row${r.was.needsHuman ? ", needs-human" : ""}${released}; new failures of this fingerprint are batched and rewritten again`,
    );
    return 0;
  },
};
