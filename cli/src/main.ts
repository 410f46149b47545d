import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { createBus, getBatch, kvKeys, kvUpdate } from "@moss/bus";
import { loadConfig, type LoadedConfig } from "@moss/config";
import { BatchRecord, Buckets, Deployment, FingerprintBreaker, Messages, RejectedCandidate, type BreakerReset } from "@moss/contracts";
import { ensureSigningKey } from "@moss/git";
import { runDemo } from "./demo";
import { deployAgent } from "./deploy";
import { renderTimeline, type TimelineView } from "./render";
import { startStack } from "./stack";

const HELP = `moss — lets a deployed agent fix its own code, safely

Usage: moss <command> [options]

  up                       start nats-server (if none answers) and the five services; Ctrl-C stops them
  demo                     the whole loop on the example agent, in .moss/demo (exit 0 only if a fix went live)
      --data-dir DIR         where the demo keeps everything (default .moss/demo)
      --bad-patch            configure a coding agent whose patch does not fix the bug (nothing is promoted)
      --symbolic             use the symbolic patcher with every stage (locate, plan, reviews) instead
      --verbose              print the services' logs
      --keep                 leave the agent container running at the end
  deploy AGENT [REF]       build AGENT's repo at REF (default HEAD) and make it the live version
  batches                  list batches and their state
  show BATCH [--json] [--no-diff]   a batch's timeline: failures, diff, replay results, verdict, promotion
  approve BATCH [--by NAME] [--reason TEXT]   consent to promote a batch that passed replay
  reject BATCH --reason TEXT [--by NAME]      refuse it; it is never promoted
  flag AGENT --version SHA --path PATH --reason TEXT [--method POST] [--body TEXT] [--route R] [--by NAME] [--url URL]
                           report a bad turn (a wrong answer, not a crash) as a failure, through the curator's
                           HTTP ingest (curator.http, or --url); prints the failure id
  reset BATCH|AGENT.FPKEY [--by NAME]
                           close a fingerprint's circuit breaker (after a human looked), so its failures are
                           batched and rewritten again; BATCH takes the fingerprint from that batch
  status                   live deployments
  candidates [AGENT]       candidates that were not promoted (kept with their branch and the reason)
  keys init [DIR]          create the SSH key that signs Moss commits and its allowed_signers file (default .moss/keys)

Config: the JSON file in MOSS_CONFIG (or --config FILE), plus MOSS_* env overrides.`;

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: "string" },
      "data-dir": { type: "string" },
      "bad-patch": { type: "boolean" },
      symbolic: { type: "boolean" },
      verbose: { type: "boolean" },
      keep: { type: "boolean" },
      json: { type: "boolean" },
      "no-diff": { type: "boolean" },
      by: { type: "string" },
      reason: { type: "string" },
      version: { type: "string" },
      path: { type: "string" },
      method: { type: "string" },
      body: { type: "string" },
      route: { type: "string" },
      url: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  const [cmd, ...args] = positionals;
  if (!cmd || values.help) {
    console.log(HELP);
    return cmd || values.help ? 0 : 2;
  }
  const config = () => loadConfig(process.env, { file: values.config });

  switch (cmd) {
    case "demo": {
      const res = await runDemo({
        dataDir: values["data-dir"] ?? resolve(".moss", "demo"),
        patch: values["bad-patch"] ? "bad" : values.symbolic ? "symbolic" : "fix",
        keep: values.keep,
        serviceLog: values.verbose ? (s, l) => console.error(`[${s}] ${l}`) : undefined,
        otlpEndpoint: process.env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"],
      });
      console.log(res.ok ? "DEMO OK: the failure was fixed, verified by replay, promoted, and answers correctly." : `DEMO FAILED: outcome ${res.outcome}`);
      return res.ok ? 0 : 1;
    }
    case "up": {
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
    }
    case "deploy": {
      const [agent, ref] = args;
      if (!agent) throw new Error("usage: moss deploy AGENT [REF]");
      const d = await deployAgent(config(), agent, ref);
      console.log(`${agent} is live: ${d.image} (${d.commit}) in container ${d.container}`);
      return 0;
    }
    case "batches": {
      const body = (await auditorGet(config(), "/v1/batches")) as { batches: Array<{ batchId: string; agent?: string; count?: number; verdict: string; lastAt: string }> };
      if (values.json) console.log(JSON.stringify(body, null, 2));
      else for (const b of body.batches) console.log(`${b.batchId}  ${(b.agent ?? "?").padEnd(12)} ${String(b.count ?? "?").padStart(5)} failures  ${b.verdict.padEnd(18)} ${b.lastAt}`);
      return 0;
    }
    case "show": {
      const [batch] = args;
      if (!batch) throw new Error("usage: moss show BATCH");
      const t = (await auditorGet(config(), `/v1/batches/${encodeURIComponent(batch)}`)) as TimelineView;
      console.log(values.json ? JSON.stringify(t, null, 2) : renderTimeline(t, { diff: !values["no-diff"] }));
      return 0;
    }
    case "approve":
    case "reject": {
      const [batch] = args;
      if (!batch) throw new Error(`usage: moss ${cmd} BATCH${cmd === "reject" ? " --reason TEXT" : ""}`);
      if (cmd === "reject" && !values.reason) throw new Error("moss reject needs --reason TEXT (it goes into the audit trail)");
      const cfg = config();
      const bus = await createBus({ url: cfg.nats.url, name: "moss-cli" });
      try {
        const rec = await getBatch(await bus.kv(Buckets.batches), batch);
        if (!rec) throw new Error(`no batch ${batch}; list them with \`moss batches\``);
        if (cmd === "approve" && rec.value.state !== "awaiting-approval") throw new Error(`batch ${batch} is ${rec.value.state}, not awaiting-approval; only a batch whose candidate passed replay can be approved`);
        const by = values.by ?? process.env["USER"] ?? "operator";
        await bus.publish(Messages.approval, { batchId: batch, decision: cmd === "approve" ? "approve" : "reject", by, reason: values.reason ?? "" }, { msgId: `approval-${batch}-${cmd}` });
        console.log(`${cmd === "approve" ? "approved" : "rejected"} ${batch} as ${by}`);
      } finally {
        await bus.close();
      }
      return 0;
    }
    case "flag": {
      const [agent] = args;
      const usage = "usage: moss flag AGENT --version SHA --path PATH --reason TEXT [--method POST] [--body TEXT] [--route R] [--by NAME] [--url URL]";
      if (!agent) throw new Error(usage);
      const missing = (["version", "path", "reason"] as const).filter((k) => !values[k]);
      if (missing.length) throw new Error(`moss flag needs ${missing.map((k) => `--${k}`).join(", ")}; ${usage}`);
      const id = await flagTurn(config(), {
        agent,
        version: values.version!,
        path: values.path!,
        method: values.method ?? "POST",
        body: values.body,
        route: values.route,
        reason: values.reason!,
        by: values.by ?? process.env["USER"] ?? "operator",
        url: values.url,
      });
      console.log(id);
      return 0;
    }
    case "reset": {
      const [target] = args;
      if (!target) throw new Error("usage: moss reset BATCH|AGENT.FPKEY [--by NAME]");
      const by = values.by ?? process.env["USER"] ?? "operator";
      const r = await resetBreaker(config(), target, by);
      console.log(
        `reset the circuit breaker of ${r.key} (fingerprint ${r.fingerprint}) as ${by}: it was ${r.was.consecutiveRejections} rejection(s) in a row${r.was.needsHuman ? ", needs-human" : ""}; new failures of this fingerprint are batched and rewritten again`,
      );
      return 0;
    }
    case "keys": {
      const [sub, dir] = args;
      if (sub !== "init") throw new Error("usage: moss keys init [DIR]");
      const k = await ensureSigningKey(resolve(dir ?? join(".moss", "keys")));
      console.log(`signing key ${k.key}\nallowed signers ${k.allowedSigners}\n\nAdd to moss.config.json:\n${JSON.stringify({ rewriter: { signing: { key: k.key, allowedSigners: k.allowedSigners } } }, null, 2)}`);
      return 0;
    }
    case "candidates": {
      const [agent] = args;
      const cfg = config();
      const bus = await createBus({ url: cfg.nats.url, name: "moss-cli" });
      try {
        const kv = await bus.kv(Buckets.candidates);
        const rows: RejectedCandidate[] = [];
        for (const k of await kvKeys(kv, agent ? `${agent}.>` : ">")) {
          const e = await kv.get(k);
          if (e?.operation === "PUT") rows.push(RejectedCandidate.parse(e.json()));
        }
        rows.sort((a, b) => b.at.localeCompare(a.at));
        if (values.json) console.log(JSON.stringify(rows, null, 2));
        else for (const c of rows) console.log(`${c.at}  ${c.agent}  batch ${c.batchId} attempt ${c.attempt}  ${c.branch ?? "(no commit)"}  ${c.verdict}: ${c.reason}`);
        if (!rows.length) console.log("no rejected candidates");
      } finally {
        await bus.close();
      }
      return 0;
    }
    case "status": {
      const cfg = config();
      const bus = await createBus({ url: cfg.nats.url, name: "moss-cli" });
      try {
        const deployments = await bus.kv(Buckets.deployments);
        for (const k of await kvKeys(deployments)) {
          const e = await deployments.get(k);
          if (e?.operation === "PUT") {
            const d = Deployment.parse(e.json());
            console.log(`${d.agent}: ${d.image} (${d.version.slice(0, 12)})${d.batchId ? ` from batch ${d.batchId}` : ""}${d.previous ? `; previous ${d.previous.image}` : ""}`);
          }
        }
        const batches = await bus.kv(Buckets.batches);
        for (const k of await kvKeys(batches)) {
          const e = await batches.get(k);
          if (e?.operation === "PUT") {
            const b = BatchRecord.parse(e.json());
            console.log(`  batch ${b.batchId} ${b.agent} ${b.state} (${b.count} failures, attempt ${b.attempt})${b.reason ? `: ${b.reason}` : ""}`);
          }
        }
      } finally {
        await bus.close();
      }
      return 0;
    }
    default:
      console.error(`unknown command '${cmd}'\n\n${HELP}`);
      return 2;
  }
}

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

/**
 * Closes a fingerprint's circuit breaker in `moss_fingerprints`, by `AGENT.FPKEY` or by a batch of that fingerprint,
 * and publishes the decision (`breaker.reset.v1`) for the audit log.
 */
async function resetBreaker(cfg: Readonly<LoadedConfig>, target: string, by: string): Promise<{ key: string; fingerprint: string; was: FingerprintBreaker }> {
  const bus = await createBus({ url: cfg.nats.url, name: "moss-cli" });
  try {
    let key = target;
    let batchId: string | undefined;
    // Batch ids and agent names never contain a dot; breaker keys always do.
    if (!target.includes(".")) {
      const rec = await getBatch(await bus.kv(Buckets.batches), target);
      if (!rec) throw new Error(`no batch ${target}; list them with \`moss batches\`, or name the breaker as AGENT.FPKEY`);
      if (!rec.value.fingerprintKey) throw new Error(`batch ${target} does not record its fingerprint key (an older curator made it); reset by AGENT.FPKEY instead`);
      key = `${rec.value.agent}.${rec.value.fingerprintKey}`;
      batchId = target;
    }
    const kv = await bus.kv(Buckets.fingerprints);
    let was: FingerprintBreaker | undefined;
    const at = new Date().toISOString();
    // Compare-and-set: the curator may count an outcome into the same breaker meanwhile.
    const written = await kvUpdate(
      kv,
      key,
      FingerprintBreaker,
      (cur) => {
        was = cur;
        return cur ? { ...cur, consecutiveRejections: 0, needsHuman: false, resetBy: by, updatedAt: at } : undefined;
      },
      Buckets.fingerprints,
    );
    if (!was || !written) throw new Error(`no circuit breaker ${key} in ${Buckets.fingerprints}: its fingerprint never had a rejected candidate, so there is nothing to reset`);
    const reset: BreakerReset = {
      agent: was.agent,
      fingerprint: was.fingerprint,
      breaker: key,
      ...(batchId ? { batchId } : {}),
      by,
      was: { consecutiveRejections: was.consecutiveRejections, needsHuman: was.needsHuman },
      at,
    };
    try {
      // One record per write of the breaker: a retried publish of the same reset is dropped by its id.
      await bus.publish(Messages.breakerReset, reset, { msgId: `breaker-reset-${key}-${written.revision}` });
    } catch (err) {
      throw new Error(`the circuit breaker ${key} is reset, but its audit record could not be published (${(err as Error).message}); run \`moss reset ${target}\` again once NATS is reachable to record it`);
    }
    return { key, fingerprint: was.fingerprint, was };
  } finally {
    await bus.close();
  }
}

async function auditorGet(cfg: Readonly<LoadedConfig>, path: string): Promise<unknown> {
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
