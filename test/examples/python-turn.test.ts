// The Python reporter's turns: `with reporter.turn():` records the calls made through http.client (urllib here) into
// the failure's cassette with the before-turn state, the state left behind, the clock and the seed; in a trial
// (MOSS_REPLAY_PROXY) every call, HTTPS included, goes to the replay proxy with the original URL, and the turn has the
// failure's clock and seed.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Cassette, FailureEvent } from "@moss/contracts";
import { afterAll, describe, expect, it } from "vitest";

const EXAMPLE = fileURLToPath(new URL("../../examples/python-agent/", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "moss-py-turn-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SCRIPT = `
import json, os, sys, threading, http.server, urllib.request
sys.path.insert(0, ${JSON.stringify(EXAMPLE)})
from moss_report import MossReporter
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        b = self.rfile.read(int(self.headers.get("content-length", 0)))
        out = json.dumps({"got": b.decode(), "path": self.path, "replayUrl": self.headers.get("x-moss-replay-url")}).encode()
        self.send_response(200); self.send_header("content-type", "application/json"); self.send_header("content-length", str(len(out))); self.end_headers(); self.wfile.write(out)
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
port = srv.server_address[1]
mode, out_file, work = sys.argv[1], sys.argv[2], sys.argv[3]
state = os.path.join(work, "state-" + mode)
os.makedirs(state, exist_ok=True)
open(os.path.join(state, "s.json"), "w").write('{"n": 1}')
env = {"MOSS_REPLAY_FAILURE_FILE": out_file}
if mode == "trial":
    env.update({"MOSS_REPLAY_PROXY": "http://127.0.0.1:%d" % port, "MOSS_REPLAY_TIME": "2026-01-02T03:04:05.000Z", "MOSS_REPLAY_SEED": "7"})
r = MossReporter("py", "abcdef1", None, state_dir=state, env=env)
with r.turn():
    url = "http://127.0.0.1:%d/v1/x?a=1" % port if mode == "live" else "https://api.openai.com/v1/chat/completions"
    req = urllib.request.Request(url, data=b'{"q": 1}', headers={"Authorization": "Bearer s", "content-type": "application/json"}, method="POST")
    answer = json.loads(urllib.request.urlopen(req, timeout=5).read())
    open(os.path.join(state, "s.json"), "w").write('{"n": 2}')
    stamp, draw = r.now().isoformat(), r.random()
    try:
        raise KeyError("tags")
    except KeyError as e:
        r.capture(method="POST", path="/v1/chat", headers={}, body="{}", error=e)
print(json.dumps({"answer": answer, "now": stamp, "draw": draw, "port": port}))
`;

let n = 0;
const run = (mode: "live" | "trial") => {
  const file = join(dir, `${mode}-${++n}.jsonl`);
  const out = JSON.parse(execFileSync("/usr/bin/python3", ["-c", SCRIPT, mode, file, dir], { encoding: "utf8" })) as { answer: { got: string; path: string; replayUrl: string | null }; now: string; draw: number; port: number };
  const ev = FailureEvent.parse(JSON.parse(readFileSync(file, "utf8").trim()));
  return { out, ev };
};
const untar = (b64: string) => execFileSync("tar", ["-xOf", "-", "s.json"], { input: Buffer.from(b64, "base64") }).toString();

describe("the Python reporter's turn", () => {
  it("records the turn's urllib call, its before-turn and after-failure state, its clock and seed", () => {
    const { out, ev } = run("live");
    expect(out.answer).toEqual({ got: '{"q": 1}', path: "/v1/x?a=1", replayUrl: null });
    const c = Cassette.parse(ev.cassette!.inline);
    expect(c.failureId).toBe(ev.id);
    expect(c.calls).toHaveLength(1);
    expect(c.calls[0]).toMatchObject({ method: "POST", url: `http://127.0.0.1:${out.port}/v1/x?a=1`, body: { text: '{"q": 1}' }, response: { status: 200 } });
    expect(c.calls[0]!.headers["authorization"]).toBe("[redacted]");
    expect(JSON.parse(c.calls[0]!.response!.body.text)).toEqual(out.answer);
    expect(untar(ev.snapshot!.inlineBase64!)).toBe('{"n": 1}');
    expect(untar(ev.afterSnapshot!.inlineBase64!)).toBe('{"n": 2}');
    expect(Math.abs(Date.parse(ev.turn!.startedAt) - Date.parse(out.now))).toBeLessThan(5_000);
  });

  it("in a trial, sends the call to the replay proxy with its original URL, and gives the turn the failure's clock and seed", () => {
    const a = run("trial");
    const b = run("trial");
    expect(a.out.answer).toEqual({ got: '{"q": 1}', path: "/v1/chat/completions", replayUrl: "https://api.openai.com/v1/chat/completions" });
    expect(Date.parse(a.out.now) - Date.parse("2026-01-02T03:04:05.000Z")).toBeLessThan(2_000);
    expect(a.ev.turn).toEqual({ startedAt: "2026-01-02T03:04:05.000Z", seed: 7 });
    // The same seed, the same draws.
    expect(a.out.draw).toBe(b.out.draw);
    expect(a.ev.cassette).toBeUndefined();
  });

  it("a command agent reports its arguments and stdin instead of a request, and the event is a valid failure", () => {
    const code = `
import json, sys
sys.path.insert(0, ${JSON.stringify(EXAMPLE)})
from moss_report import MossReporter
r = MossReporter("py", "abcdef1", None, env={"MOSS_REPLAY_FAILURE_FILE": "/dev/null"})
try:
    raise ValueError("cannot summarize")
except ValueError as e:
    print(json.dumps(r.build_event(error=e, invocation={"args": ["summarize", "notes.txt"], "stdin": "text"}, response={"status": 2, "body": ""})))
`;
    const ev = FailureEvent.parse(JSON.parse(execFileSync("/usr/bin/python3", ["-c", code], { encoding: "utf8" })));
    expect(ev.invocation).toEqual({ args: ["summarize", "notes.txt"], stdin: "text" });
    expect(ev.request).toBeUndefined();
    expect(ev.response).toEqual({ status: 2, body: "" });
  });
});
