// Each isolation rule of a trial pod, checked from inside the agent's container on the real engine, and four hostile
// programs (a fork bomb, a memory hog, an infinite loop, a process that ignores SIGTERM) contained, reported with the
// reason, and leaving nothing behind — also when the process running the trial is killed with SIGKILL mid-trial.
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Docker from "dockerode";
import { createRuntime, type TrialResult, type TrialSpec } from "@moss/runtime";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bridgeGateway } from "../helpers/docker";
import { makeTar } from "./fixture";

const prefix = `mi${randomBytes(3).toString("hex")}`;
const MEMORY = 192 * 2 ** 20;
const PIDS = 48;
const runtime = createRuntime({ namePrefix: prefix, trialMemoryBytes: MEMORY, trialPidsLimit: PIDS, trialCpus: 0.5, trialStartAllowanceMs: 1500 });
const docker = new Docker();
const tag = `moss-test/${prefix}-isolation:1`;
const STATE = "/var/lib/agent";

// One agent, many behaviours: GET /inspect reports what the agent can see and do; the others are hostile.
const APP = String.raw`
import http from "node:http";
import net from "node:net";
import os from "node:os";
import dns from "node:dns/promises";
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync, appendFileSync } from "node:fs";

const STATE = ${JSON.stringify(STATE)};
const tryWrite = (f) => { try { writeFileSync(f, "x"); return "ok"; } catch (e) { return e.code; } };
const read = (...files) => { for (const f of files) { try { return readFileSync(f, "utf8").trim(); } catch {} } return null; };
const connect = (host, port) => new Promise((resolve) => {
  const s = net.connect({ host, port, timeout: 1500 });
  s.on("connect", () => { s.destroy(); resolve("connected"); });
  s.on("timeout", () => { s.destroy(); resolve("timeout"); });
  s.on("error", (e) => resolve(e.code));
});
const status = Object.fromEntries(readFileSync("/proc/self/status", "utf8").split("\n").map((l) => l.split(":\t")).filter((p) => p.length === 2));

async function inspect(q) {
  return {
    uid: process.getuid(), gid: process.getgid(),
    capEff: status.CapEff?.trim(), capBnd: status.CapBnd?.trim(), noNewPrivs: status.NoNewPrivs?.trim(),
    writeApp: tryWrite("/app/planted.js"), writeEtc: tryWrite("/etc/planted"), writeTmp: tryWrite("/tmp/scratch"),
    writeState: tryWrite(STATE + "/new.json"), snapshotFile: read(STATE + "/saved.json"), baked: read(STATE + "/baked.txt") !== null,
    memory: read("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"),
    pids: read("/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max"),
    cpu: read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu.max"),
    interfaces: Object.keys(os.networkInterfaces()).sort(),
    host: await connect(q.get("host"), Number(q.get("port"))),
    peer: q.get("peer") ? await connect(q.get("peer"), Number(q.get("peerPort"))) : null,
    dns: await dns.lookup("example.com").then(() => "resolved", (e) => e.code),
  };
}

function forkBomb() {
  // Every child forks again, forever; a fork that fails is tried again at once.
  const go = () => {
    try {
      const c = spawn(process.execPath, [process.argv[1]], { env: { ...process.env, MODE: "bomb-child" }, stdio: "inherit" });
      c.on("error", (e) => { console.error("fork failed: " + e.code); setTimeout(go, 10); });
      c.on("spawn", () => setTimeout(go, 10));
    } catch (e) { console.error("fork failed: " + e.code); setTimeout(go, 10); }
  };
  go(); go();
}
if (process.env.MODE === "bomb-child") { forkBomb(); setInterval(() => {}, 1000); }
else {
  if (process.env.MODE === "ignore-term") process.on("SIGTERM", () => console.error("SIGTERM ignored"));
  http.createServer(async (req, res) => {
    const u = new URL(req.url, "http://agent");
    if (u.pathname === "/inspect") { res.writeHead(200, { "content-type": "application/json" }); return res.end(JSON.stringify(await inspect(u.searchParams))); }
    if (u.pathname === "/bomb") return forkBomb();
    if (u.pathname === "/hog") { const keep = []; for (;;) keep.push(Buffer.alloc(8 * 2 ** 20, 1)); }
    if (u.pathname === "/loop") { for (;;) {} }
    if (u.pathname === "/hang") return; // with MODE=ignore-term: never answers, never leaves on SIGTERM
    res.writeHead(404); res.end();
  }).listen(Number(process.env.PORT), "127.0.0.1");
}
`;

let repo: string;
let host: Server;
let hostPort: number;
const gateway = bridgeGateway();

beforeAll(async () => {
  repo = mkdtempSync(join(tmpdir(), "moss-isolation-"));
  writeFileSync(join(repo, "app.mjs"), APP);
  // The image runs as root (no USER) and bakes a state directory owned by root: the trial must still be nobody.
  writeFileSync(join(repo, "Dockerfile"), `FROM moss/node-base\nCOPY app.mjs /app/app.mjs\nCOPY app.mjs ${STATE}/baked.txt\nCMD ["/usr/bin/node", "/app/app.mjs"]\n`);
  const git = (...a: string[]) => execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@t", ...a], { cwd: repo, encoding: "utf8" }).trim();
  git("init", "-q");
  git("add", ".");
  git("commit", "-qm", "isolation agent");
  await runtime.buildImage({ repoDir: repo, commit: "HEAD", tag, labels: { "moss.test": prefix } });
  // A server on the host, on every address: what a trial with no network must not reach.
  host = createServer((s) => {
    s.on("error", () => undefined); // the trial hangs up at once
    s.end("hello");
  }).listen(0, "0.0.0.0");
  await new Promise((r) => host.once("listening", r));
  hostPort = (host.address() as { port: number }).port;
}, 120_000);

afterAll(async () => {
  host?.close();
  const filters = { label: [`moss.prefix=${prefix}`] };
  for (const c of await docker.listContainers({ all: true, filters })) await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
  for (const v of (await docker.listVolumes({ filters })).Volumes ?? []) await docker.getVolume(v.Name).remove().catch(() => undefined);
  await docker.getNetwork(`${prefix}-trials`).remove().catch(() => undefined);
  await docker.getImage(tag).remove({ force: true }).catch(() => undefined);
  if (repo) rmSync(repo, { recursive: true, force: true });
}, 60_000);

const trial = (over: Partial<TrialSpec>): Promise<TrialResult> =>
  runtime.runTrial({ image: tag, port: 8080, env: {}, timeoutMs: 4000, stateDir: STATE, request: { method: "GET", path: "/inspect", headers: {} }, ...over });
const get = (path: string) => ({ method: "GET", path, headers: {} });

/** Containers and volumes of this prefix's trials (and trial pools) still on the engine. */
async function leftovers(): Promise<string[]> {
  const filters = { label: [`moss.prefix=${prefix}`, "moss.role=trial"] };
  const containers = [
    ...(await docker.listContainers({ all: true, filters })),
    ...(await docker.listContainers({ all: true, filters: { label: [`moss.prefix=${prefix}`, "moss.role=trial-pool"] } })),
  ];
  const { Volumes } = await docker.listVolumes({ filters });
  const { Volumes: pooled } = await docker.listVolumes({ filters: { label: [`moss.prefix=${prefix}`, "moss.role=trial-pool"] } });
  return [...containers.map((c) => c.Names[0] ?? c.Id), ...[...(Volumes ?? []), ...(pooled ?? [])].map((v) => `volume ${v.Name}`)];
}

describe("a trial pod, seen from inside the agent", { timeout: 60_000 }, () => {
  it("runs as nobody with no capabilities, no new privileges, a read-only root, and writes only /tmp and its state", async () => {
    const r = await trial({
      request: get(`/inspect?host=${gateway}&port=${hostPort}`),
      snapshot: { path: STATE, tar: makeTar({ "saved.json": '{"n":1}' }) },
    });
    expect(r.response?.status, r.logs).toBe(200);
    const seen = JSON.parse(r.response!.body);
    expect(seen).toMatchObject({ uid: 65534, gid: 65534, capEff: "0000000000000000", capBnd: "0000000000000000", noNewPrivs: "1" });
    // The state directory is the snapshot exactly: not what the image baked there.
    expect(seen).toMatchObject({ writeApp: "EROFS", writeEtc: "EROFS", writeTmp: "ok", writeState: "ok", snapshotFile: '{"n":1}', baked: false });
    expect(await leftovers()).toEqual([]);
  });

  it("has its limits applied: memory, pids and CPU, as the kernel sees them", async () => {
    const seen = JSON.parse((await trial({ request: get(`/inspect?host=${gateway}&port=${hostPort}`) })).response!.body);
    // No snapshot: the state directory holds what the image baked there, and is still the agent's to write.
    expect(seen).toMatchObject({ baked: true, writeState: "ok", snapshotFile: null });
    expect(Number(seen.memory)).toBe(MEMORY);
    expect(Number(seen.pids)).toBe(PIDS);
    // cgroup v1: a quota of half the period; v2: "50000 100000".
    expect(String(seen.cpu)).toMatch(/^(50000|50000 100000)$/);
  });

  it("has no network: only loopback, the host unreachable, no DNS", async () => {
    const seen = JSON.parse((await trial({ request: get(`/inspect?host=${gateway}&port=${hostPort}`) })).response!.body);
    expect(seen.interfaces).toEqual(["lo"]);
    expect(seen.host).toMatch(/^(ENETUNREACH|EHOSTUNREACH)$/);
    expect(seen.dns).not.toBe("resolved");
  });

  it("with network on, reaches the host through Moss's trial bridge but not another container on it", async () => {
    const net = `${prefix}-trials`;
    const first = JSON.parse((await trial({ network: true, request: get(`/inspect?host=${gateway}&port=${hostPort}`) })).response!.body);
    expect(first.host).toBe("connected");
    // A neighbour on the same bridge, listening: inter-container traffic is off there.
    const peer = await docker.createContainer({
      Image: "moss/node-base:latest",
      Cmd: ["/usr/bin/node", "-e", "require('net').createServer((s)=>s.end('hi')).listen(9000)"],
      Labels: { "moss.prefix": prefix },
      HostConfig: { NetworkMode: net },
    });
    await peer.start();
    try {
      const ip = (await peer.inspect()).NetworkSettings.Networks[net]!.IPAddress;
      const seen = JSON.parse((await trial({ network: true, request: get(`/inspect?host=${gateway}&port=${hostPort}&peer=${ip}&peerPort=9000`) })).response!.body);
      expect(seen.peer).not.toBe("connected");
      expect(seen.host).toBe("connected");
    } finally {
      await peer.remove({ force: true });
    }
    const info = await docker.getNetwork(net).inspect();
    expect(info.Options).toMatchObject({ "com.docker.network.bridge.enable_icc": "false" });
  });
});

describe("hostile programs are contained, reported with the reason, and leave nothing", { timeout: 60_000 }, () => {
  it("a fork bomb hits the pids limit and is killed at the deadline", async () => {
    const r = await trial({ request: get("/bomb"), timeoutMs: 3000 });
    expect(r.response).toBeUndefined();
    expect(r.timedOut).toBe(true);
    expect(r.error).toMatch(/(timed out after|did not finish within) 3000 ms/);
    expect(r.logs).toMatch(/fork failed: EAGAIN/);
    expect(await leftovers()).toEqual([]);
  });

  it("a memory hog is killed by the memory limit and reported as out of memory", async () => {
    const r = await trial({ request: get("/hog") });
    expect(r.response).toBeUndefined();
    expect(r.error).toMatch(/killed by SIGKILL while handling the request \(out of memory: the trial's limit is 201326592 bytes\)/);
    expect(await leftovers()).toEqual([]);
  });

  it("an infinite loop is killed at the deadline", async () => {
    const t0 = performance.now();
    const r = await trial({ request: get("/loop"), timeoutMs: 2000 });
    expect(r.timedOut).toBe(true);
    expect(r.error).toMatch(/(timed out after|did not finish within) 2000 ms/);
    expect(performance.now() - t0).toBeLessThan(2000 + 1500 + 3000);
    expect(await leftovers()).toEqual([]);
  });

  it("a process that ignores SIGTERM is killed all the same, without waiting out a stop timeout", async () => {
    const t0 = performance.now();
    const r = await trial({ env: { MODE: "ignore-term" }, request: get("/hang"), timeoutMs: 2000 });
    expect(r.timedOut).toBe(true);
    expect(performance.now() - t0).toBeLessThan(2000 + 1500 + 3000);
    expect(await leftovers()).toEqual([]);
  });
});

describe("a trial whose process is killed with SIGKILL", { timeout: 90_000 }, () => {
  it("leaves its pod behind, and the next start sweeps it at once: containers and volumes", async () => {
    const script = fileURLToPath(new URL("./run-one-trial.ts", import.meta.url));
    const child = spawn(process.execPath, ["--import", "tsx", script], {
      env: { ...process.env, MOSS_TEST_PREFIX: prefix, MOSS_TEST_IMAGE: tag, MOSS_TEST_STATE: STATE },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let said = "";
    child.stderr.on("data", (d) => (said += String(d)));
    // Wait until the agent's container runs, then kill the process mid-trial.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const running = await docker.listContainers({ filters: { label: [`moss.prefix=${prefix}`, "moss.role=trial"], status: ["running"] } });
      if (running.length >= 2) break;
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the trial never started: ${said}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    const left = await leftovers();
    // Driver, agent, the out and state volumes, and the pool it was filling (sidecars, warm pods and their volumes).
    expect(left.filter((l) => l.startsWith("volume ")).length).toBeGreaterThanOrEqual(2);
    expect(left.length).toBeGreaterThanOrEqual(4);
    // A fresh start of the same owner's kind: its age rule alone would wait 20 minutes; the owner is gone. (A removal
    // the killed process had already sent may still land in the engine after the listing: at most that one is not
    // the sweep's.)
    const swept = await createRuntime({ namePrefix: prefix }).removeStaleTrials(20 * 60_000);
    const containers = left.filter((l) => !l.startsWith("volume ")).length;
    expect(swept).toBeGreaterThanOrEqual(containers - 1);
    expect(swept).toBeLessThanOrEqual(containers);
    expect(await leftovers()).toEqual([]);
  });

  it("never sweeps a trial whose owner is alive (here: this process)", async () => {
    const running = trial({ request: get("/loop"), timeoutMs: 3000 });
    for (let i = 0; i < 100 && (await leftovers()).length < 2; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await createRuntime({ namePrefix: prefix }).removeStaleTrials(20 * 60_000)).toBe(0);
    expect((await running).timedOut).toBe(true);
    expect(await leftovers()).toEqual([]);
  });
});
