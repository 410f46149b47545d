import { resolve } from "node:path";
import { PATCHES, runDemo, type PatchName } from "../demo/run";
import type { Command } from "../shared";

export const demo: Command = {
  name: "demo",
  help: [
    "  demo                     the whole loop on the example agent, in .moss/demo (exit 0 only if a fix went live)",
    "      --data-dir DIR         where the demo keeps everything (default .moss/demo)",
    "      --bad-patch            configure a coding agent whose patch does not fix the bug (nothing is promoted)",
    "      --overreach            configure a coding agent that fixes the bug and breaks a request that worked",
    "                             (regression replay of the recorded successes rejects it; nothing is promoted)",
    "      --symbolic             use the symbolic patcher with every stage (locate, plan, reviews) instead",
    "      --patch NAME           the coding agent by name: fix (default), bad, polite, overreach, symbolic, or a",
    "                             held-out candidate that passes replay and fails only live: fails-later (chat 500s",
    "                             after 3 s), slow (1.5 s per answer), breaks-echo (another route); the bake rolls it back",
    "      --python               the Python example agent (examples/python-agent) instead of the Node one",
    "      --verbose              print the services' logs",
    "      --keep                 leave the agent container running at the end",
  ].join("\n"),
  options: { "data-dir": { type: "string" }, patch: { type: "string" }, "bad-patch": { type: "boolean" }, overreach: { type: "boolean" }, symbolic: { type: "boolean" }, python: { type: "boolean" }, verbose: { type: "boolean" }, keep: { type: "boolean" } },
  async run({ values }) {
    const named = values["patch"] as string | undefined;
    if (named !== undefined && !(PATCHES as readonly string[]).includes(named)) {
      console.error(`moss demo: --patch ${named} is not a coding agent the demo knows; use one of ${PATCHES.join(", ")}`);
      return 2;
    }
    const res = await runDemo({
      dataDir: (values["data-dir"] as string | undefined) ?? resolve(".moss", "demo"),
      patch: (named as PatchName | undefined) ?? (values["bad-patch"] ? "bad" : values["overreach"] ? "overreach" : values["symbolic"] ? "symbolic" : "fix"),
      example: values["python"] ? "python" : "node",
      keep: values["keep"] as boolean | undefined,
      serviceLog: values["verbose"] ? (s, l) => console.error(`[${s}] ${l}`) : undefined,
      otlpEndpoint: process.env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"],
    });
    console.log(res.ok ? "DEMO OK: the failure was fixed, verified by replay, promoted, and answers correctly." : `DEMO: no fix went live (outcome ${res.outcome})`);
    return res.ok ? 0 : 1;
  },
};
