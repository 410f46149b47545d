import { writeFileSync } from "node:fs";
import { ensureCredentials, identities, natsServerConfig } from "@moss/bus";
import type { Command } from "../shared";

/** `moss credentials`: the bus identities and their grants, for a nats-server Moss does not start. */
export const credentials: Command = {
  name: "credentials",
  help: [
    "  credentials [--out FILE] [--listen HOST:PORT] [--store-dir DIR]",
    "                           write an nkey seed for every identity that has none (nats.credentialsDir) and print",
    "                           (or write) the nats-server config of their grants, for a nats-server moss up does not start",
    "                           (listen and store dir default to the config's NATS URL and data directory)",
  ].join("\n"),
  options: { out: { type: "string" }, listen: { type: "string" }, "store-dir": { type: "string" } },
  async run({ values, config }) {
    const cfg = config();
    const url = new URL(cfg.nats.url.split(",")[0]!);
    const keys = ensureCredentials(cfg.paths.natsCredentials, identities(Object.keys(cfg.agents)));
    const listen = values["listen"] ? String(values["listen"]) : `${url.hostname}:${url.port || 4222}`;
    const m = /^(.+):(\d{1,5})$/.exec(listen);
    if (!m) throw new Error(`--listen takes HOST:PORT (e.g. 0.0.0.0:4222), got ${JSON.stringify(listen)}`);
    const text = natsServerConfig({ host: m[1]!, port: Number(m[2]), storeDir: values["store-dir"] ? String(values["store-dir"]) : cfg.paths.natsStore, users: keys });
    if (values["out"]) {
      writeFileSync(String(values["out"]), text, { mode: 0o600 });
      console.error(`wrote ${values["out"]}: ${keys.size} identities, seeds in ${cfg.paths.natsCredentials}`);
    } else console.log(text);
    return 0;
  },
};
