import { deployAgent } from "../deploy";
import type { Command } from "../shared";

export const deploy: Command = {
  name: "deploy",
  help: "  deploy AGENT [REF]       build AGENT's repo at REF (default HEAD) and make it the live version",
  async run({ args, config }) {
    const [agent, ref] = args;
    if (!agent) throw new Error("usage: moss deploy AGENT [REF]");
    const d = await deployAgent(config(), agent, ref);
    console.log(`${agent} is live: ${d.image} (${d.commit}) in container ${d.container}`);
    return 0;
  },
};
