import { reachable, SERVICES, startStack, type ServiceName } from "../stack";
import type { Command } from "../shared";

export const up: Command = {
  name: "up",
  help: [
    "  up                       start nats-server (if none answers; with a credential per identity) and the services; Ctrl-C stops them",
    "      --only S[,S...]        only these services, against the NATS the config names (e.g. --only curator)",
  ].join("\n"),
  options: { only: { type: "string" } },
  async run({ config, values }) {
    const cfg = config();
    if (!cfg.source) throw new Error("moss up needs a config file: set MOSS_CONFIG or pass --config FILE (see README)");
    let services: readonly ServiceName[] | undefined;
    if (values["only"] !== undefined) {
      const asked = String(values["only"]).split(",").map((s) => s.trim()).filter(Boolean);
      const unknown = asked.filter((s) => !(SERVICES as readonly string[]).includes(s));
      if (!asked.length || unknown.length) throw new Error(`moss up --only takes service names (${SERVICES.join(", ")}); got ${JSON.stringify(values["only"])}`);
      const url = new URL(cfg.nats.url.split(",")[0]!);
      if (!(await reachable(url.hostname, Number(url.port || 4222)))) {
        throw new Error(`moss up --only runs services against a running stack, and no NATS answers at ${cfg.nats.url}: start the stack (moss up) or NATS first`);
      }
      services = asked as ServiceName[];
    }
    const stack = await startStack({
      config: cfg,
      configFile: cfg.source,
      services,
      onLog: (s, l) => console.error(`[${s}] ${l}`),
      onEvent: (l) => console.error(`[moss up] ${l}`),
    });
    // Listening for the stop before saying "up": whoever waits for that line may signal at once.
    const stopAsked = new Promise<void>((r) => {
      process.once("SIGINT", r);
      process.once("SIGTERM", r);
    });
    console.log(`moss is up: nats ${stack.natsUrl}${stack.ownsNats ? " (started here)" : ""}; ${(services ?? SERVICES).join(", ")}; auditor (health) http://${cfg.auditor.host}:${cfg.auditor.port}; operator API (every operator command) http://${cfg.operatorApi.host}:${cfg.operatorApi.port}`);
    await stopAsked;
    await stack.stop();
    return 0;
  },
};
