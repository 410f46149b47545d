import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { FailureEvent, Headers, Streams } from "@moss/contracts";
import { createReporter, MossSdkError, SdkErrorCodes, type Reporter } from "@moss/agent-sdk";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { freePort, startNats, type NatsServer } from "../helpers/nats";

const run = promisify(execFile);
const VERSION = "0123456789abcdef0123456789abcdef01234567";

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "moss-sdk-test-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Things a test opened, closed after it whatever happened. */
const cleanups: Array<() => Promise<unknown>> = [];
const reporters: Reporter[] = [];
afterEach(async () => {
  // Reporters first: they drain while their NATS server is still there.
  while (reporters.length > 0) await reporters.pop()!.close().catch(() => undefined);
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined);
});

async function dir(name: string): Promise<string> {
  const d = join(work, name);
  await mkdir(d, { recursive: true });
  return d;
}

async function nats(port?: number): Promise<{ srv: NatsServer; nc: NatsConnection; jsm: JetStreamManager }> {
  const srv = await startNats(port !== undefined ? { port } : {});
  cleanups.push(() => srv.stop());
  const nc = await connect({ servers: srv.url });
  cleanups.push(() => nc.close());
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: Streams.FAILURES, subjects: ["moss.failure.*"], duplicate_window: 600_000_000_000 });
  return { srv, nc, jsm };
}

function reporter(r: Reporter): Reporter {
  reporters.push(r);
  return r;
}

async function storedEvents(jsm: JetStreamManager): Promise<Array<{ subject: string; msgId: string | undefined; event: FailureEvent }>> {
  const info = await jsm.streams.info(Streams.FAILURES);
  const out = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(Streams.FAILURES, { seq });
    if (!m) continue;
    out.push({ subject: m.subject, msgId: m.header?.get(Headers.msgId), event: FailureEvent.parse(m.json()) });
  }
  return out;
}

async function eventually<T>(f: () => Promise<T>, ok: (v: T) => boolean, ms = 8_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function spoolLines(file: string): Promise<string[]> {
  try {
    return (await readFile(file, "utf8")).split("\n").filter(Boolean);
  } catch {
    return [];
  }
}

/** Every file under `root`, relative path → content (symlinks as `-> target`). */
async function tree(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(root, { recursive: true, withFileTypes: true })) {
    const abs = join(e.parentPath, e.name);
    const rel = abs.slice(root.length + 1);
    if (e.isSymbolicLink()) out[rel] = `-> ${await readlink(abs)}`;
    if (e.isFile()) out[rel] = await readFile(abs, "base64");
    if (e.isDirectory()) out[`${rel}/`] = "";
  }
  return out;
}

const boom = () => new TypeError("calculator: unsupported token 'usd'");

describe("createReporter with NATS up", () => {
  it("publishes a schema-valid failure with its Nats-Msg-Id, allow-listed env, last log lines and a tar snapshot of the state dir", async () => {
    const { srv, jsm } = await nats();
    const state = await dir("state-ok");
    await writeFile(join(state, "state.json"), JSON.stringify({ rates: { "USD/EUR": 0.92 }, turns: 3 }));
    await mkdir(join(state, "sub", "deep"), { recursive: true });
    await writeFile(join(state, "sub", "deep", "blob.bin"), Buffer.from([0, 1, 2, 255, 254]));
    await symlink("state.json", join(state, "current"));
    const spoolFile = join(work, "spool-ok.jsonl");
    const warnings: string[] = [];
    const r = reporter(
      createReporter({
        agent: "demo",
        version: VERSION,
        natsUrl: srv.url,
        stateDir: state,
        envAllow: ["TZ", "AGENT_MODE", "NOT_SET"],
        env: { TZ: "UTC", AGENT_MODE: "strict", SECRET_TOKEN: "s3cret", HOME: "/root" },
        logLines: 3,
        timeoutMs: 4_000,
        spoolFile,
        onWarning: (m) => warnings.push(m),
      }),
    );
    for (let i = 1; i <= 5; i++) r.log(`line ${i}`);
    const id = await r.captureFailure({
      request: { method: "post", path: "/v1/chat", headers: { "content-type": "application/json", Authorization: "Bearer x", "x-many": ["a", "b"] }, body: { session: "s1", message: "convert 100 USD to EUR" } },
      error: boom(),
      route: "calculator",
      response: { status: 500, body: '{"error":"internal error"}' },
      tags: { tool: "calculator" },
    });
    expect(id).toMatch(/^[A-Za-z0-9_-]{1,128}$/);

    const stored = await storedEvents(jsm);
    expect(stored).toHaveLength(1);
    const { subject, msgId, event } = stored[0]!;
    expect(subject).toBe("moss.failure.demo");
    expect(msgId).toBe(id);
    expect(event.id).toBe(id);
    expect(event.version).toBe(VERSION);
    expect(event.route).toBe("calculator");
    expect(event.env).toEqual({ TZ: "UTC", AGENT_MODE: "strict" });
    expect(event.logs).toEqual(["line 3", "line 4", "line 5"]);
    expect(event.timeoutMs).toBe(4_000);
    expect(event.error.type).toBe("TypeError");
    expect(event.error.message).toBe("calculator: unsupported token 'usd'");
    expect(event.error.stack).toContain("reporter.test.ts");
    expect(event.request).toMatchObject({ method: "POST", path: "/v1/chat", body: '{"session":"s1","message":"convert 100 USD to EUR"}' });
    expect(event.request!.headers).toEqual({ "content-type": "application/json", authorization: "[redacted]", "x-many": "a, b" });
    expect(event.response).toEqual({ status: 500, body: '{"error":"internal error"}' });
    expect(event.tags).toEqual({ tool: "calculator" });
    expect(Date.now() - Date.parse(event.occurredAt)).toBeLessThan(60_000);

    // The snapshot is a plain tar with paths relative to the state dir: untar it with tar(1) and compare.
    expect(event.snapshot?.path).toBe(state);
    const tarFile = join(work, "snap.tar");
    await writeFile(tarFile, Buffer.from(event.snapshot!.inlineBase64!, "base64"));
    const listing = (await run("tar", ["-tf", tarFile])).stdout.split("\n").filter(Boolean).sort();
    expect(listing).toEqual(["current", "state.json", "sub/", "sub/deep/", "sub/deep/blob.bin"]);
    const restored = await dir("restored");
    await run("tar", ["-xf", tarFile, "-C", restored]);
    expect(await tree(restored)).toEqual(await tree(state));

    await r.close();
    expect(await spoolLines(spoolFile)).toEqual([]);
    expect(warnings).toEqual([]);
  });

  it("attaches no snapshot (and warns) when the state dir is over 1 MiB, but still delivers the failure", async () => {
    const { srv, jsm } = await nats();
    const state = await dir("state-big");
    await writeFile(join(state, "big.bin"), Buffer.alloc(1024 * 1024 + 1, 7));
    const warnings: string[] = [];
    const r = reporter(createReporter({ agent: "demo", version: VERSION, natsUrl: srv.url, stateDir: state, spoolFile: join(work, "spool-big.jsonl"), onWarning: (m) => warnings.push(m) }));
    const id = await r.captureFailure({ request: { path: "/v1/chat", body: "{}" }, error: new Error("x") });
    const [stored] = await storedEvents(jsm);
    expect(stored?.event.id).toBe(id);
    expect(stored?.event.snapshot).toBeUndefined();
    expect(warnings.join("\n")).toMatch(/no state snapshot attached.*more than the 1048576 allowed/);
  });

  it("leaves out the snapshot (and says why) when the event would be over the server's max payload, and delivers the rest", async () => {
    const { srv, jsm } = await nats();
    const state = await dir("state-near-limit");
    // ~900 KiB of tar fits the SDK's 1 MiB inline limit, but as base64 inside the event it is over NATS's 1 MiB.
    await writeFile(join(state, "big.bin"), Buffer.alloc(900 * 1024, 7));
    const warnings: string[] = [];
    const r = reporter(createReporter({ agent: "demo", version: VERSION, natsUrl: srv.url, stateDir: state, spoolFile: join(work, "spool-near.jsonl"), onWarning: (m) => warnings.push(m) }));
    const id = await r.captureFailure({ request: { path: "/v1/chat", body: "{}" }, error: new Error("x") });
    const [stored] = await storedEvents(jsm);
    expect(stored?.event.id).toBe(id);
    expect(stored?.event.snapshot).toBeUndefined();
    expect(warnings.join("\n")).toMatch(/left out its snapshot .* over the NATS server's max payload of 1048576 bytes; set uploadSnapshot/);
    expect(await spoolLines(join(work, "spool-near.jsonl"))).toEqual([]);
  });

  it("never rejects: odd throws and oversized bodies still make a valid event", async () => {
    const { srv, jsm } = await nats();
    const r = reporter(createReporter({ agent: "demo", version: VERSION, natsUrl: srv.url, spoolFile: join(work, "spool-odd.jsonl"), onWarning: () => undefined }));
    const circular: Record<string, unknown> = { a: 1 };
    circular.self = circular;
    const ids = await Promise.all([
      r.captureFailure({ request: { path: "/a", body: "x".repeat(2_000_000) }, error: "just a string" }),
      r.captureFailure({ request: { path: "/b" }, error: circular, route: "r".repeat(500) }),
      r.captureFailure({ request: { path: "/c" }, error: new Error("outer", { cause: new RangeError("inner") }) }),
    ]);
    const events = (await storedEvents(jsm)).map((s) => s.event);
    expect(events.map((e) => e.id).sort()).toEqual([...ids].sort());
    const byPath = Object.fromEntries(events.map((e) => [e.request!.path, e]));
    expect(byPath["/a"]!.error).toMatchObject({ type: "NonError(string)", message: "just a string" });
    expect(byPath["/a"]!.request!.body!.length).toBe(1_000_000);
    expect(byPath["/b"]!.error.type).toBe("NonErrorObject");
    expect(byPath["/b"]!.route!.length).toBe(200);
    expect(byPath["/c"]!.error.stack).toMatch(/Caused by: RangeError: inner/);
  });

  it("refuses, at creation, a version that is not a git sha or a bad agent name", () => {
    expect(() => createReporter({ agent: "demo", version: "dev" })).toThrow(MossSdkError);
    expect(() => createReporter({ agent: "demo", version: "dev" })).toThrow(/MOSS_AGENT_VERSION/);
    try {
      createReporter({ agent: "Not OK", version: VERSION });
      expect.unreachable();
    } catch (e) {
      expect((e as MossSdkError).code).toBe(SdkErrorCodes.config);
    }
  });
});

describe("createReporter with NATS down", () => {
  it("spools the failure, resolves promptly, and delivers it on close() once NATS is back", async () => {
    const port = await freePort();
    const spoolFile = join(work, "spool-down.jsonl");
    const r = reporter(createReporter({ agent: "demo", version: VERSION, natsUrl: `nats://127.0.0.1:${port}`, spoolFile, publishTimeoutMs: 1_000, retryIntervalMs: 60_000, onWarning: () => undefined }));
    const t0 = Date.now();
    const id = await r.captureFailure({ request: { path: "/v1/chat", body: "{}" }, error: new Error("down") });
    expect(Date.now() - t0).toBeLessThan(2_500);
    const lines = await spoolLines(spoolFile);
    expect(lines).toHaveLength(1);
    expect(FailureEvent.parse(JSON.parse(lines[0]!)).id).toBe(id);

    const { jsm } = await nats(port);
    await r.close();
    const stored = await storedEvents(jsm);
    expect(stored.map((s) => [s.msgId, s.event.id])).toEqual([[id, id]]);
    expect(await spoolLines(spoolFile)).toEqual([]);
  });

  it("delivers the spooled failure with the next capture once NATS is back", async () => {
    const port = await freePort();
    const spoolFile = join(work, "spool-next.jsonl");
    const r = reporter(createReporter({ agent: "demo", version: VERSION, natsUrl: `nats://127.0.0.1:${port}`, spoolFile, publishTimeoutMs: 1_000, retryIntervalMs: 60_000, onWarning: () => undefined }));
    const first = await r.captureFailure({ request: { path: "/first" }, error: new Error("1") });
    expect(await spoolLines(spoolFile)).toHaveLength(1);
    const { jsm } = await nats(port);
    const second = await r.captureFailure({ request: { path: "/second" }, error: new Error("2") });
    const stored = await eventually(() => storedEvents(jsm), (s) => s.length >= 2);
    expect(stored.map((s) => s.event.id).sort()).toEqual([first, second].sort());
    expect(await spoolLines(spoolFile)).toEqual([]);
  });

  it("a new reporter sends what an earlier one left in the spool, in the background, without any new failure", async () => {
    const port = await freePort();
    const spoolFile = join(work, "spool-restart.jsonl");
    const old = createReporter({ agent: "demo", version: VERSION, natsUrl: `nats://127.0.0.1:${port}`, spoolFile, publishTimeoutMs: 500, onWarning: () => undefined });
    const id = await old.captureFailure({ request: { path: "/old" }, error: new Error("before restart") });
    await old.close(); // NATS still down: the event stays spooled
    expect(await spoolLines(spoolFile)).toHaveLength(1);

    const { srv, jsm } = await nats(port);
    reporter(createReporter({ agent: "demo", version: VERSION, natsUrl: srv.url, spoolFile, retryIntervalMs: 100, onWarning: () => undefined }));
    const stored = await eventually(() => storedEvents(jsm), (s) => s.length >= 1);
    expect(stored.map((s) => s.event.id)).toEqual([id]);
    expect(await eventually(() => spoolLines(spoolFile), (l) => l.length === 0)).toEqual([]);
  });

  it("spools when the server is up but no stream takes moss.failure.* yet, and the dedup id prevents doubles on resend", async () => {
    const srv = await startNats();
    cleanups.push(() => srv.stop());
    const spoolFile = join(work, "spool-nostream.jsonl");
    const r = reporter(createReporter({ agent: "demo", version: VERSION, natsUrl: srv.url, spoolFile, publishTimeoutMs: 1_000, retryIntervalMs: 60_000, onWarning: () => undefined }));
    const id = await r.captureFailure({ request: { path: "/x" }, error: new Error("no stream") });
    expect(await spoolLines(spoolFile)).toHaveLength(1);
    const nc = await connect({ servers: srv.url });
    cleanups.push(() => nc.close());
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: Streams.FAILURES, subjects: ["moss.failure.*"] });
    // Simulate a resend of an event that had in fact arrived: append the same line again.
    const line = (await spoolLines(spoolFile))[0]!;
    await writeFile(spoolFile, `${line}\n${line}\n`);
    await r.close();
    const stored = await storedEvents(jsm);
    expect(stored.map((s) => s.event.id)).toEqual([id]);
  });
});

describe("createReporter when NATS goes away mid-life", () => {
  it("spools while the server is gone and the background retry delivers each failure exactly once after it restarts", async () => {
    const first = await nats();
    const spoolFile = join(work, "spool-flap.jsonl");
    const r = reporter(createReporter({ agent: "demo", version: VERSION, natsUrl: first.srv.url, spoolFile, publishTimeoutMs: 800, retryIntervalMs: 300, onWarning: () => undefined }));
    const before = await r.captureFailure({ request: { path: "/before" }, error: new Error("while up") });
    await first.nc.close();
    await first.srv.stop({ graceful: true, keepStore: true });

    const t0 = Date.now();
    const during = await r.captureFailure({ request: { path: "/during" }, error: new Error("while down") });
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect((await spoolLines(spoolFile)).map((l) => (JSON.parse(l) as { id: string }).id)).toEqual([during]);

    // Same port, same store: the stream (and its dedup window) survive the restart.
    const srv = await startNats({ port: first.srv.port, storeDir: first.srv.storeDir });
    cleanups.push(() => srv.stop());
    const nc = await connect({ servers: srv.url });
    cleanups.push(() => nc.close());
    const jsm = await jetstreamManager(nc);
    const stored = await eventually(() => storedEvents(jsm), (s) => s.length >= 2, 10_000);
    expect(stored.map((s) => s.event.id).sort()).toEqual([before, during].sort());
    expect(await spoolLines(spoolFile)).toEqual([]);
    await r.close();
    // The client may also have re-sent its own buffered publish on reconnect: the dedup id keeps one copy.
    expect((await storedEvents(jsm)).length).toBe(2);
  });

  it("close() is bounded when the server died under an open connection, and keeps the failure spooled", async () => {
    const { srv, nc } = await nats();
    const spoolFile = join(work, "spool-dead.jsonl");
    const r = createReporter({ agent: "demo", version: VERSION, natsUrl: srv.url, spoolFile, publishTimeoutMs: 500, retryIntervalMs: 60_000, onWarning: () => undefined });
    await r.captureFailure({ request: { path: "/up" }, error: new Error("up") });
    await nc.close();
    await srv.stop({ graceful: true, keepStore: true });
    const id = await r.captureFailure({ request: { path: "/down" }, error: new Error("down") });
    const t0 = Date.now();
    await r.close();
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect((await spoolLines(spoolFile)).map((l) => (JSON.parse(l) as { id: string }).id)).toEqual([id]);
  });
});

describe("replay mode (MOSS_REPLAY_FAILURE_FILE)", () => {
  let fake: Server;
  let connections = 0;
  const sockets: Socket[] = [];
  beforeAll(async () => {
    fake = createServer((s) => {
      connections++;
      sockets.push(s);
    });
    await new Promise<void>((r) => fake.listen(0, "127.0.0.1", r));
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => fake.close(r));
  });

  it("appends each failure as one JSON line to the file and never opens a connection", async () => {
    const addr = fake.address();
    const port = typeof addr === "object" && addr ? addr.port : 0;
    const file = join(work, "replay-failures.jsonl");
    const spoolFile = join(work, "spool-replay.jsonl");
    const r = reporter(
      createReporter({
        agent: "demo",
        version: VERSION,
        natsUrl: `nats://127.0.0.1:${port}`,
        spoolFile,
        envAllow: ["TZ"],
        env: { MOSS_REPLAY_FAILURE_FILE: file, TZ: "UTC" },
      }),
    );
    const a = await r.captureFailure({ request: { path: "/v1/chat", body: "{}" }, error: new Error("a") });
    const b = await r.captureFailure({ request: { path: "/v1/chat", body: "{}" }, error: new Error("b") });
    await r.close();
    const lines = (await readFile(file, "utf8")).split("\n").filter(Boolean);
    expect(lines.map((l) => FailureEvent.parse(JSON.parse(l)).id)).toEqual([a, b]);
    expect(FailureEvent.parse(JSON.parse(lines[0]!)).env).toEqual({ TZ: "UTC" });
    await new Promise((res) => setTimeout(res, 200));
    expect(connections).toBe(0);
    expect(await spoolLines(spoolFile)).toEqual([]);
  });
});
