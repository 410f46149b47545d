// reporter.captureSuccess(): sampled successful turns, each with its before-turn state, its cassette and its answer, on
// moss.success.<agent> — capped per route, off by default, never in a trial, skipped (with the reason) when its replay
// could not be faithful.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { createReporter, MossSdkError, type MossReporterOptions } from "@moss/agent-sdk";
import { Streams, SuccessEvent } from "@moss/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNats, type NatsServer } from "../helpers/nats";

const VERSION = "0123456789abcdef0123456789abcdef01234567";
let srv: NatsServer;
let nc: NatsConnection;
let jsm: JetStreamManager;
let model: Server;
let base: string;
const dir = mkdtempSync(join(tmpdir(), "moss-sdk-success-"));

beforeAll(async () => {
  srv = await startNats();
  nc = await connect({ servers: srv.url });
  jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: Streams.SUCCESSES, subjects: ["moss.success.*"], duplicate_window: 600_000_000_000 });
  model = createServer((_req, res) => res.end('{"choice":"calculator"}'));
  await new Promise<void>((r) => model.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(model.address() as { port: number }).port}`;
});
afterAll(async () => {
  model?.close();
  await nc?.close();
  await srv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function stored(): Promise<Array<{ subject: string; msgId?: string; event: SuccessEvent }>> {
  const info = await jsm.streams.info(Streams.SUCCESSES);
  const out = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(Streams.SUCCESSES, { seq });
    if (m) out.push({ subject: m.subject, msgId: m.header?.get("Nats-Msg-Id"), event: SuccessEvent.parse(m.json()) });
  }
  return out;
}

const reporterFor = (agent: string, o: Partial<MossReporterOptions> = {}) => {
  const warnings: string[] = [];
  const r = createReporter({ agent, version: VERSION, natsUrl: srv.url, env: {}, onWarning: (w) => warnings.push(w), ...o });
  return { r, warnings };
};

describe("reporter.captureSuccess", () => {
  it("sends a sampled turn with the state it started from, its outbound calls and its answer, on moss.success.<agent>", async () => {
    const state = mkdtempSync(join(dir, "state-"));
    writeFileSync(join(state, "rates.json"), '{"USD":{}}');
    const { r } = reporterFor("calc", { stateDir: state, sampleRate: 1 });
    const id = await r.turn(async () => {
      await (await fetch(`${base}/v1/chat/completions`, { method: "POST", body: '{"q":"2 + 3"}' })).text();
      // The turn changes the state: the recorded snapshot is the one before.
      writeFileSync(join(state, "rates.json"), '{"USD":{"EUR":0.92}}');
      return r.captureSuccess({ request: { path: "/v1/chat", headers: { authorization: "Bearer secret" }, body: { message: "what is 2 + 3" } }, route: "calculator", response: { status: 200, body: '{"answer":"5"}' } });
    });
    await r.close();
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    const [m] = (await stored()).filter((x) => x.event.agent === "calc");
    expect(m).toMatchObject({ subject: "moss.success.calc", msgId: id });
    const ev = m!.event;
    expect(ev).toMatchObject({ schema: "moss.success.v1", id, route: "calculator", response: { status: 200, body: '{"answer":"5"}' }, request: { method: "POST", path: "/v1/chat", headers: { authorization: "[redacted]" } } });
    expect(ev.turn).toMatchObject({ seed: expect.any(Number) });
    expect(ev.cassette!.inline!.failureId).toBe(id);
    expect(ev.cassette!.inline!.calls.map((c) => [c.method, c.url, c.response?.body.text])).toEqual([["POST", `${base}/v1/chat/completions`, '{"choice":"calculator"}']]);
    const before = execFileSync("tar", ["-xOf", "-", "rates.json"], { input: Buffer.from(ev.snapshot!.inlineBase64!, "base64") }).toString();
    expect(before).toBe('{"USD":{}}');
  });

  it("records at most successesPerRoute a minute per route; other routes still go", async () => {
    const { r } = reporterFor("capped", { sampleRate: 1, successesPerRoute: 2 });
    const say = (route: string) => r.turn(() => r.captureSuccess({ request: { path: "/v1/chat", body: route }, route, response: { status: 200 } }));
    const got = [await say("a"), await say("a"), await say("a"), await say("b")];
    await r.close();
    expect(got.map((x) => x !== undefined)).toEqual([true, true, false, true]);
    expect((await stored()).filter((x) => x.event.agent === "capped").map((x) => x.event.route)).toEqual(["a", "a", "b"]);
  });

  it("is off by default; MOSS_SAMPLE_RATE turns it on; a rate outside 0..1 is refused where it is set", async () => {
    const off = reporterFor("off");
    expect(await off.r.turn(() => off.r.captureSuccess({ request: { path: "/x" }, response: { status: 200 } }))).toBeUndefined();
    await off.r.close();
    const on = reporterFor("onbyenv", { env: { MOSS_SAMPLE_RATE: "1" } });
    expect(await on.r.turn(() => on.r.captureSuccess({ request: { path: "/x" }, response: { status: 200 } }))).toMatch(/^[0-9a-f]{32}$/);
    await on.r.close();
    expect((await stored()).filter((x) => x.event.agent === "off")).toEqual([]);
    expect(() => reporterFor("bad", { sampleRate: 2 })).toThrow(MossSdkError);
    expect(() => reporterFor("bad", { env: { MOSS_SAMPLE_RATE: "often" } })).toThrow(/sampleRate \(or MOSS_SAMPLE_RATE\) must be a number from 0 to 1/);
  });

  it("records nothing in a trial, and skips (saying why) a success whose start state is unknown", async () => {
    const file = join(dir, "trial.jsonl");
    writeFileSync(file, "");
    const trial = reporterFor("trial", { sampleRate: 1, env: { MOSS_REPLAY_FAILURE_FILE: file } });
    expect(await trial.r.turn(() => trial.r.captureSuccess({ request: { path: "/x" }, response: { status: 200 } }))).toBeUndefined();
    await trial.r.close();
    expect(readFileSync(file, "utf8")).toBe("");
    const outside = reporterFor("outside", { sampleRate: 1, stateDir: dir });
    expect(await outside.r.captureSuccess({ request: { path: "/x" }, response: { status: 200 } })).toBeUndefined();
    await outside.r.close();
    expect(outside.warnings.join("\n")).toMatch(/not recorded: captureSuccess was called outside reporter.turn\(\), so the state it started from is unknown/);
    expect((await stored()).filter((x) => ["trial", "outside"].includes(x.event.agent))).toEqual([]);
  });
});
