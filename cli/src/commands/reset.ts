import { breakerKey, parseBreakerKey, resetBreaker } from "@moss/batch";
import { Buckets, Messages } from "@moss/contracts";
import { actor, withBus, type Command } from "../shared";

export const reset: Command = {
  name: "reset",
  help: [
    "  reset BATCH|AGENT.FPKEY [--by NAME]",
    "                           close a fingerprint's circuit breaker (after a human looked), so its failures are",
    "                           batched and rewritten again; BATCH takes the fingerprint from that batch",
  ].join("\n"),
  options: { by: { type: "string" } },
  async run({ args, values, config }) {
    const [target] = args;
    if (!target) throw new Error("usage: moss reset BATCH|AGENT.FPKEY [--by NAME]");
    const by = actor(values);
    const r = await withBus(config(), async (bus, stores) => {
      let named = parseBreakerKey(target);
      let batchId: string | undefined;
      // Batch ids and agent names never contain a dot; breaker keys always do.
      if (!target.includes(".")) {
        const rec = await stores.batches.get(target);
        if (!rec) throw new Error(`no batch ${target}; list them with \`moss batches\`, or name the breaker as AGENT.FPKEY`);
        if (!rec.fingerprintKey) throw new Error(`batch ${target} does not record its fingerprint key (an older curator made it); reset by AGENT.FPKEY instead`);
        named = { agent: rec.agent, fingerprintKey: rec.fingerprintKey };
        batchId = target;
      }
      if (!named) throw new Error(`${target} is neither a batch id nor a breaker key AGENT.FPKEY`);
      const key = breakerKey(named.agent, named.fingerprintKey);
      const done = await resetBreaker(stores, { ...named, batchId }, by);
      if (!done) throw new Error(`no circuit breaker ${key} in ${Buckets.fingerprints}: its fingerprint never had a rejected candidate, so there is nothing to reset`);
      try {
        await bus.publish(Messages.breakerReset, done);
      } catch (err) {
        throw new Error(`the circuit breaker ${key} is reset, but its audit record could not be published (${(err as Error).message}); run \`moss reset ${target}\` again once NATS is reachable to record it`);
      }
      return done;
    });
    const released = r.released.length ? `; ${r.released.join(", ")} ended (released)` : "";
    console.log(
      `reset the circuit breaker of ${r.breaker} (fingerprint ${r.fingerprint}) as ${by}: it was ${r.was.consecutiveRejections} rejection(s) in a row${r.was.needsHuman ? ", needs-human" : ""}${released}; new failures of this fingerprint are batched and rewritten again`,
    );
    return 0;
  },
};
