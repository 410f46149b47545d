/** What the CLI's commands share: the config, the bus, the auditor's API, who is acting. */
import { readFileSync } from "node:fs";
import type { ParseArgsConfig } from "node:util";
import { openStores, type Stores } from "@moss/batch";
import { createBus, type Bus } from "@moss/bus";
import { loadConfig, type LoadedConfig } from "@moss/config";
import { ADMIN } from "@moss/contracts";
import { busCredential } from "@moss/lifecycle";

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

/**
 * Runs `fn` with a bus connected to the config's NATS as admin (it reads; it can neither consent nor forge a verdict)
 * and the batch domain's stores over it, then closes the bus.
 */
export async function withBus<T>(cfg: Readonly<LoadedConfig>, fn: (bus: Bus, stores: Stores) => Promise<T>): Promise<T> {
  const bus = await createBus({ url: cfg.nats.url, name: "moss-cli", credential: busCredential(cfg, ADMIN) });
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

/** The operator's token: MOSS_OPERATOR_TOKEN, else the one `moss up` left for the user who ran it. */
export function operatorToken(cfg: Readonly<LoadedConfig>): string {
  const env = process.env["MOSS_OPERATOR_TOKEN"]?.trim();
  if (env) return env;
  try {
    return readFileSync(cfg.paths.operatorToken, "utf8").trim();
  } catch {
    throw new Error(`no operator token: set MOSS_OPERATOR_TOKEN (\`moss operator add NAME\` makes one), or run \`moss up\` once, which makes you the first operator and leaves your token in ${cfg.paths.operatorToken}`);
  }
}

/** POST to the gateway (the operator API) as the operator whose token this is; its error message is relayed as it is. */
export async function gatewayPost(cfg: Readonly<LoadedConfig>, path: string, body: unknown): Promise<Record<string, unknown>> {
  const url = `http://${cfg.gateway.host}:${cfg.gateway.port}${path}`;
  const token = operatorToken(cfg);
  let res: Response;
  try {
    res = await fetch(url, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify(body) });
  } catch (err) {
    throw new Error(`cannot reach the gateway (the operator API) at ${url}: ${(err as Error).message}. Is \`moss up\` running with this config?`);
  }
  const answer = (await res.json().catch(() => ({}))) as Record<string, unknown> & { message?: string };
  if (!res.ok) throw new Error(answer.message ?? `the gateway answered ${res.status}`);
  return answer;
}

export function loadCliConfig(file: string | undefined): Readonly<LoadedConfig> {
  return loadConfig(process.env, { file });
}
