// The warm pool of trial sidecars: made and started ahead, taken by offline trials (which then pay neither their
// create nor their start), refilled, skipped by trials that need a sidecar of their own, and removed on close.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import { createRuntime, type TrialSpec } from "@moss/runtime";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const prefix = `mp${randomBytes(3).toString("hex")}`;
const docker = new Docker();
const tag = `moss-test/${prefix}-pool:1`;
const runtime = createRuntime({ namePrefix: prefix, trialPoolSize: 2 });
let repo: string;

beforeAll(async () => {
  repo = mkdtempSync(join(tmpdir(), "moss-pool-"));
  writeFileSync(
    join(repo, "app.mjs"),
    `import http from "node:http";\nimport fs from "node:fs";\nhttp.createServer((q, s) => {\n  if (q.url === "/state") { fs.writeFileSync("/data/touched", "1"); return s.end(fs.readFileSync("/data/note.txt", "utf8").trim() + " " + fs.statSync("/data").uid); }\n  s.end(String(process.getuid()));\n}).listen(Number(process.env.PORT), "127.0.0.1");\n`,
  );
  writeFileSync(join(repo, "Dockerfile"), `FROM moss/node-base\nCOPY app.mjs /app/app.mjs\nCMD ["/usr/bin/node", "/app/app.mjs"]\n`);
  const git = (...a: string[]) => execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@t", ...a], { cwd: repo });
  git("init", "-q");
  git("add", ".");
  git("commit", "-qm", "pool agent");
  await runtime.buildImage({ repoDir: repo, commit: "HEAD", tag, labels: { "moss.test": prefix } });
}, 120_000);

afterAll(async () => {
  await runtime.close();
  for (const c of await docker.listContainers({ all: true, filters: { label: [`moss.prefix=${prefix}`] } })) await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
  await docker.getImage(tag).remove({ force: true }).catch(() => undefined);
  if (repo) rmSync(repo, { recursive: true, force: true });
}, 60_000);

const mkSnapshot = () => {
  const dir = mkdtempSync(join(tmpdir(), "moss-pool-snap-"));
  writeFileSync(join(dir, "note.txt"), "restored\n");
  return dir;
};
const pooled = async () => (await docker.listContainers({ filters: { label: [`moss.prefix=${prefix}`, "moss.role=trial-pool"], status: ["running"] } })).map((c) => c.Id);
const spec = (over: Partial<TrialSpec> = {}): TrialSpec => ({ image: tag, port: 8080, env: {}, timeoutMs: 5000, request: { method: "GET", path: "/", headers: {} }, ...over });

describe("the warm pool of trial sidecars", { timeout: 60_000 }, () => {
  it("fills ahead, serves an offline trial from it, and refills", async () => {
    expect(await runtime.warmTrials()).toBe(2);
    const before = await pooled();
    expect(before).toHaveLength(2);
    const r = await runtime.runTrial(spec());
    expect(r.response).toMatchObject({ status: 200, body: "65534" });
    // One of the two served the trial and is gone with it; the pool made another.
    expect(await runtime.warmTrials()).toBe(2);
    const after = await pooled();
    expect(after.filter((id) => before.includes(id))).toHaveLength(1);
    expect(after).toHaveLength(2);
    // With a pool, the trial's pod goes behind its result.
    await runtime.idle();
    expect(await docker.listContainers({ all: true, filters: { label: [`moss.prefix=${prefix}`, "moss.role=trial"] } })).toEqual([]);
  });

  it("runs trials back to back and at once from it, each with its own driver", async () => {
    const rs = await Promise.all([1, 2, 3].map(() => runtime.runTrial(spec())));
    expect(rs.map((r) => r.response?.status)).toEqual([200, 200, 200]);
    for (let i = 0; i < 3; i++) expect((await runtime.runTrial(spec())).response?.status).toBe(200);
  });

  it("a trial with the network on makes its own sidecar and leaves the pool alone", async () => {
    expect(await runtime.warmTrials()).toBe(2);
    const before = await pooled();
    expect((await runtime.runTrial(spec({ network: true }))).response?.status).toBe(200);
    expect(await pooled()).toEqual(before);
  });

  it("warm pods for a trial's shape: staged ahead, taken by a trial like it, refilled, the state directory the agent's", async () => {
    const like = spec({ stateDir: "/data" });
    expect(await runtime.warmTrials(like)).toBe(2);
    const volumes = async () => (await docker.listVolumes({ filters: { label: [`moss.prefix=${prefix}`, "moss.role=trial-pool"] } })).Volumes ?? [];
    const before = (await volumes()).map((v) => v.Name);
    // Two pods, an out and a state volume each.
    expect(before).toHaveLength(4);
    const r = await runtime.runTrial(like);
    expect(r.response).toMatchObject({ status: 200, body: "65534" });
    // It used one of the warm pods: two of its volumes are gone with it, and the pool made another pod.
    await runtime.idle();
    expect(await runtime.warmTrials(like)).toBe(2);
    const after = (await volumes()).map((v) => v.Name);
    expect(after.filter((n) => before.includes(n))).toHaveLength(2);
    expect(after).toHaveLength(4);
    // A trial of another shape takes none (and leaves them); asking for another shape replaces them.
    expect((await runtime.runTrial(spec({ stateDir: "/other" }))).response?.status).toBe(200);
    await runtime.idle();
    expect((await volumes()).map((v) => v.Name).sort()).toEqual([...after].sort());
    expect(await runtime.warmTrials(spec({ stateDir: "/other" }))).toBe(2);
    expect((await volumes()).map((v) => v.Name).filter((n) => after.includes(n))).toEqual([]);
    // Online trials take no pod.
    expect(await runtime.warmTrials(spec({ network: true }))).toBe(2);
  });

  it("a warm pod restores the trial's snapshot into the staged state directory", async () => {
    const snap = execFileSync("tar", ["-c", "-C", mkSnapshot(), "."]);
    const like = spec({ stateDir: "/data", snapshot: { path: "/data", tar: snap }, request: { method: "GET", path: "/state", headers: {} } });
    expect(await runtime.warmTrials(like)).toBe(2);
    const r = await runtime.runTrial(like);
    expect(r.response).toMatchObject({ status: 200, body: "restored 65534" });
  });

  it("close() removes the pool", async () => {
    await runtime.close();
    expect(await docker.listContainers({ all: true, filters: { label: [`moss.prefix=${prefix}`, "moss.role=trial-pool"] } })).toEqual([]);
    expect((await docker.listVolumes({ filters: { label: [`moss.prefix=${prefix}`] } })).Volumes ?? []).toEqual([]);
  });
});
