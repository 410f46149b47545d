import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createBus } from "@moss/bus";
import { routeStore } from "@moss/batch";
import { ADMIN, AllMessages, Buckets, Messages, regressed, type BatchTimeline, type MessageDef, type RegressionResult } from "@moss/contracts";
import { parseConfig, type LoadedConfig, type MossConfigInput } from "@moss/config";
import { ensureSigningKey } from "@moss/git";
import { busCredential } from "@moss/lifecycle";
import { createRuntime } from "@moss/runtime";
import { deployAgent } from "../deploy";
import { renderTimeline } from "../render";
import { operatorGet } from "../shared";
import { freePort, startStack, type Stack } from "../stack";
import { startModelStandIn } from "./model";
import { EXAMPLE_AGENT, prepareAgentRepo, preparePythonAgentRepo, PYTHON_EXAMPLE_AGENT } from "./prepare";

/** The coding agents the demo can configure (see `DemoOptions.patch`). */
export const PATCHES = ["fix", "bad", "polite", "overreach", "fails-later", "slow", "breaks-echo", "symbolic"] as const;
export type PatchName = (typeof PATCHES)[number];
/** The coding agents whose candidate passes every replay and fails only on live traffic. */
const HELD_OUT: readonly PatchName[] = ["fails-later", "slow", "breaks-echo"];

export interface DemoOptions {
  /** Everything the demo writes goes here; wiped at start so a second run starts clean. */
  dataDir: string;
  /** Agent name (container names derive from it). Default "demo". */
  agent?: string;
  /**
   * The coding agent the demo configures: `fix`, a deterministic script (implement only); `bad`, a script whose
   * patch does not fix the bug; `polite`, one that hides the 500 behind a polite 400 (replay must reject it too);
   * `overreach`, one that fixes the bug and breaks a request that worked (regression replay must reject it);
   * `fails-later`, `slow` and `breaks-echo`, held-out candidates that fix the bug and pass every replay but fail on
   * live traffic (chat answers 500 after 3 s of serving / 1.5 s slower / the echo tool broken): the bake must roll
   * each back; `symbolic`, the symbolic patcher with every stage on (locate, plan, plan review, implement, code review).
   */
  patch?: PatchName;
  /** Which example agent: `node` (default, examples/agent) or `python` (examples/python-agent, `fix` only). */
  example?: "node" | "python";
  /** Max attempts before giving up. Default 2. */
  maxAttempts?: number;
  /** The promoter's bake window, ms. Default 3000; 10000 for a held-out candidate, whose defect may take 3 s to show. */
  bakeMs?: number;
  otlpEndpoint?: string;
  /** Progress lines. */
  out?: (line: string) => void;
  /** Service log lines (quiet by default; `--verbose` prints them). */
  serviceLog?: (service: string, line: string) => void;
  /** Extra env for the services. */
  env?: Record<string, string>;
  /** Leave the agent containers running at the end. */
  keep?: boolean;
  /**
   * Runs at the end, with the stack still up (tests act on the promoted agent here): `chat` sends one message through
   * the gateway, `steady` starts back-to-back chat and returns its stop.
   */
  afterPromotion?: (ctx: { agent: string; config: Readonly<LoadedConfig>; configFile: string; batchId: string; v1: string; steady: () => { stop(): Promise<{ requests: number; failed: string[]; byVersion: Record<string, number> }> } }) => Promise<void>;
  /** Runs once v1 is live, before the traffic (tests inject bad input here). */
  beforeTraffic?: (ctx: { natsUrl: string; agent: string; config: Readonly<LoadedConfig> }) => Promise<void>;
}

export interface DemoResult {
  /** The story really happened: a promotion and the fixed agent answering the failing request correctly. */
  ok: boolean;
  agent: string;
  batchId?: string;
  outcome: string;
  v1: { image: string; commit: string };
  liveImageAfter?: string;
  /** The failing request, answered by v1. */
  before: { status: number; body: string }[];
  /** The same request, answered by whatever is live at the end. */
  after?: { status: number; body: string };
  timeline?: BatchTimeline;
  traceId?: string;
  /**
   * The steady traffic sent through the gateway from the moment a candidate passed replay until the end: answers by
   * version, and requests that failed (the gateway's own errors, or no answer at all) — 0 during a swap or a rollback.
   */
  liveTraffic?: { requests: number; failed: string[]; byVersion: Record<string, number> };
}

export const FAILING_REQUEST = { session: "s1", message: "convert 100 USD to EUR" };
export const FIXED_ANSWER = "100 USD = 92.00 EUR";

/** What the demo needs of an example agent: its repository, its coding agents, its traffic and its fixed answer. */
interface Example {
  prepare(dir: string): Promise<{ repoDir: string; commit: string }>;
  /** Each coding agent as the script and its arguments (before the evidence file). */
  patchTools: Partial<Record<Exclude<PatchName, "symbolic">, string[]>>;
  rulesDir?: string;
  /** The agent's env besides what Moss gives it (the Python reporter's ingest address, the model's base URL). */
  env(ports: { ingest: number; model: string }): Record<string, string>;
  /**
   * The agent records its good answers (env MOSS_SAMPLE_RATE=1 in the demo), and every candidate is replayed on them
   * too: these JSON paths of an answer must stay the same.
   */
  regressionPaths?: string[];
  /** What `moss diff` flags in this agent (agents.<name>.review.areas). */
  reviewAreas?: Record<"routing" | "exceptions" | "state" | "prompts", string[]>;
  /** Whether the agent asks a model (the demo then runs the stand-in, and stops it before the replays). */
  model?: boolean;
  /** Messages the agent answers well, then three that fail the same way. */
  warmup: string[];
  /** What users keep asking during the swap and the bake: messages that change no state. */
  steady: string[];
  failing: [string, ...string[]];
  /** What the first failing message gets once the fix is live. */
  fixedAnswer: string;
}

const EXAMPLES: Record<"node" | "python", Example> = {
  node: {
    prepare: prepareAgentRepo,
    patchTools: {
      fix: [resolve(EXAMPLE_AGENT, "moss/fix-routing.mjs")],
      bad: [resolve(EXAMPLE_AGENT, "moss/wrong-patch.mjs"), "reword"],
      polite: [resolve(EXAMPLE_AGENT, "moss/wrong-patch.mjs"), "polite"],
      overreach: [resolve(EXAMPLE_AGENT, "moss/wrong-patch.mjs"), "overreach"],
      "fails-later": [resolve(EXAMPLE_AGENT, "moss/wrong-patch.mjs"), "fails-later"],
      slow: [resolve(EXAMPLE_AGENT, "moss/wrong-patch.mjs"), "slow"],
      "breaks-echo": [resolve(EXAMPLE_AGENT, "moss/wrong-patch.mjs"), "breaks-echo"],
    },
    regressionPaths: ["$.tool", "$.answer"],
    reviewAreas: { routing: ["src/router.ts"], exceptions: ["src/errors.ts", "src/server.ts#handle"], state: ["src/state.ts"], prompts: ["src/model.ts"] },
    rulesDir: resolve(EXAMPLE_AGENT, "moss/rules"),
    // The stand-in's key is as secret as a real one would be: the cassette keeps it redacted.
    env: ({ model }) => ({ MODEL_BASE_URL: model, MODEL_API_KEY: "sk-demo-not-a-real-key", MODEL_NAME: "moss-demo", MOSS_SAMPLE_RATE: "1" }),
    model: true,
    warmup: ["set rate USD EUR 0.92", "what is 2 + 3"],
    // Arithmetic and the echo tool (anything else): two routes the failures and the recorded successes do not all cover.
    steady: ["what is 2 + 3", "tell me about your day", "what is 7 * 6"],
    failing: [FAILING_REQUEST.message, "convert 250 USD to EUR", "please convert 42 USD to EUR"],
    fixedAnswer: FIXED_ANSWER,
  },
  python: {
    prepare: preparePythonAgentRepo,
    patchTools: { fix: [resolve(PYTHON_EXAMPLE_AGENT, "moss/fix-tags.mjs")] },
    // It reports over the curator's HTTP ingest (no NATS client in it).
    env: ({ ingest }) => ({ MOSS_INGEST_URL: `http://127.0.0.1:${ingest}` }),
    warmup: ["remember buy milk #shopping", "recall milk"],
    steady: ["recall milk"],
    failing: ["remember call mom", "remember pay rent", "remember water the plants"],
    fixedAnswer: "noted #2: call mom",
  },
};

/**
 * The whole story on this machine: agent v1 live in Docker → traffic → failures → batch → patch → replay →
 * promotion → the fixed agent answering the same request correctly → the batch timeline.
 */
export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const t0 = Date.now();
  const out = opts.out ?? ((l: string) => console.log(l));
  const step = (stage: string, text: string) => out(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${stage.padEnd(8)} ${text}`);
  const agent = opts.agent ?? "demo";
  const dataDir = resolve(opts.dataDir);
  const example = EXAMPLES[opts.example ?? "node"];
  const patch = opts.patch ?? "fix";
  const tool = patch === "symbolic" ? undefined : example.patchTools[patch];
  if (patch === "symbolic" ? !example.rulesDir : !tool) throw new Error(`the ${opts.example} example has no ${patch} coding agent: use the fix one`);
  const runtime = createRuntime();

  step("setup", `data directory ${dataDir} (wiped)`);
  await runtime.removeAgent(agent, { state: true });
  rmSync(dataDir, { recursive: true, force: true });
  mkdirSync(dataDir, { recursive: true });
  const { repoDir, commit: v1Commit } = await example.prepare(join(dataDir, "agent-repo"));
  step("setup", `example agent copied to ${repoDir} as its own git repo (v1 ${v1Commit.slice(0, 12)})`);
  const model = example.model ? await startModelStandIn() : undefined;
  if (model) step("setup", `model stand-in (OpenAI chat completions, deterministic) on ${model.url}; the agent asks it with the openai client`);

  const keys = await ensureSigningKey(join(dataDir, "keys"));
  const [natsPort, auditorPort, livePort, ingestPort, operatorApiPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const cfgInput: MossConfigInput = {
    dataDir,
    nats: { url: `nats://127.0.0.1:${natsPort}` },
    telemetry: { otlpEndpoint: opts.otlpEndpoint },
    curator: { batchSize: 3, batchWindowMs: 5_000, http: { port: ingestPort } },
    // The demo's coding agent is a deterministic script: implement only (no locate / plan / review stages),
    // and its commits are signed with a key made for this data directory.
    rewriter: {
      ...(!tool
        ? { adapter: { preset: "symbolic" as const, rulesDir: example.rulesDir! } }
        : {
            command: [process.execPath, ...tool, "{evidence}"],
            stages: { locate: false, plan: false, planReview: false, codeReview: false },
            // It runs in the default container sandbox, which holds nothing of the host but the script, read-only.
            sandbox: { mounts: [dirname(tool[0]!)] },
          }),
      timeoutMs: 60_000,
      signing: { key: keys.key, allowedSigners: keys.allowedSigners },
    },
    replayer: { concurrency: 2 },
    promoter: { autoApprove: true, maxAttempts: opts.maxAttempts ?? 2, bakeMs: opts.bakeMs ?? (HELD_OUT.includes(patch) ? 10_000 : 3_000), probeIntervalMs: 250 },
    auditor: { port: auditorPort },
    operatorApi: { port: operatorApiPort },
    agents: {
      [agent]: {
        repo: repoDir,
        livePort,
        port: 8080,
        stateDir: "/data",
        env: example.env({ ingest: ingestPort, model: model?.url ?? "" }),
        ...(example.regressionPaths ? { regressions: { paths: example.regressionPaths } } : {}),
        ...(example.reviewAreas ? { review: { areas: example.reviewAreas } } : {}),
      },
    },
  };
  const configFile = join(dataDir, "moss.config.json");
  writeFileSync(configFile, JSON.stringify(cfgInput, null, 2));
  const config = parseConfig(cfgInput, { base: dataDir, source: configFile });

  let stack: Stack | undefined;
  try {
    step("up", "starting nats-server (each service and the agent with its own credential) and the services");
    stack = await startStack({ config, configFile, env: opts.env, onLog: opts.serviceLog });
    step("up", `nats ${config.nats.url}, services: ${[...stack.children.keys()].filter((n) => n !== "nats").join(", ")}`);

    const bus = await createBus({ url: config.nats.url, name: "moss-demo", credential: busCredential(config, ADMIN), replicas: config.nats.replicas });
    const events: Array<{ def: MessageDef; data: Record<string, unknown> }> = [];
    // Every message of the loop, as it happens (plain NATS subscriptions next to the services' durable consumers).
    const subs = AllMessages.map((def) =>
      bus.nc.subscribe(def.subject, {
        callback: (_err, m) => {
          const data = m.json<Record<string, unknown>>();
          events.push({ def, data });
          const line = describe(def, data);
          if (line) step(line[0], line[1]);
        },
      }),
    );

    try {
      step("deploy", `building ${agent} v1 and starting it behind the gateway, whose address for it is 127.0.0.1:${livePort}`);
      const v1 = await deployAgent(config, agent);
      step("deploy", `v1 live: ${v1.image}`);

      await opts.beforeTraffic?.({ natsUrl: config.nats.url, agent, config });
      const url = `http://127.0.0.1:${livePort}/v1/chat`;
      const chat = async (message: string, session = "s1") => {
        const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ session, message }), signal: AbortSignal.timeout(10_000) });
        return { status: res.status, body: await res.text(), version: res.headers.get("x-moss-version") ?? undefined };
      };
      for (const message of example.warmup) step("traffic", `"${message}" → ${(await chat(message)).status}`);
      const before: DemoResult["before"] = [];
      for (const [i, message] of example.failing.entries()) {
        const r = await chat(message, `s${i + 1}`);
        before.push(r);
        step("traffic", `"${message}" → ${r.status} ${r.body.slice(0, 90)}`);
      }
      if (model) {
        await model.stop();
        step("model", `stand-in stopped after ${model.requests()} call(s): the replays must answer the agent's model calls from the failures' cassettes`);
      }

      // Every route change the gateway follows: the swap, and a rollback if there is one.
      const routeWatch = await (await bus.kv(Buckets.routes)).watch({ key: agent, include: "updates" });
      void (async () => {
        for await (const e of routeWatch) {
          if (e.operation !== "PUT") continue;
          const r = e.json<{ targets: Array<{ version: string; upstream: string }>; reason: string }>();
          step("gateway", `route → ${r.targets.map((t) => `${t.version.slice(0, 12)} at ${t.upstream}`).join(", ")} (${r.reason})`);
        }
      })().catch(() => undefined);

      const end = Date.now() + 240_000;
      let final: (typeof events)[number] | undefined;
      let traffic: ReturnType<typeof steadyTraffic> | undefined;
      while (!final && Date.now() < end) {
        final = events.find((e) => e.data["agent"] === agent && (e.def === Messages.promotion || (e.def === Messages.batchVerdict && e.data["verdict"] !== "awaiting-approval")));
        // Once a candidate passed replay the model answers again, and users keep chatting through the swap and the bake.
        if (!traffic && events.some((e) => e.def === Messages.replayCompleted && e.data["agent"] === agent && e.data["passed"])) {
          if (model) {
            await model.start();
            step("model", "stand-in started again for live traffic");
          }
          traffic = steadyTraffic(chat, example.steady);
          step("traffic", `steady chat through the gateway (${example.steady.map((m) => `"${m}"`).join(", ")}, back to back) during the swap and the bake`);
        }
        if (!final) await new Promise((r) => setTimeout(r, 100));
      }
      routeWatch.stop();
      const liveTraffic = await traffic?.stop();
      if (liveTraffic) {
        const by = Object.entries(liveTraffic.byVersion).map(([v, n]) => `${n} by ${v.slice(0, 12)}`).join(", ");
        step("traffic", `${liveTraffic.requests} requests through the gateway during the swap and the bake: ${by || "none answered"}; ${liveTraffic.failed.length} failed${liveTraffic.failed.length ? ` (${liveTraffic.failed.slice(0, 3).join("; ")})` : ""}`);
      }
      if (!final) throw new Error("no promotion or verdict within 4 minutes; see the service logs (moss demo --verbose)");
      const batchId = String(final.data["batchId"]);
      const outcome = String(final.data["outcome"] ?? final.data["verdict"]);

      if (model && !traffic) {
        await model.start();
        step("model", "stand-in started again for live traffic");
      }
      const after = await chat(example.failing[0], "s9");
      step("verify", `"${example.failing[0]}" now → ${after.status} ${after.body.slice(0, 90)}`);
      const live = (await routeStore(await bus.kv(Buckets.routes)).get(agent))?.targets[0];

      // The auditor may be a moment behind the last event.
      await new Promise((r) => setTimeout(r, 500));
      // Through the operator API, as `moss show` reads it.
      const timeline = (await operatorGet(config, `/v1/batches/${batchId}`)) as unknown as BatchTimeline;
      out("");
      out(renderTimeline(timeline));
      out("");
      const fixed = after.status === 200 && after.body.includes(example.fixedAnswer);
      const ok = outcome === "promoted" && fixed && live?.image !== v1.image && (liveTraffic?.failed.length ?? 0) === 0;
      step("done", ok ? `the fix is live: ${live?.image} answers "${example.fixedAnswer}"` : `no fix went live (outcome ${outcome})`);
      await opts.afterPromotion?.({ agent, config, configFile, batchId, v1: v1.commit, steady: () => steadyTraffic(chat, example.steady) });
      return { ok, agent, batchId, outcome, v1: { image: v1.image, commit: v1.commit }, liveImageAfter: live?.image, before, after, timeline, traceId: timeline.traceId, ...(liveTraffic ? { liveTraffic } : {}) };
    } finally {
      for (const sub of subs) sub.unsubscribe();
      await bus.close();
    }
  } finally {
    await stack?.stop();
    await model?.stop();
    if (!opts.keep) await runtime.removeAgent(agent, { state: true });
  }
}

function describe(def: MessageDef, d: Record<string, unknown>): [string, string] | undefined {
  const s = (x: unknown) => String(x ?? "");
  switch (def) {
    case Messages.failure:
      return ["curate", `failure ${s(d["id"]).slice(0, 12)} reported: ${s((d["error"] as { message?: string })?.message)}`];
    case Messages.batchReady:
      return ["curate", `batch ${s(d["batchId"])} closed with ${s(d["count"])} failure(s)`];
    case Messages.batchRetry:
      return ["rewrite", `batch sent back for attempt ${s(d["attempt"])}`];
    case Messages.candidateReady:
      return ["rewrite", `attempt ${s(d["attempt"])}: commit ${s(d["commit"]).slice(0, 12)} (${(d["filesChanged"] as string[]).join(", ")}), image ${s(d["image"])} built`];
    case Messages.candidateFailed:
      return ["rewrite", `attempt ${s(d["attempt"])}: ${s(d["verdict"])}: ${s(d["reason"])}`];
    case Messages.replayCompleted: {
      const r = d["results"] as Array<{ passed: boolean; calls?: { outcome: string }[] }>;
      const g = (d["regressions"] ?? []) as RegressionResult[];
      const calls = [...r, ...g].flatMap((x) => x.calls ?? []);
      const served = calls.length ? `; ${calls.filter((c) => c.outcome === "matched").length}/${calls.length} model call(s) answered from the cassettes` : "";
      const changed = regressed(g).length;
      const kept = g.length ? `; ${changed ? `${changed} of ${g.length} recorded success(es) CHANGED` : `${g.length} recorded success(es) unchanged`}` : "";
      return ["replay", `attempt ${s(d["attempt"])}: ${r.filter((x) => x.passed).length}/${r.length} failures fixed in isolated replay${kept}${served} → ${d["passed"] ? "PASS" : "FAIL"}`];
    }
    case Messages.batchVerdict:
      return ["verdict", `${s(d["verdict"])}: ${s(d["reason"])}`];
    case Messages.promotion:
      return ["promote", `${s(d["outcome"])}: ${s(d["image"])} — ${s(d["reason"])}`];
    default:
      return undefined;
  }
}

/** Chat requests back to back until stopped, counted by the version that answered; a failure is the gateway's own error or no answer. */
function steadyTraffic(chat: (message: string, session?: string) => Promise<{ status: number; body: string; version?: string }>, messages: readonly string[]) {
  let running = true;
  const seen = { requests: 0, failed: [] as string[], byVersion: {} as Record<string, number> };
  const loop = (async () => {
    for (let i = 0; running; i++) {
      seen.requests++;
      try {
        const r = await chat(messages[i % messages.length]!, `live-${i % 7}`);
        if (r.body.includes('"code":"MOSS_E_')) seen.failed.push(`${r.status} ${r.body.slice(0, 120)}`);
        else if (r.version) seen.byVersion[r.version] = (seen.byVersion[r.version] ?? 0) + 1;
      } catch (err) {
        seen.failed.push(String((err as Error).cause ?? err));
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return seen;
    },
  };
}
