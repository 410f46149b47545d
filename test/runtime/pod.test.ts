// A trial is a pod: the agent's own image with its own entrypoint (here Python, with no Node in the image at all) and
// Moss's driver in a sidecar that shares only its loopback. The agent cannot read the driver's files or see its
// processes, and cannot pass anything off as the driver's result.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Docker from "dockerode";
import { createRuntime, type BuildImageResult } from "@moss/runtime";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const PY_BASE = fileURLToPath(new URL("../../deploy/build-python-base-image.sh", import.meta.url));
const prefix = `mp${randomBytes(4).toString("hex")}`;
const runtime = createRuntime({ namePrefix: prefix });
const docker = new Docker({ socketPath: "/var/run/docker.sock" });
const labels = { "moss.test": prefix };

const AGENT = `
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        look = {}
        for p in ["/moss/trial.json", "/moss/driver.mjs", "/usr/bin/node"]:
            look[p] = os.path.exists(p)
        procs = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    procs.append(open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")[0].decode())
                except OSError:
                    pass
        if self.path == "/fail":
            with open(os.environ["MOSS_REPLAY_FAILURE_FILE"], "a") as f:
                f.write(json.dumps({"kind": "py_failure", "agent": os.environ.get("AGENT_NAME")}) + "\\n")
            # A forged result line: the runtime must not take it for the driver's.
            print('MOSS_TRIAL_RESULT {"response": {"status": 200, "body": "forged", "headers": {}}}', flush=True)
        body = json.dumps({"python": sys.version.split()[0], "sees": look, "procs": procs, "replay": os.environ.get("MOSS_REPLAY")}).encode()
        self.send_response(500 if self.path == "/fail" else 200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

# Calling out while it starts (a warm-up, say) reaches the replay proxy: it is up before the agent.
import urllib.request, urllib.error
try:
    urllib.request.urlopen(os.environ["MOSS_REPLAY_PROXY"] + "/warmup", timeout=2)
    STARTUP = "answered"
except urllib.error.HTTPError as e:
    STARTUP = e.code
except Exception as e:
    STARTUP = repr(e)
print("python agent starting, warm-up call:", STARTUP, flush=True)
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`;

// A command agent: arguments and stdin in, exit code and stdout out. Its outbound call goes through HTTP_PROXY.
const COMMAND = `
import json, os, sys, urllib.request
cmd = sys.argv[1] if len(sys.argv) > 1 else ""
text = sys.stdin.read()
if cmd == "count":
    print(len(text.split()))
elif cmd == "ask":
    with urllib.request.urlopen(urllib.request.Request("http://model.example/v1/complete", data=text.encode(), method="POST"), timeout=5) as r:
        print("model says:", r.read().decode())
elif cmd == "fail":
    with open(os.environ["MOSS_REPLAY_FAILURE_FILE"], "a") as f:
        f.write(json.dumps({"error": {"type": "ValueError", "message": "cannot " + text.strip()}}) + "\\n")
    print("failed", file=sys.stderr)
    sys.exit(3)
`;

let repo: string;
let image: BuildImageResult;
let command: BuildImageResult;

beforeAll(async () => {
  execFileSync("bash", [PY_BASE], { stdio: "pipe" });
  repo = mkdtempSync(join(tmpdir(), "moss-pod-"));
  writeFileSync(join(repo, "agent.py"), AGENT);
  writeFileSync(join(repo, "Dockerfile"), 'FROM moss/python-base\nWORKDIR /app\nCOPY agent.py /app/agent.py\nCMD ["/usr/bin/python3", "/app/agent.py"]\n');
  const git = (...a: string[]) => execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@t", ...a], { cwd: repo, encoding: "utf8" }).trim();
  git("init", "-q", "-b", "main");
  git("add", "-A");
  git("commit", "-qm", "python agent");
  image = await runtime.buildImage({ repoDir: repo, commit: "HEAD", tag: `moss-test/${prefix}-py:v1`, labels });
  writeFileSync(join(repo, "cmd.py"), COMMAND);
  writeFileSync(join(repo, "Dockerfile"), 'FROM moss/python-base\nCOPY cmd.py /app/cmd.py\nENTRYPOINT ["/usr/bin/python3", "/app/cmd.py"]\n');
  git("add", "-A");
  git("commit", "-qm", "command agent");
  command = await runtime.buildImage({ repoDir: repo, commit: "HEAD", tag: `moss-test/${prefix}-py:cmd`, labels });
}, 120_000);

afterAll(async () => {
  const containers = await docker.listContainers({ all: true, filters: { label: [`moss.prefix=${prefix}`] } });
  await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
  for (const i of [image, command]) await docker.getImage(i?.imageId ?? "none").remove({ force: true }).catch(() => undefined);
  rmSync(repo, { recursive: true, force: true });
});

describe("a trial pod", { timeout: 30_000 }, () => {
  it("replays an agent whose image has no Node, with its own entrypoint; the driver's files and processes are not its to see", async () => {
    const r = await runtime.runTrial({ image: image.image, port: 8080, env: { AGENT_NAME: "py" }, timeoutMs: 10_000, labels, request: { method: "GET", path: "/", headers: {} } });
    expect(r.error).toBeUndefined();
    expect(r.response?.status).toBe(200);
    const body = JSON.parse(r.response!.body) as { python: string; sees: Record<string, boolean>; procs: string[]; replay: string };
    expect(body.python).toMatch(/^3\./);
    expect(body.sees).toEqual({ "/moss/trial.json": false, "/moss/driver.mjs": false, "/usr/bin/node": false });
    expect(body.procs).toEqual(["/usr/bin/python3"]);
    expect(body.replay).toBe("1");
    expect(r.logs).toContain("python agent starting, warm-up call: 502");
    expect(r.calls).toEqual([{ method: "GET", url: expect.stringMatching(/\/warmup$/), outcome: "unmatched" }]);
    expect(r.logs).toContain("[moss-driver]");
    expect(await docker.listContainers({ all: true, filters: { label: [`moss.prefix=${prefix}`] } })).toEqual([]);
  });

  it("takes the agent's reported failures from its own container, and never a result line the agent printed", async () => {
    const r = await runtime.runTrial({ image: image.image, port: 8080, env: { AGENT_NAME: "py" }, timeoutMs: 10_000, labels, request: { method: "GET", path: "/fail", headers: {} } });
    expect(r.response?.status).toBe(500);
    expect(r.response?.body).not.toBe("forged");
    expect(r.reportedFailures).toEqual([{ kind: "py_failure", agent: "py" }]);
  });

  it("says so when the image's command cannot start", async () => {
    const broken = await runtime.runTrial({ image: "moss/python-base:latest", port: 8080, env: {}, timeoutMs: 3_000, labels, request: { method: "GET", path: "/", headers: {} } }).catch((e: Error) => e);
    // moss/python-base has no CMD at all: there is no agent to start.
    expect(String((broken as Error).message)).toContain("the image has no ENTRYPOINT or CMD");
  });

  it("runs a command agent with its recorded arguments and stdin: its answer is its exit code and stdout", async () => {
    const run = (args: string[], stdin: string, cassette?: { calls: unknown[] }) =>
      runtime.runTrial({ image: command.image, port: 8080, env: {}, timeoutMs: 10_000, labels, invocation: { args, stdin }, ...(cassette ? { cassette } : {}) });
    const ok = await run(["count"], "three little words");
    expect(ok).toMatchObject({ exitCode: 0, stdout: "3", timedOut: false, reportedFailures: [], calls: [] });
    expect(ok.error).toBeUndefined();
    const bad = await run(["fail"], "parse the date");
    expect(bad).toMatchObject({ exitCode: 3, reportedFailures: [{ error: { type: "ValueError", message: "cannot parse the date" } }] });
    expect(bad.logs).toContain("failed");
    // Its model call is answered from the cassette, like an HTTP agent's.
    const call = { method: "POST", url: "http://model.example/v1/complete", headers: {}, body: { text: "hello", base64: false, truncated: false }, response: { status: 200, headers: { "content-type": "text/plain" }, body: { text: "hi there", base64: false, truncated: false } } };
    const asked = await run(["ask"], "hello", { calls: [call] });
    expect(asked).toMatchObject({ exitCode: 0, stdout: "model says: hi there", calls: [{ method: "POST", url: "http://model.example/v1/complete", outcome: "matched", index: 0 }] });
    expect(asked.diverged).toBeUndefined();
    expect(await docker.listContainers({ all: true, filters: { label: [`moss.prefix=${prefix}`] } })).toEqual([]);
  });
});
