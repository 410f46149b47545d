import type { LoadedConfig } from "@moss/config";
import { actor, type Command } from "../shared";

const USAGE = "usage: moss flag AGENT --version SHA --path PATH --reason TEXT [--method POST] [--body TEXT] [--route R] [--by NAME] [--url URL]";

export const flag: Command = {
  name: "flag",
  help: [
    "  flag AGENT --version SHA --path PATH --reason TEXT [--method POST] [--body TEXT] [--route R] [--by NAME] [--url URL]",
    "                           report a bad turn (a wrong answer, not a crash) as a failure, through the curator's",
    "                           HTTP ingest (curator.http, or --url); prints the failure id",
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
    });
    console.log(id);
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
