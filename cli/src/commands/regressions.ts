import { RegressionSet } from "@moss/contracts";
import { operatorGet, operatorPost, type Command } from "../shared";

export const regressions: Command = {
  name: "regressions",
  help: [
    "  regressions AGENT        the agent's regression set: recorded successes every candidate is replayed on",
    "      --pin ID               keep this case always (never evicted, replayed by every candidate)",
    "      --unpin ID             let it be evicted and sampled again",
    "      --drop ID              remove it from the set (its event stays in the blob store)",
  ].join("\n"),
  options: { pin: { type: "string" }, unpin: { type: "string" }, drop: { type: "string" }, json: { type: "boolean" } },
  async run({ args, values, config }) {
    const [agent] = args;
    if (!agent) throw new Error("usage: moss regressions AGENT [--pin ID | --unpin ID | --drop ID]");
    const actions = (["pin", "unpin", "drop"] as const).filter((a) => values[a] !== undefined);
    if (actions.length > 1) throw new Error(`moss regressions takes one of --pin, --unpin or --drop at a time, not ${actions.map((a) => `--${a}`).join(" and ")}`);
    const action = actions[0];
    if (action) {
      // Through the operator API: the operator API records who did it.
      const id = encodeURIComponent(values[action] as string);
      const r = await operatorPost(config(), `/v1/agents/${encodeURIComponent(agent)}/regressions/${id}/${action === "drop" ? "drop" : "pin"}`, action === "unpin" ? { unpin: true } : {});
      console.log(`${r["action"]} ${values[action]} of agent ${agent}'s regression set as ${r["by"]}`);
      return 0;
    }
    const set = RegressionSet.parse(await operatorGet(config(), `/v1/agents/${encodeURIComponent(agent)}/regressions`));
    if (values["json"]) {
      console.log(JSON.stringify(set ?? { agent, cases: [], seen: 0 }, null, 2));
      return 0;
    }
    const cfg = config().agents[agent]?.regressions;
    if (!set?.cases.length) {
      console.log(`agent ${agent} has no recorded successes yet: its SDK records them with sampleRate (env MOSS_SAMPLE_RATE) > 0, and the curator keeps up to agents.${agent}.regressions.size`);
      return 0;
    }
    const routes = new Set(set.cases.map((c) => c.route)).size;
    console.log(`${set.cases.length} case(s) over ${routes} route(s) (of ${set.seen} recorded; size ${cfg?.size ?? "?"}, each candidate replays ${cfg?.replay ?? "?"}${cfg?.paths.length ? `, compared at ${cfg.paths.join(", ")}` : ", compared by status class"})`);
    for (const c of [...set.cases].sort((a, b) => a.route.localeCompare(b.route) || b.occurredAt.localeCompare(a.occurredAt))) {
      console.log(`  ${c.id}  ${c.route.padEnd(16)} ${c.input}  → ${c.status}  ${c.occurredAt}  v${c.version.slice(0, 12)}${c.pinned ? `  PINNED by ${c.pinned.by}` : ""}`);
    }
    return 0;
  },
};
