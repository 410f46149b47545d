// reporter.turn(): each turn's fetch calls go into its own failure's cassette (concurrent turns never mix, calls
// outside a turn are not recorded), with its clock and seed; in a trial, fetch goes to the replay proxy.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createReporter, seededRandom } from "@moss/agent-sdk";
import { FailureEvent } from "@moss/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

let server: Server;
let base: string;
const seen: { url: string; replayUrl?: string }[] = [];
const dir = mkdtempSync(join(tmpdir(), "moss-sdk-turn-"));

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push({ url: req.url!, replayUrl: req.headers["x-moss-replay-url"] as string | undefined });
    setTimeout(() => res.end(JSON.stringify({ echo: req.url })), Number(new URL(req.url!, "http://x").searchParams.get("delay") ?? 0));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => {
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

const events = (file: string) => readFileSync(file, "utf8").trim().split("\n").map((l) => FailureEvent.parse(JSON.parse(l)));

describe("reporter.turn", () => {
  it("records each turn's calls in its own cassette; calls outside a turn are not recorded", async () => {
    const file = join(dir, "a.jsonl");
    const r = createReporter({ agent: "t", version: "abcdef1", env: { MOSS_REPLAY_FAILURE_FILE: file } });
    await fetch(`${base}/outside`);
    const turn = (name: string, delay: number) =>
      r.turn(async () => {
        await fetch(`${base}/${name}/1?delay=${delay}`);
        await fetch(`${base}/${name}/2`, { method: "POST", body: JSON.stringify({ n: name }), headers: { "x-api-key": "secret" } });
        return r.captureFailure({ request: { path: `/${name}` }, error: new Error(name) });
      });
    await Promise.all([turn("a", 30), turn("b", 0)]);
    await r.close();
    const byPath = Object.fromEntries(events(file).map((e) => [e.request!.path, e]));
    for (const name of ["a", "b"]) {
      const c = byPath[`/${name}`]!.cassette!.inline!;
      expect(c.failureId).toBe(byPath[`/${name}`]!.id);
      expect(c.calls.map((x) => `${x.method} ${new URL(x.url).pathname}`)).toEqual([`GET /${name}/1`, `POST /${name}/2`]);
      expect(c.calls[1]!.headers["x-api-key"]).toBe("[redacted]");
      expect(JSON.parse(c.calls[1]!.body!.text)).toEqual({ n: name });
      expect(JSON.parse(c.calls[0]!.response!.body.text)).toEqual({ echo: `/${name}/1?delay=${name === "a" ? 30 : 0}` });
      expect(byPath[`/${name}`]!.turn!.seed).toBeGreaterThanOrEqual(0);
    }
  });

  it("a command agent reports its arguments and stdin instead of a request", async () => {
    const file = join(dir, "cmd.jsonl");
    const r = createReporter({ agent: "t", version: "abcdef1", env: { MOSS_REPLAY_FAILURE_FILE: file } });
    await r.turn(() => r.captureFailure({ invocation: { args: ["summarize", "notes.txt"], stdin: "some text" }, error: new Error("no summary"), response: { status: 1, body: "" } }));
    await r.close();
    const [ev] = events(file);
    expect(ev!.invocation).toEqual({ args: ["summarize", "notes.txt"], stdin: "some text" });
    expect(ev!.request).toBeUndefined();
    expect(ev!.turn).toBeDefined();
  });

  it("in a trial, the turn has the failure's clock and seed, and every fetch goes to the replay proxy", async () => {
    const file = join(dir, "b.jsonl");
    seen.length = 0;
    const r = createReporter({ agent: "t", version: "abcdef1", env: { MOSS_REPLAY_FAILURE_FILE: file, MOSS_REPLAY_TIME: "2026-01-02T03:04:05.000Z", MOSS_REPLAY_SEED: "7" } });
    const got = await r.turn(async () => ({ now: r.now(), draws: [r.random(), r.random()] }));
    expect(got.now.getTime() - Date.parse("2026-01-02T03:04:05.000Z")).toBeLessThan(1_000);
    const rng = seededRandom(7);
    expect(got.draws).toEqual([rng(), rng()]);
    // Outside a turn: the real clock.
    expect(Math.abs(r.now().getTime() - Date.now())).toBeLessThan(1_000);
    await r.close();
    // The replay proxy (here the test's server) gets every call, HTTPS included, the original URL in a header.
    const inTrial = createReporter({ agent: "t", version: "abcdef1", env: { MOSS_REPLAY_FAILURE_FILE: file, MOSS_REPLAY_PROXY: base } });
    await inTrial.turn(() => fetch("https://api.openai.com/v1/models?limit=1"));
    expect(seen).toEqual([{ url: "/v1/models?limit=1", replayUrl: "https://api.openai.com/v1/models?limit=1" }]);
    await inTrial.close();
  });
});
