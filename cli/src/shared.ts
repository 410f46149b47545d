/** What the CLI's commands share: the config, the operator API (the one door operator commands use), who is acting. */
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
  const bus = await createBus({ url: cfg.nats.url, name: "moss-cli", credential: busCredential(cfg, ADMIN), replicas: cfg.nats.replicas });
  try {
    return await fn(bus, await openStores(bus));
  } finally {
    await bus.close();
  }
}

/**
 * One call of a Moss HTTP API (`who` names it in the errors); an unreachable API says so, and an API's own error message
 * (what to do) is relayed as it is.
 */
async function callApi(who: string, url: string, init?: RequestInit): Promise<Record<string, unknown>> {
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch (err) {
    throw new Error(`cannot reach ${who} at ${url}: ${(err as Error).message}. Is \`moss up\` running with this config?`);
  }
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown> & { message?: string };
  if (!res.ok) throw new Error(body.message ?? `${who} answered ${res.status}`);
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

/** GET on the operator API as the operator whose token this is. */
export function operatorGet(cfg: Readonly<LoadedConfig>, path: string): Promise<Record<string, unknown>> {
  return callApi("the operator API", `http://${cfg.operatorApi.host}:${cfg.operatorApi.port}${path}`, { headers: { authorization: `Bearer ${operatorToken(cfg)}` } });
}

/** GET of a text resource on the operator API (a trial's logs). */
export async function operatorText(cfg: Readonly<LoadedConfig>, path: string): Promise<string> {
  const url = `http://${cfg.operatorApi.host}:${cfg.operatorApi.port}${path}`;
  const res = await fetch(url, { headers: { authorization: `Bearer ${operatorToken(cfg)}` } }).catch((err: Error) => {
    throw new Error(`cannot reach the operator API at ${url}: ${err.message}. Is \`moss up\` running with this config?`);
  });
  const text = await res.text();
  if (!res.ok) throw new Error((JSON.parse(text || "{}") as { message?: string }).message ?? `the operator API answered ${res.status}`);
  return text;
}

/**
 * Follows a record the operator API keeps for a piece of work (a replay, a bisect, a review) until it is done or failed:
 * `seen` is shown every reading, the first included; `stuck` says what to do when nothing ended within `timeoutMs`.
 */
export async function followRecord<R extends { id: string; state: string }>(
  cfg: Readonly<LoadedConfig>,
  first: R,
  o: { path: (id: string) => string; parse: (v: unknown) => R; timeoutMs: number; pollMs?: number; seen?: (rec: R) => void; stuck: (rec: R, seconds: number) => string },
): Promise<R> {
  const end = Date.now() + o.timeoutMs;
  for (let rec = first; ; rec = o.parse(await operatorGet(cfg, o.path(rec.id)))) {
    o.seen?.(rec);
    if (rec.state === "done" || rec.state === "failed") return rec;
    if (Date.now() > end) throw new Error(o.stuck(rec, Math.round(o.timeoutMs / 1000)));
    await new Promise((r) => setTimeout(r, o.pollMs ?? 300));
  }
}

/** POST to the operator API as the operator whose token this is. */
export function operatorPost(cfg: Readonly<LoadedConfig>, path: string, body: unknown): Promise<Record<string, unknown>> {
  const headers = { authorization: `Bearer ${operatorToken(cfg)}`, "content-type": "application/json" };
  return callApi("the operator API", `http://${cfg.operatorApi.host}:${cfg.operatorApi.port}${path}`, { method: "POST", headers, body: JSON.stringify(body) });
}

export function loadCliConfig(file: string | undefined): Readonly<LoadedConfig> {
  return loadConfig(process.env, { file });
}
