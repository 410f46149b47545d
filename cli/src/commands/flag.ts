import type { LoadedConfig } from "@moss/config";
import { JsonAssertion, type Expectation } from "@moss/contracts";
import { actor, type Command } from "../shared";

const USAGE = "usage: moss flag AGENT --version SHA --path PATH --reason TEXT [--method POST] [--body TEXT] [--route R] [--expect CHECK]... [--by NAME] [--url URL]";

export const flag: Command = {
  name: "flag",
  help: [
    "  flag AGENT --version SHA --path PATH --reason TEXT [--method POST] [--body TEXT] [--route R] [--by NAME] [--url URL]",
    "                           report a bad turn (a wrong answer, not a crash) as a failure, through the curator's",
    "                           HTTP ingest (curator.http, or --url); prints the failure id. --expect (repeatable) says",
    "                           what a right answer is, for its replays: status=200-299 | status=2xx | '$.path=JSON' |",
    "                           '$.path~REGEX' | '$.path' (exists) | '!$.path' (absent)",
  ].join("\n"),
  options: {
    version: { type: "string" },
    path: { type: "string" },
    method: { type: "string" },
    body: { type: "string" },
    route: { type: "string" },
    reason: { type: "string" },
    by: { type: "string" },
    url: { type: "string" },
    expect: { type: "string", multiple: true },
    json: { type: "boolean" },
  },
  async run({ args, values, config }) {
    const [agent] = args;
    if (!agent) throw new Error(USAGE);
    const missing = (["version", "path", "reason"] as const).filter((k) => !values[k]);
    if (missing.length) throw new Error(`moss flag needs ${missing.map((k) => `--${k}`).join(", ")}; ${USAGE}`);
    const str = (k: string) => values[k] as string | undefined;
    const id = await flagTurn(config(), {
      agent,
      version: str("version")!,
      path: str("path")!,
      method: str("method") ?? "POST",
      body: str("body"),
      route: str("route"),
      reason: str("reason")!,
      by: actor(values),
      url: str("url"),
      expect: parseExpect((values["expect"] as string[] | undefined) ?? []),
    });
    console.log(values["json"] ? JSON.stringify({ id, agent }) : id);
    return 0;
  },
};

/** Where the CLI reaches the curator's HTTP ingest: `--url`, else curator.http (a wildcard bind address means this host). */
function ingestUrl(cfg: Readonly<LoadedConfig>, url?: string): string {
  if (url) return url.replace(/\/+$/, "");
  const { host, port } = cfg.curator.http;
  const h = host === "0.0.0.0" || host === "" ? "127.0.0.1" : host === "::" ? "::1" : host;
  return `http://${h.includes(":") ? `[${h}]` : h}:${port}`;
}

interface FlagArgs {
  agent: string;
  version: string;
  path: string;
  method: string;
  body?: string;
  route?: string;
  reason: string;
  by: string;
  url?: string;
  expect?: Expectation;
}

/**
 * `--expect` checks as an expectation: `status=200-299`, `status=2xx`, `status=201`; `$.path=JSON` (equals: the value
 * as JSON, else as a string), `$.path~REGEX` (matches), `$.path` (exists), `!$.path` (absent). Throws naming the bad one.
 */
export function parseExpect(checks: readonly string[]): Expectation | undefined {
  if (!checks.length) return undefined;
  const e: Expectation = {};
  const json: NonNullable<Expectation["json"]> = [];
  for (const raw of checks) {
    const c = raw.trim();
    const bad = (why: string) => new Error(`--expect ${JSON.stringify(raw)}: ${why}; use status=200-299, status=2xx, '$.path=JSON', '$.path~REGEX', '$.path' or '!$.path'`);
    const status = /^status=(?:(\d{3})(?:-(\d{3}))?|([1-5])xx)$/i.exec(c);
    if (status) {
      if (status[3]) [e.statusMin, e.statusMax] = [Number(status[3]) * 100, Number(status[3]) * 100 + 99];
      else [e.statusMin, e.statusMax] = [Number(status[1]), Number(status[2] ?? status[1])];
      if (e.statusMin! > e.statusMax!) throw bad("the range is backwards");
      continue;
    }
    if (c.startsWith("status")) throw bad("not a status range");
    const m = /^(!?)(\$[^=~]*)(?:([=~])([\s\S]*))?$/.exec(c);
    if (!m) throw bad("not a check");
    const [, not, path, op, value] = m;
    let a: NonNullable<Expectation["json"]>[number];
    if (not) {
      if (op) throw bad("'!' (absent) takes a path only");
      a = { path: path!, absent: true };
    } else if (op === "=") {
      let v: unknown = value;
      try {
        v = JSON.parse(value!);
      } catch {
        // not JSON: the string itself
      }
      a = { path: path!, equals: v };
    } else if (op === "~") a = { path: path!, matches: value! };
    else a = { path: path!, exists: true };
    const ok = JsonAssertion.safeParse(a);
    if (!ok.success) throw bad(ok.error.issues[0]?.message ?? "invalid");
    json.push(a);
  }
  if (json.length) e.json = json;
  return e;
}

/** POST /v1/flags: the turn becomes a failure like any other (error type FlaggedTurn). Resolves with its id. */
async function flagTurn(cfg: Readonly<LoadedConfig>, f: FlagArgs): Promise<string> {
  const base = ingestUrl(cfg, f.url);
  let isJson = false;
  if (f.body !== undefined) {
    try {
      JSON.parse(f.body);
      isJson = true;
    } catch {
      // Not JSON: sent as text, as the agent received it.
    }
  }
  const flag = {
    agent: f.agent,
    version: f.version,
    request: { method: f.method.toUpperCase(), path: f.path, headers: isJson ? { "content-type": "application/json" } : {}, ...(f.body !== undefined ? { body: f.body } : {}) },
    ...(f.route !== undefined ? { route: f.route } : {}),
    reason: f.reason,
    by: f.by,
    ...(f.expect ? { expect: f.expect } : {}),
  };
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (cfg.curator.http.token) headers["authorization"] = `Bearer ${cfg.curator.http.token}`;
  let res: Response;
  try {
    res = await fetch(`${base}/v1/flags`, { method: "POST", headers, body: JSON.stringify(flag) });
  } catch (err) {
    const cause = (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message;
    throw new Error(`cannot reach the curator's HTTP ingest at ${base}: ${cause}. Is \`moss up\` running with this config (curator.http.enabled), or pass --url?`);
  }
  const text = await res.text();
  let body: { id?: string; message?: string; problems?: Array<{ path: string; message: string }> } = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    // not JSON: reported below as it is
  }
  if (res.status === 202 && body.id) return body.id;
  const problems = body.problems?.map((p) => `\n  - ${p.path}: ${p.message}`).join("") ?? "";
  throw new Error(`the curator refused the flag (${res.status}): ${body.message ?? text}${problems}`);
}
