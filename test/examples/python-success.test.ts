// The Python reporter's recorded successes: inside a turn, `capture_success` sends moss.success.v1 to the ingest's
// /v1/successes with the before-turn state, the cassette and the answer — valid per the contract's schema — sampled
// at MOSS_SAMPLE_RATE and capped per route per minute; nothing outside a turn when it has a state dir, nothing in a
// trial, nothing at rate 0.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SuccessEvent } from "@moss/contracts";
import { afterAll, describe, expect, it } from "vitest";

const EXAMPLE = fileURLToPath(new URL("../../examples/python-agent/", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "moss-py-success-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SCRIPT = `
import json, os, sys, threading, http.server, urllib.request
sys.path.insert(0, ${JSON.stringify(EXAMPLE)})
from moss_report import MossReporter
posted = []
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        b = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path == "/v1/successes": posted.append(json.loads(b))
        out = b'{"ok": true}'
        self.send_response(202 if self.path.startswith("/v1/") and self.path != "/v1/model" else 200)
        self.send_header("content-type", "application/json"); self.send_header("content-length", str(len(out))); self.end_headers(); self.wfile.write(out)
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
port = srv.server_address[1]
work, rate, trial = sys.argv[1], sys.argv[2], sys.argv[3] == "trial"
state = os.path.join(work, "state")
os.makedirs(state, exist_ok=True)
open(os.path.join(state, "s.json"), "w").write('{"n": 1}')
env = {"MOSS_SAMPLE_RATE": rate}
if trial: env["MOSS_REPLAY_FAILURE_FILE"] = os.path.join(work, "trial.jsonl")
warnings = []
r = MossReporter("py", "abcdef1", "http://127.0.0.1:%d" % port, state_dir=state, env=env, successes_per_route=3, warn=warnings.append)
ids = []
for i in range(5):
    with r.turn():
        req = urllib.request.Request("http://127.0.0.1:%d/v1/model" % port, data=b'{"q": %d}' % i, headers={"content-type": "application/json"}, method="POST")
        urllib.request.urlopen(req, timeout=5).read()
        open(os.path.join(state, "s.json"), "w").write('{"n": %d}' % (i + 2))
        ids.append(r.capture_success(method="POST", path="/v1/chat", headers={"Authorization": "Bearer x"}, body='{"message": "hi %d"}' % i, route="greet", response={"status": 200, "body": '{"answer": "hello"}'}))
outside = r.capture_success(method="POST", path="/v1/chat", route="other", response={"status": 200})
r.close()
print(json.dumps({"ids": ids, "outside": outside, "posted": posted, "warnings": warnings}))
`;

const run = (rate: string, mode: "live" | "trial" = "live") =>
  JSON.parse(execFileSync("/usr/bin/python3", ["-c", SCRIPT, mkdtempSync(join(dir, "w-")), rate, mode], { encoding: "utf8" })) as { ids: Array<string | null>; outside: string | null; posted: unknown[]; warnings: string[] };
const untar = (b64: string) => execFileSync("tar", ["-xOf", "-", "s.json"], { input: Buffer.from(b64, "base64") }).toString();

describe("the Python reporter's recorded successes", () => {
  it("sends a sampled good turn with its before-turn state, cassette and answer, valid per success.v1, at most successes_per_route a minute", () => {
    const out = run("1");
    // Three of five: the cap per route per minute.
    expect(out.ids.filter(Boolean)).toHaveLength(3);
    expect(out.posted).toHaveLength(3);
    const ev = SuccessEvent.parse(out.posted[0]);
    expect(ev).toMatchObject({ schema: "moss.success.v1", id: out.ids[0], agent: "py", version: "abcdef1", route: "greet", request: { method: "POST", path: "/v1/chat", body: '{"message": "hi 0"}' }, response: { status: 200, body: '{"answer": "hello"}' } });
    expect(ev.request!.headers["authorization"]).toBe("[redacted]");
    expect(untar(ev.snapshot!.inlineBase64!)).toBe('{"n": 1}');
    expect(ev.cassette!.inline!.calls).toEqual([expect.objectContaining({ method: "POST", body: expect.objectContaining({ text: `{"q": 0}` }) })]);
    expect(ev.turn).toMatchObject({ seed: expect.any(Number) });
    // Outside a turn, with a state directory, the state it started from is unknown: not recorded, and said so.
    expect(out.outside).toBeNull();
    expect(out.warnings.join("\n")).toContain("called outside reporter.turn(), so the state it started from is unknown");
  });

  it("records nothing at rate 0, and nothing in a trial", () => {
    const none = run("0");
    expect(none.ids).toEqual([null, null, null, null, null]);
    expect(none.posted).toEqual([]);
    const trial = run("1", "trial");
    expect(trial.ids).toEqual([null, null, null, null, null]);
    expect(trial.posted).toEqual([]);
  });

  it("refuses a sample rate that is not a number from 0 to 1, saying which variable", () => {
    expect(() => run("lots")).toThrow(/MOSS_SAMPLE_RATE='lots': a number from 0 to 1/);
  });
});
