import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { readFile, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { FailureEvent } from "@moss/contracts";
import { createReporter, type Reporter } from "@moss/agent-sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { route } from "../../../examples/agent/src/router";
import { startModelStandIn, type ModelStandIn } from "@moss/cli";
import { openAiModel } from "../../../examples/agent/src/model";
import { createAgentServer } from "../../../examples/agent/src/server";
import { createStateStore } from "../../../examples/agent/src/state";
import { calculator } from "../../../examples/agent/src/tools/calculator";
import { chat, readFailures, tempDir } from "./helpers";

describe("router (v1, with the bug)", () => {
  it("routes by the first matching rule", () => {
    expect(route("set rate USD EUR 0.92")).toBe("remember");
    expect(route("what is 2 + 2?")).toBe("calculator");
    expect(route("hello there")).toBe("echo");
  });
  it("sends a currency conversion to the calculator, because the calculator rule comes first", () => {
    expect(route("convert 100 USD to EUR")).toBe("calculator");
  });
});

describe("calculator tool", () => {
  const run = (m: string) => calculator.run(m, { state: createStateStore("/nonexistent") });
  it("evaluates arithmetic with precedence and parentheses", async () => {
    expect(await run("what is 12 * (3 + 4)?")).toBe("12 * ( 3 + 4 ) = 84");
    expect(await run("1.5 + 2 * -3")).toBe("1.5 + 2 * - 3 = -4.5");
    expect(await run("10 / 4")).toBe("10 / 4 = 2.5");
  });
  it("refuses words with a ToolInputError", async () => {
    await expect(run("convert 100 USD to EUR")).rejects.toMatchObject({ name: "ToolInputError", message: "calculator: unsupported token 'usd'" });
  });
});

describe("agent HTTP server, in-process, asking the demo's model stand-in (reporter delivering to a file: no NATS)", () => {
  let work: string;
  let model: ModelStandIn;
  let server: Server;
  let reporter: Reporter;
  let url: string;
  let failureFile: string;
  let stateDir: string;

  beforeAll(async () => {
    work = await tempDir("moss-agent-inproc-");
    stateDir = join(work, "state");
    failureFile = join(work, "failures.jsonl");
    const state = createStateStore(stateDir);
    reporter = createReporter({ agent: "demo", version: "abc1234", stateDir, envAllow: ["TZ"], env: { MOSS_REPLAY_FAILURE_FILE: failureFile, TZ: "UTC" } });
    model = await startModelStandIn();
    // After the reporter, as the agent's main does: the reporter records the client's calls.
    const m = openAiModel({ baseURL: model.url, apiKey: "sk-test-key", model: "moss-demo" });
    server = createAgentServer({ agent: "demo", version: "abc1234", state, reporter, model: m, log: () => undefined });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    await reporter.close();
    await model.stop();
    await rm(work, { recursive: true, force: true });
  });

  it("answers /health with its version", async () => {
    const res = await fetch(`${url}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, agent: "demo", version: "abc1234" });
  });

  it("stores a rate atomically in state.json and counts turns", async () => {
    expect(await chat(url, "set rate USD EUR 0.92")).toEqual({ status: 200, body: { tool: "remember", answer: "noted: 1 USD = 0.92 EUR" } });
    expect(await chat(url, "what do you mean")).toEqual({ status: 200, body: { tool: "echo", answer: "you said: what do you mean" } });
    // A greeting the model answers itself: no tool, no turn counted.
    expect(await chat(url, "hi")).toEqual({ status: 200, body: { tool: "model", answer: "Hello! I can calculate, convert currencies and remember exchange rates." } });
    expect(JSON.parse(await readFile(join(stateDir, "state.json"), "utf8"))).toEqual({ rates: { "USD/EUR": 0.92 }, turns: 2 });
    expect((await readdir(stateDir)).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  it("answers 500 to a currency conversion and reports the failure with route, response and state snapshot", async () => {
    const r = await chat(url, "convert 100 USD to EUR");
    expect(r.status).toBe(500);
    expect(r.body).toMatchObject({ error: "internal error", detail: "calculator: unsupported token 'usd'" });
    const [line] = await readFailures(failureFile);
    const ev = FailureEvent.parse(line);
    expect(ev.id).toBe(r.body.failureId);
    expect(ev).toMatchObject({ route: "calculator", response: { status: 500 }, env: { TZ: "UTC" }, tags: { session: "s1" }, snapshot: { path: stateDir } });
    expect(ev.error.type).toBe("ToolInputError");
    // The turn's model call is in its cassette, the key redacted; the state is the one before the turn.
    const call = ev.cassette!.inline!.calls[0]!;
    expect(call).toMatchObject({ method: "POST", url: `${model.url}/chat/completions`, response: { status: 200 } });
    expect(call.headers["authorization"]).toBe("[redacted]");
    expect(call.response!.body.text).toContain("use_tool");
    expect(ev.turn?.seed).toBeGreaterThanOrEqual(0);
  });

  it("answers 502 when the model cannot be asked, and reports nothing", async () => {
    const before = (await readFailures(failureFile)).length;
    await model.stop();
    try {
      const r = await chat(url, "what is 2 + 2");
      expect(r).toEqual({ status: 502, body: { error: "the model is unavailable; try again" } });
    } finally {
      await model.start();
    }
    expect((await readFailures(failureFile)).length).toBe(before);
  });

  it("does not report what is not a bug: bad requests (400), refusals (422), unknown paths (404)", async () => {
    const before = (await readFailures(failureFile)).length;
    const bad = await fetch(`${url}/v1/chat`, { method: "POST", body: "not json" });
    expect(bad.status).toBe(400);
    const missing = await fetch(`${url}/v1/chat`, { method: "POST", body: JSON.stringify({ session: "s" }) });
    expect(missing.status).toBe(400);
    const divide = await chat(url, "1 / 0");
    expect(divide.status).toBe(422);
    expect((await fetch(`${url}/nope`)).status).toBe(404);
    expect((await fetch(`${url}/v1/chat`)).status).toBe(405);
    expect((await readFailures(failureFile)).length).toBe(before);
  });
});
