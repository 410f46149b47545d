// The Python reporter records and redirects httpx (sync and async) as it does http.client. httpx is not part of the
// distribution's python3 here: the test installs it from the package registry into a cache directory of its own
// (a minute the first time), never into the system.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FailureEvent } from "@moss/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const EXAMPLE = fileURLToPath(new URL("../../examples/python-agent/", import.meta.url));
const DEPS = join(tmpdir(), "moss-test-pydeps-httpx");
const dir = mkdtempSync(join(tmpdir(), "moss-py-httpx-"));
const env = { ...process.env, PYTHONPATH: DEPS };
const hasHttpx = () => {
  try {
    execFileSync("/usr/bin/python3", ["-c", "import httpx"], { env, stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
};

beforeAll(() => {
  if (hasHttpx()) return;
  try {
    execFileSync("/usr/bin/python3", ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", DEPS, "httpx"], { stdio: "pipe", timeout: 240_000 });
  } catch (err) {
    throw new Error(`httpx could not be installed from the package registry into ${DEPS}: ${String((err as { stderr?: Buffer }).stderr ?? err).slice(-500)}`);
  }
  if (!hasHttpx()) throw new Error(`httpx was installed into ${DEPS} but does not import`);
}, 300_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SCRIPT = `
import asyncio, json, os, sys, threading, http.server
sys.path.insert(0, ${JSON.stringify(EXAMPLE)})
from moss_report import MossReporter
import httpx
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        b = self.rfile.read(int(self.headers.get("content-length", 0)))
        out = json.dumps({"got": b.decode(), "path": self.path, "replayUrl": self.headers.get("x-moss-replay-url")}).encode()
        self.send_response(200); self.send_header("content-type", "application/json"); self.send_header("content-length", str(len(out))); self.end_headers(); self.wfile.write(out)
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
port = srv.server_address[1]
mode, out_file = sys.argv[1], sys.argv[2]
env = {"MOSS_REPLAY_FAILURE_FILE": out_file}
if mode == "trial":
    env["MOSS_REPLAY_PROXY"] = "http://127.0.0.1:%d" % port
r = MossReporter("py", "abcdef1", None, env=env)
url = "http://127.0.0.1:%d/v1/x" % port if mode == "live" else "https://api.openai.com/v1/chat/completions"
async def ask():
    async with httpx.AsyncClient() as c:
        return (await c.post(url, content=b"async")).json()
with r.turn():
    a = httpx.post(url, json={"q": 1}, headers={"Authorization": "Bearer s"}).json()
    b = asyncio.run(ask())
    try:
        raise KeyError("x")
    except KeyError as e:
        r.capture(method="POST", path="/v1/chat", error=e)
print(json.dumps({"a": a, "b": b, "port": port}))
`;

let n = 0;
const run = (mode: "live" | "trial") => {
  const file = join(dir, `${mode}-${++n}.jsonl`);
  const out = JSON.parse(execFileSync("/usr/bin/python3", ["-c", SCRIPT, mode, file], { encoding: "utf8", env })) as { a: { path: string; replayUrl: string | null; got: string }; b: { path: string; replayUrl: string | null; got: string }; port: number };
  return { out, ev: FailureEvent.parse(JSON.parse(readFileSync(file, "utf8").trim())) };
};

describe("the Python reporter with httpx", { timeout: 60_000 }, () => {
  it("records a turn's httpx calls, sync and async, secrets redacted", () => {
    expect(existsSync(DEPS)).toBe(true);
    const { out, ev } = run("live");
    expect(out.a).toEqual({ got: '{"q":1}', path: "/v1/x", replayUrl: null });
    const calls = ev.cassette!.inline!.calls;
    expect(calls.map((c) => [c.method, c.url, c.body?.text, c.response?.status])).toEqual([
      ["POST", `http://127.0.0.1:${out.port}/v1/x`, '{"q":1}', 200],
      ["POST", `http://127.0.0.1:${out.port}/v1/x`, "async", 200],
    ]);
    expect(calls[0]!.headers["authorization"]).toBe("[redacted]");
    expect(JSON.parse(calls[1]!.response!.body.text)).toEqual(out.b);
  });

  it("in a trial, sends every httpx call to the replay proxy with its original URL, HTTPS included", () => {
    const { out, ev } = run("trial");
    for (const x of [out.a, out.b]) expect(x).toMatchObject({ path: "/v1/chat/completions", replayUrl: "https://api.openai.com/v1/chat/completions" });
    expect(ev.cassette).toBeUndefined();
  });
});
