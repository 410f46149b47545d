/** What the CLI's commands share: the config, the bus, the auditor's API, who is acting. */
import type { ParseArgsConfig } from "node:util";
import { openStores, type Stores } from "@moss/batch";
import { createBus, type Bus } from "@moss/bus";
import { loadConfig, type LoadedConfig } from "@moss/config";

/** The options a command reads (every command also takes `--config FILE`). */
export type Options = NonNullable<ParseArgsConfig["options"]>;
export type Values = Record<string, string | boolean | Array<string | boolean> | undefined>;

export interface CommandContext {
  /** The positionals after the command's name. */
  args: string[];
  values: Values;
  /** The config: the file of `--config` or MOSS_CONFIG, plus MOSS_* env overrides (loaded when asked for). */
  config(): Readonly<LoadedConfig>;
}

/** One `moss` command: its usage lines for the help, its options, and what it does (resolving with the exit code). */
export interface Command {
  name: string;
  help: string;
  options?: Options;
  run(ctx: CommandContext): Promise<number>;
}

/** Who is acting: `--by`, else $USER. */
export function actor(values: Values): string {
  return (values["by"] as string | undefined) ?? process.env["USER"] ?? "operator";
}

/** Runs `fn` with a bus connected to the config's NATS and the batch domain's stores over it, then closes the bus. */
export async function withBus<T>(cfg: Readonly<LoadedConfig>, fn: (bus: Bus, stores: Stores) => Promise<T>): Promise<T> {
  const bus = await createBus({ url: cfg.nats.url, name: "moss-cli" });
  try {
    return await fn(bus, await openStores(bus));
  } finally {
    await bus.close();
  }
}

/** GET on the auditor's API; its error message (what to do) is relayed as it is. */
export async function auditorGet(cfg: Readonly<LoadedConfig>, path: string): Promise<unknown> {
  const url = `http://${cfg.auditor.host}:${cfg.auditor.port}${path}`;
  let res: Response;
  try {
    res = await fetch(url);
  } catch (err) {
    throw new Error(`cannot reach the auditor at ${url}: ${(err as Error).message}. Is \`moss up\` running with this config?`);
  }
  const body = (await res.json()) as { message?: string };
  if (!res.ok) throw new Error(body.message ?? `auditor answered ${res.status}`);
  return body;
}

export function loadCliConfig(file: string | undefined): Readonly<LoadedConfig> {
  return loadConfig(process.env, { file });
}
