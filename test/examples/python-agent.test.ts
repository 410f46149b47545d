import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createBlobStore } from "@moss/blob";
import { Buckets, FailureEvent, type BlobRef } from "@moss/contracts";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { freePort, waitFor } from "../helpers/nats";
import { batchesOf, startIngestStack, type IngestStack } from "../helpers/ingest";

const AGENT_PY = fileURLToPath(new URL("../../examples/python-agent/agent.py", import.meta.url));
const AGENT = "py-notes";
const PY_VERSION = "abcdef0123456789abcdef0123456789abcdef01";

interface PyAgent {
  url: string;
  stateDir: string;
  out: () => string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

const started: PyAgent[] = [];
afterEach(async () => {
  while (started.length) await started.pop()!.stop();
});

/** The Python agent as a child process (python3 agent.py), on a free port, with its own state dir. */
async function startPyAgent(env: Record<string, string>): Promise<PyAgent> {
  const port = await freePort();
  const stateDir = mkdtempSync(join(tmpdir(), "moss-py-state-"));
  const proc = spawn("python3", [AGENT_PY], {
    env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", HOME: process.env["HOME"] ?? "/tmp", PORT: String(port), STATE_DIR: stateDir, AGENT_NAME: AGENT, MOSS_AGENT_VERSION: PY_VERSION, TZ: "UTC", PYTHONDONTWRITEBYTECODE: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const agent: PyAgent = {
    url: `http://127.0.0.1:${port}`,
    stateDir,
    out: () => out,
    proc,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        const t = setTimeout(() => proc.kill("SIGKILL"), 8_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
  started.push(agent);
  await waitFor(async () => {
    if (proc.exitCode !== null) throw new Error(`python agent exited ${proc.exitCode}: ${out}`);
    return fetch(`${agent.url}/health`).then((r) => r.ok, () => false);
  }, 15_000, "the python agent to answer /health");
  return agent;
}

const chat = (a: PyAgent, message: string, headers: Record<string, string> = {}) =>
  fetch(`${a.url}/v1/chat`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify({ session: "s1", message }) });

/** A fake ingest that answers with the given statuses in turn (then 202), recording every body it got. */
async function fakeIngest(statuses: number[]): Promise<{ url: string; got: Array<{ auth?: string; body: Record<string, unknown> }>; close(): Promise<void> }> {
  const got: Array<{ auth?: string; body: Record<string, unknown> }> = [];
  const server: Server = createServer((req, res) => {
    let raw = "";
    req.on("data", (d: Buffer) => (raw += d.toString()));
    req.on("end", () => {
      got.push({ ...(req.headers.authorization ? { auth: req.headers.authorization } : {}), body: JSON.parse(raw) as Record<string, unknown> });
      const status = statuses.shift() ?? 202;
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(status === 202 ? { id: "x" } : { error: "MOSS_E_UNAVAILABLE", message: "retry with the same id" }));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}`, got, close: () => new Promise((r) => server.close(() => r())) };
}

describe("the Python agent reports to a real curator over HTTP ingest", () => {
  let env: IngestStack;
  beforeAll(async () => {
    // batchSize 3 and a long window: one failure leaves a collecting batch.
    env = await startIngestStack({ batchSize: 3, batchWindowMs: 60_000, name: "py-ingest" });
  });
  afterAll(async () => {
    await env?.stop();
  });

  it("a KeyError in a tool answers 500, and within seconds the curator holds it as a batch sample with its Python traceback", async () => {
    const py = await startPyAgent({ MOSS_INGEST_URL: env.ingestUrl });
    // Works when the optional field is there...
    const ok = await chat(py, "remember buy milk #shopping");
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ tool: "remember", answer: "noted #1: buy milk (shopping)" });
    // ...and fails when it is not.
    const bad = await chat(py, "remember call mom", { authorization: "Bearer user-secret" });
    expect(bad.status).toBe(500);
    const answer = (await bad.json()) as { error: string; detail: string; failureId: string };
    expect(answer.detail).toBe("KeyError: 'tags'");
    expect(answer.failureId).toMatch(/^[a-f0-9]{32}$/);

    const sample = await waitFor(() => sampleOf(env, AGENT, answer.failureId), 10_000, `the curator to file failure ${answer.failureId} (agent output: ${py.out()})`);
    const blob = createBlobStore({ kind: "fs", dir: join(env.config.paths.dataDir, "blobs") });
    const ev = FailureEvent.parse(JSON.parse((await blob.get(sample.event.sha256)).toString("utf8")));
    expect(ev).toMatchObject({ id: answer.failureId, agent: AGENT, version: PY_VERSION, route: "remember", timeoutMs: 10_000, env: { TZ: "UTC" } });
    expect(ev.error.type).toBe("KeyError");
    expect(ev.error.message).toBe("'tags'");
    expect(ev.error.stack).toMatch(/^Traceback \(most recent call last\):\n/);
    expect(ev.error.stack).toContain(`File "${AGENT_PY}", line`);
    expect(ev.error.stack).toContain("in tool_remember");
    expect(ev.error.stack!.trimEnd().split("\n").at(-1)).toBe("KeyError: 'tags'");
    expect(ev.request).toMatchObject({ method: "POST", path: "/v1/chat", body: JSON.stringify({ session: "s1", message: "remember call mom" }) });
    expect(ev.request!.headers["authorization"]).toBe("[redacted]");
    expect(ev.response?.status).toBe(500);
    expect(ev.logs.some((l) => l.includes("tool=remember"))).toBe(true);
    // The inline snapshot was moved to the blob store by the curator; it is the agent's state dir as a tar.
    expect(ev.snapshot?.path).toBe(py.stateDir);
    const tar = await blob.get(ev.snapshot!.blob!.sha256);
    const listing = spawnSync("tar", ["-tf", "-"], { input: tar }).stdout.toString().split("\n").filter(Boolean);
    expect(listing).toEqual(["notes.json"]);
    const contents = spawnSync("tar", ["-xOf", "-", "notes.json"], { input: tar }).stdout.toString();
    expect(JSON.parse(contents)).toMatchObject({ notes: [{ text: "buy milk", tags: ["shopping"] }] });

    // The agent keeps serving after reporting.
    expect((await chat(py, "recall milk")).status).toBe(200);
  });
});

describe("the Python agent's reporter, against a fake ingest", () => {
  it("retries 503s with backoff and the same id, sends the bearer token, and never slows the 500", async () => {
    const ingest = await fakeIngest([503, 503]);
    try {
      const py = await startPyAgent({ MOSS_INGEST_URL: ingest.url, MOSS_INGEST_TOKEN: "tok-0123456789abcdef" });
      const t0 = Date.now();
      const res = await chat(py, "remember water plants");
      expect(res.status).toBe(500);
      expect(Date.now() - t0).toBeLessThan(2_000);
      const { failureId } = (await res.json()) as { failureId: string };
      await waitFor(() => ingest.got.length >= 3, 15_000, `three delivery attempts (agent output: ${py.out()})`);
      expect(ingest.got.map((g) => g.body["id"])).toEqual([failureId, failureId, failureId]);
      expect(ingest.got.every((g) => g.auth === "Bearer tok-0123456789abcdef")).toBe(true);
      expect(FailureEvent.safeParse(ingest.got[2]!.body).success).toBe(true);
      expect(py.out()).toContain("curator unavailable");
      // Delivered: no more attempts.
      await new Promise((r) => setTimeout(r, 1_500));
      expect(ingest.got).toHaveLength(3);
    } finally {
      await ingest.close();
    }
  });

  it("drops an event the ingest rejects as invalid (400) instead of retrying it forever, and keeps serving", async () => {
    const ingest = await fakeIngest([400]);
    try {
      const py = await startPyAgent({ MOSS_INGEST_URL: ingest.url });
      expect((await chat(py, "remember a")).status).toBe(500);
      await waitFor(() => py.out().includes("rejected by the curator (400)"), 5_000, "the rejection warning");
      await new Promise((r) => setTimeout(r, 1_000));
      expect(ingest.got).toHaveLength(1);
      expect((await chat(py, "hello")).status).toBe(200);
    } finally {
      await ingest.close();
    }
  });

  it("answers 500 at once even when the ingest is unreachable", async () => {
    const dead = await freePort();
    const py = await startPyAgent({ MOSS_INGEST_URL: `http://127.0.0.1:${dead}` });
    const t0 = Date.now();
    const res = await chat(py, "remember x");
    expect(res.status).toBe(500);
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect((await chat(py, "remember y #t")).status).toBe(200);
    await waitFor(() => py.out().includes("curator unavailable"), 5_000, "a retry warning");
  });

  it("in replay mode (MOSS_REPLAY_FAILURE_FILE) writes the event as a JSON line and never calls the ingest", async () => {
    const ingest = await fakeIngest([]);
    const dir = mkdtempSync(join(tmpdir(), "moss-py-replay-"));
    try {
      const file = join(dir, "failures.jsonl");
      const py = await startPyAgent({ MOSS_INGEST_URL: ingest.url, MOSS_REPLAY_FAILURE_FILE: file });
      const res = await chat(py, "remember replayed");
      expect(res.status).toBe(500);
      const { failureId } = (await res.json()) as { failureId: string };
      const lines = readFileSync(file, "utf8").trim().split("\n");
      expect(lines).toHaveLength(1);
      const ev = FailureEvent.parse(JSON.parse(lines[0]!));
      expect(ev.id).toBe(failureId);
      expect(ev.error.type).toBe("KeyError");
      await new Promise((r) => setTimeout(r, 500));
      expect(ingest.got).toHaveLength(0);
    } finally {
      await ingest.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses to start without a valid version or an ingest URL, saying what to set", async () => {
    const run = (env: Record<string, string>) => spawnSync("python3", [AGENT_PY], { env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", PORT: "0", STATE_DIR: tmpdir(), PYTHONDONTWRITEBYTECODE: "1", ...env }, timeout: 10_000 });
    const noVersion = run({ MOSS_INGEST_URL: "http://127.0.0.1:1", MOSS_AGENT_VERSION: "main" });
    expect(noVersion.status).toBe(2);
    expect(noVersion.stderr.toString()).toContain("MOSS_AGENT_VERSION");
    const noUrl = run({ MOSS_AGENT_VERSION: PY_VERSION });
    expect(noUrl.status).toBe(2);
    expect(noUrl.stderr.toString()).toContain("MOSS_INGEST_URL");
  });
});

/**
 * The curator's sample of failure `id`: from the batch still collecting (curator state `agent.<name>` in
 * `moss_curator`) or from a closed batch record in `moss_batches`.
 */
async function sampleOf(env: IngestStack, agent: string, id: string): Promise<{ id: string; event: BlobRef } | undefined> {
  const state = await env.bus.kv(Buckets.curator);
  const e = await state.get(`agent.${agent}`);
  if (e?.operation === "PUT") {
    const s = e.json<{ open: Record<string, { samples: Array<{ id: string; event: BlobRef }> }>; closing: Record<string, { samples: Array<{ id: string; event: BlobRef }> }> }>();
    for (const b of [...Object.values(s.open), ...Object.values(s.closing)]) {
      const hit = b.samples.find((x) => x.id === id);
      if (hit) return hit;
    }
  }
  for (const b of await batchesOf(env.bus, agent)) {
    const hit = b.failures.find((f) => f.id === id);
    if (hit) return hit;
  }
  return undefined;
}
