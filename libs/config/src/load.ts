import { readFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { ConfigError } from "./errors";
import { MossConfig, type MossConfigInput } from "./schema";

export interface LoadedConfig extends MossConfig {
  /** Absolute paths derived from the config. */
  paths: {
    dataDir: string;
    blobs: string;
    worktrees: string;
    audit: string;
    natsStore: string;
    /** The nkey seeds, one `<identity>.nk` each. */
    natsCredentials: string;
    /** The nats-server config `moss up` writes and starts the embedded nats-server with. */
    natsConfig: string;
    /** The operator API's operators and their token hashes. */
    operators: string;
    /** Where `moss up` leaves the token of the operator who ran it, for the CLI. */
    operatorToken: string;
  };
  /** The file the config came from, if any. */
  source?: string;
}

/**
 * Reads the config once: the JSON file named by `MOSS_CONFIG` (or `file`), then env overrides, then validation.
 * Env overrides: `MOSS_<SECTION>__<KEY>` (e.g. `MOSS_PROMOTER__AUTO_APPROVE=true`, `MOSS_CURATOR__BATCH_SIZE=5`),
 * and the shorthands `MOSS_DATA_DIR`, `MOSS_NATS_URL`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`. Shorthand values are taken
 * as they are. `MOSS_<SECTION>__<KEY>` values are parsed as JSON when they parse (`true`, `5`, `["a","b"]`), else taken
 * as strings; a value that parses to a number, boolean or null where the setting is a string stays the string it was
 * (`MOSS_AUDITOR__HOST=0`, `MOSS_BLOB__SECRET_KEY=12345678`). Every problem is reported at once; the result is frozen.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, opts: { file?: string; cwd?: string } = {}): Readonly<LoadedConfig> {
  const cwd = opts.cwd ?? process.cwd();
  const file = opts.file ?? env["MOSS_CONFIG"];
  let raw: Record<string, unknown> = {};
  let base = cwd;
  if (file) {
    const path = resolve(cwd, file);
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (err) {
      throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}. Check MOSS_CONFIG or create the file.`, [], err);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new ConfigError(`config file ${path} is not valid JSON: ${(err as Error).message}`, [], err);
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      const got = parsed === null ? "null" : Array.isArray(parsed) ? "an array" : `a ${typeof parsed}`;
      throw new ConfigError(`config file ${path} must be a JSON object ({ "nats": ..., "agents": ... }), got ${got}`, [
        { path: "(root)", value: parsed, why: "must be a JSON object" },
      ]);
    }
    raw = parsed as Record<string, unknown>;
    base = dirname(path);
  }
  const { config, typed } = applyEnv(raw, env);
  keepStringsWhereExpected(config, typed);
  return parseConfig(config, { base, source: file ? resolve(cwd, file) : undefined });
}

/** Validates an in-memory config (tests, `moss up`). Relative paths resolve against `base`. */
export function parseConfig(input: MossConfigInput | Record<string, unknown>, opts: { base?: string; source?: string } = {}): Readonly<LoadedConfig> {
  const res = MossConfig.safeParse(input);
  if (!res.success) {
    const problems = res.error.issues.map((i) => ({
      path: i.path.join(".") || "(root)",
      value: valueAt(input, i.path),
      why: i.message,
    }));
    const lines = problems.map((p) => `  - ${p.path}: ${p.why} (got ${JSON.stringify(p.value) ?? "nothing"})`);
    throw new ConfigError(`invalid Moss config${opts.source ? ` in ${opts.source}` : ""}:\n${lines.join("\n")}`, problems);
  }
  const cfg = res.data;
  const base = opts.base ?? process.cwd();
  const dataDir = resolve(base, cfg.dataDir);
  const agents = Object.fromEntries(
    Object.entries(cfg.agents).map(([name, a]) => [name, { ...a, repo: isAbsolute(a.repo) ? a.repo : resolve(base, a.repo), replay: { ...a.replay, expect: withGraderPath(a.replay.expect, base) } }]),
  );
  const blob = cfg.blob.kind === "fs" ? { ...cfg.blob, dir: resolve(dataDir, cfg.blob.dir ?? "blobs") } : cfg.blob;
  const loaded: LoadedConfig = {
    ...cfg,
    dataDir,
    blob,
    agents,
    paths: {
      dataDir,
      blobs: blob.kind === "fs" ? blob.dir! : resolve(dataDir, "blobs"),
      worktrees: resolve(dataDir, "worktrees"),
      audit: resolve(dataDir, "audit", "audit.jsonl"),
      natsStore: resolve(dataDir, "nats"),
      natsCredentials: resolve(dataDir, cfg.nats.credentialsDir ?? join("credentials", "nats")),
      natsConfig: resolve(dataDir, "nats.conf"),
      operators: resolve(dataDir, cfg.operatorApi.operatorsFile ?? join("credentials", "operators.json")),
      operatorToken: resolve(dataDir, "credentials", "operator.token"),
    },
    source: opts.source,
  };
  return deepFreeze(loaded);
}

/** An env value that JSON-parsed to a number, boolean or null, with the text it came from. */
interface TypedEnvValue {
  path: string[];
  raw: string;
}

function applyEnv(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): { config: Record<string, unknown>; typed: TypedEnvValue[] } {
  const config = structuredClone(raw);
  const typed: TypedEnvValue[] = [];
  const shorthands: Record<string, string[]> = {
    MOSS_DATA_DIR: ["dataDir"],
    MOSS_NATS_URL: ["nats", "url"],
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: ["telemetry", "otlpEndpoint"],
  };
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || value === "") continue;
    if (shorthands[name]) {
      // Every shorthand names a string setting: MOSS_DATA_DIR=2024 is a directory, not a number.
      setAt(config, shorthands[name], value);
    } else if (name.startsWith("MOSS_") && name.includes("__")) {
      const path = name.slice(5).split("__").map(camel);
      const parsed = parseValue(value);
      setAt(config, path, parsed);
      if (parsed === null || typeof parsed === "number" || typeof parsed === "boolean") typed.push({ path, raw: value });
    }
  }
  return { config, typed };
}

/**
 * Puts back the raw text of env values that JSON-parsed to a number, boolean or null where the schema wants a string.
 * The schema itself says what it wants: validate once, and for each "expected string" issue at exactly the path an env
 * value set, use the string. Anything else is left for parseConfig to report.
 */
function keepStringsWhereExpected(config: Record<string, unknown>, typed: TypedEnvValue[]): void {
  if (!typed.length) return;
  const res = MossConfig.safeParse(config);
  if (res.success) return;
  const key = (path: readonly PropertyKey[]) => path.map(String).join("\0");
  const byPath = new Map(typed.map((t) => [key(t.path), t]));
  for (const issue of res.error.issues) {
    if (issue.code !== "invalid_type" || issue.expected !== "string") continue;
    const t = byPath.get(key(issue.path));
    if (t) setAt(config, t.path, t.raw);
  }
}

function setAt(root: Record<string, unknown>, path: string[], value: unknown): void {
  let node = root;
  for (const key of path.slice(0, -1)) {
    if (typeof node[key] !== "object" || node[key] === null) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

const camel = (s: string) => s.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

function parseValue(v: string): unknown {
  try {
    return JSON.parse(v);
  } catch {
    return v;
  }
}

function valueAt(input: unknown, path: PropertyKey[]): unknown {
  let node: unknown = input;
  for (const k of path) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<PropertyKey, unknown>)[k];
  }
  return node;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object" && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}


/** A grader named by a relative path (`./graders/total.py`) is the config's own file: resolved against its directory. A bare name is looked up on PATH. */
function withGraderPath<E extends { grader?: { command: string[] } }>(expect: E, base: string): E {
  const cmd = expect.grader?.command;
  if (!cmd || !cmd[0]!.includes("/") || isAbsolute(cmd[0]!)) return expect;
  return { ...expect, grader: { ...expect.grader!, command: [resolve(base, cmd[0]!), ...cmd.slice(1)] } };
}
