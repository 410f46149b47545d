import type { Command } from "../shared";
import { startStack } from "../stack";

export const up: Command = {
  name: "up",
  help: "  up                       start nats-server (if none answers) and the five services; Ctrl-C stops them",
  async run({ config }) {
    const cfg = config();
    if (!cfg.source) throw new Error("moss up needs a config file: set MOSS_CONFIG or pass --config FILE (see README)");
    const stack = await startStack({ config: cfg, configFile: cfg.source, onLog: (s, l) => console.error(`[${s}] ${l}`) });
    console.log(`moss is up: nats ${stack.natsUrl}${stack.ownsNats ? " (started here)" : ""}; auditor http://${cfg.auditor.host}:${cfg.auditor.port}`);
    await new Promise<void>((r) => {
      process.once("SIGINT", r);
      process.once("SIGTERM", r);
    });
    await stack.stop();
    return 0;
  },
};
