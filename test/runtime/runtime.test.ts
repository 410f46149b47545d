/**
 * @moss/runtime against the real Docker engine. Everything created here carries a random name
 * prefix (label `moss.prefix`) or the image label `moss.test=<prefix>` and is removed in afterAll.
 * Runs standalone: `npx vitest run test/runtime`.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DockerUnavailableError,
  GitArchiveError,
  ImageBuildError,
  ImageMismatchError,
  ImageNotFoundError,
  InvalidSpecError,
  NoPreviousVersionError,
  SnapshotRejectedError,
  TrialError,
  createRuntime,
  type BuildImageResult,
  type TrialResult,
  type TrialSpec,
} from "@moss/runtime";
import { createFixtureRepo, makeTar, type FixtureRepo } from "./fixture";
import { freePort } from "../helpers/nats";

const BUILD_SCRIPT = fileURLToPath(new URL("../../deploy/build-base-image.sh", import.meta.url));
const prefix = `mt${randomBytes(4).toString("hex")}`;
const runtime = createRuntime({ namePrefix: prefix });
const docker = new Docker({ socketPath: "/var/run/docker.sock" });
const imageTag = (name: string) => `moss-test/${prefix}-agent:${name}`;
const testLabels = { "moss.test": prefix };
const timings: Record<string, number[]> = {};
const timed = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    (timings[what] ??= []).push(Math.round(performance.now() - t0));
  }
};

let repo: FixtureRepo;
let v1: BuildImageResult;
let v2: BuildImageResult;

beforeAll(async () => {
  // Idempotent: a no-op (~0.1 s) when the content-tagged base image exists.
  execFileSync("bash", [BUILD_SCRIPT], { stdio: "pipe" });
  await runtime.ping();
  repo = createFixtureRepo();
  v1 = await timed("buildImage (BuildKit)", () => runtime.buildImage({ repoDir: repo.dir, commit: repo.v1, tag: imageTag("v1"), labels: testLabels }));
  v2 = await timed("buildImage (BuildKit)", () => runtime.buildImage({ repoDir: repo.dir, commit: repo.v2, tag: imageTag("v2"), labels: testLabels }));
}, 120_000);

afterAll(async () => {
  await runtime.removeAgent("echo").catch(() => undefined);
  const containers = await docker.listContainers({ all: true, filters: { label: [`moss.prefix=${prefix}`] } });
  await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
  const { Volumes } = await docker.listVolumes({ filters: { label: [`moss.prefix=${prefix}`] } });
  await Promise.all((Volumes ?? []).map((v) => docker.getVolume(v.Name).remove().catch(() => undefined)));
  await docker.getNetwork(`${prefix}-trials`).remove().catch(() => undefined);
  const images = await docker.listImages({ filters: { label: [`moss.test=${prefix}`] } });
  for (const img of images) await docker.getImage(img.Id).remove({ force: true }).catch(() => undefined);
  if (repo) rmSync(repo.dir, { recursive: true, force: true });
  const summary = Object.entries(timings).map(([k, v]) => `${k}: n=${v.length} median=${median(v)}ms max=${Math.max(...v)}ms`);
  console.log(`runtime timings:\n  ${summary.join("\n  ")}`);
}, 60_000);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

const trial = (over: Partial<TrialSpec> & { request: NonNullable<TrialSpec["request"]> }): Promise<TrialResult> =>
  timed(`runTrial ${over.request.method} ${over.request.path.split("?")[0]}`, () =>
    runtime.runTrial({ image: v1.image, port: 8080, env: {}, timeoutMs: 5000, labels: testLabels, ...over }),
  );
const get = (path: string) => ({ method: "GET", path, headers: {} });
const json = (r: TrialResult): unknown => JSON.parse(r.response?.body ?? "null");

/** What trials left behind: containers and volumes (names). */
async function trialContainers(): Promise<string[]> {
  const filters = { label: [`moss.prefix=${prefix}`, "moss.role=trial"] };
  const containers = await docker.listContainers({ all: true, filters });
  const { Volumes } = await docker.listVolumes({ filters });
  return [...containers.map((c) => c.Names[0] ?? c.Id), ...(Volumes ?? []).map((v) => `volume ${v.Name}`)];
}

describe("ping", () => {
  it("resolves when the engine answers and the base image exists", async () => {
    await expect(runtime.ping()).resolves.toBeUndefined();
  });

  it("says what to do when the engine is unreachable", async () => {
    const err = await createRuntime({ socketPath: "/nonexistent/docker.sock" })
      .ping()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DockerUnavailableError);
    expect((err as DockerUnavailableError).code).toBe("MOSS_E_DOCKER_UNAVAILABLE");
    expect((err as Error).message).toContain("npm run setup");
  });
});

describe("buildImage", { timeout: 60_000 }, () => {
  it("builds the committed tree (esbuild bundles TypeScript in an exec-form RUN) with labels", async () => {
    expect(v1.image).toBe(imageTag("v1"));
    expect(v1.imageId).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(v1.log).toContain("RUN [\"/usr/bin/esbuild\"");
    expect(v1.log).toContain("server.mjs");
    expect(await runtime.imageExists(v1.image)).toBe(true);
    const info = await docker.getImage(v1.image).inspect();
    expect(info.Id).toBe(v1.imageId);
    expect(info.Config.Labels).toMatchObject({ "moss.commit": repo.v1, "moss.test": prefix });
    expect(v2.imageId).not.toBe(v1.imageId);
  });

  it("a failing build throws ImageBuildError carrying the build log", async () => {
    const err = await runtime
      .buildImage({ repoDir: repo.dir, commit: repo.broken, tag: imageTag("broken"), labels: testLabels })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageBuildError);
    const e = err as ImageBuildError;
    expect(e.code).toBe("MOSS_E_IMAGE_BUILD_FAILED");
    expect(e.retryable).toBe(false);
    expect(e.commit).toBe(repo.broken);
    // esbuild's own diagnostic, from inside the failed RUN step
    expect(e.log).toContain("src/math.ts");
    expect(e.log).toMatch(/Expected "\)" but found "\{"/);
    expect(await runtime.imageExists(imageTag("broken"))).toBe(false);
  });

  it("a build that outlives buildTimeoutMs is cancelled in the engine and throws ImageBuildError", async () => {
    // The RUN step's process is visible on the host while it runs (runc shares the host's /proc view of it).
    const hanging = () =>
      readdirSync("/proc")
        .filter((d) => /^\d+$/.test(d))
        .some((pid) => {
          try {
            return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("moss-build-hang");
          } catch {
            return false;
          }
        });
    const quick = createRuntime({ namePrefix: prefix, buildTimeoutMs: 3_000 });
    const t0 = Date.now();
    const err = await quick.buildImage({ repoDir: repo.dir, commit: repo.hangs, tag: imageTag("hangs"), labels: testLabels }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageBuildError);
    expect((err as ImageBuildError).message).toContain("the build did not finish within 3000 ms and was cancelled");
    expect((err as ImageBuildError).log).toContain("cancelled after 3000 ms");
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(await runtime.imageExists(imageTag("hangs"))).toBe(false);
    // The engine stopped the RUN step when the request went away: nothing of it keeps running.
    const until = Date.now() + 10_000;
    while (hanging() && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
    expect(hanging()).toBe(false);
  });

  it("an unknown commit throws GitArchiveError", async () => {
    const err = await runtime.buildImage({ repoDir: repo.dir, commit: "0123456789abcdef0123456789abcdef01234567", tag: imageTag("nope") }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GitArchiveError);
    expect((err as GitArchiveError).code).toBe("MOSS_E_GIT_ARCHIVE_FAILED");
  });

  it("the legacy builder builds the same commit too", async () => {
    const legacy = createRuntime({ namePrefix: prefix, builder: "legacy" });
    const r = await timed("buildImage (legacy)", () => legacy.buildImage({ repoDir: repo.dir, commit: repo.v1, tag: imageTag("legacy"), labels: testLabels }));
    expect(r.log).toContain("Step 1/");
    expect(r.imageId).toMatch(/^sha256:/);
    const answered = await runtime.runTrial({ image: r.image, port: 8080, env: {}, timeoutMs: 5000, request: get("/health") });
    expect(json(answered)).toEqual({ ok: true, version: "v1" });
  });
});

describe("runTrial", { timeout: 30_000 }, () => {
  it("sends the request from inside the container and returns the answer", async () => {
    const r = await trial({ request: get("/health") });
    expect(r.error).toBeUndefined();
    expect(r.timedOut).toBe(false);
    expect(r.response?.status).toBe(200);
    expect(r.response?.headers["x-agent-version"]).toBe("v1");
    expect(json(r)).toEqual({ ok: true, version: "v1" });
    expect(r.reportedFailures).toEqual([]);
    expect(r.logs).toContain("agent v1 listening on 8080");
    expect(r.logs).toContain("[moss-driver]");
    expect(r.logs).not.toContain("MOSS_TRIAL_RESULT");
    expect(r.exitCode).toBeUndefined();
    expect(await trialContainers()).toEqual([]);
  });

  it("replays method, body and headers", async () => {
    const r = await trial({ request: { method: "PUT", path: "/echo", headers: { "x-test": "yes", "content-length": "999" }, body: "héllo" } });
    expect(json(r)).toEqual({ method: "PUT", body: "héllo", header: "yes" });
  });

  it("passes env, PORT and MOSS_REPLAY to the agent", async () => {
    const env = { GREETING: "bonjour" };
    expect(json(await trial({ env, request: get("/env?name=GREETING") }))).toEqual({ value: "bonjour" });
    expect(json(await trial({ env, request: get("/env?name=MOSS_REPLAY") }))).toEqual({ value: "1" });
    const onOtherPort = await trial({ port: 7070, env, request: get("/env?name=PORT") });
    expect(json(onOtherPort)).toEqual({ value: "7070" });
  });

  it("reads the state file baked into the image", async () => {
    expect(json(await trial({ request: get("/state") }))).toEqual({ greeting: "hello from the image" });
  });

  it("restores the snapshot before start: the answer depends on it", async () => {
    const without = await trial({ request: get("/orders/7") });
    expect(without.response?.status).toBe(500);
    expect(without.reportedFailures).toMatchObject([{ kind: "orders_unavailable" }]);

    // /data/snapshot does not exist in the image: the runtime creates it.
    const orders = { "7": { id: "7", item: "moss", qty: 3 } };
    const withSnap = await trial({ request: get("/orders/7"), snapshot: { path: "/data/snapshot", tar: makeTar({ "orders.json": JSON.stringify(orders) }) } });
    expect(withSnap.response?.status).toBe(200);
    expect(json(withSnap)).toEqual(orders["7"]);
    expect(withSnap.reportedFailures).toEqual([]);

    // Over an existing directory: files are replaced.
    const over = await trial({ request: get("/state"), snapshot: { path: "/data", tar: makeTar({ "state.json": JSON.stringify({ greeting: "hello from the snapshot" }) }) } });
    expect(json(over)).toEqual({ greeting: "hello from the snapshot" });
  });

  it("unpacks a hostile snapshot under a strict policy: nothing outside the state directory, no links out, bounded", async () => {
    // Each tar is refused before anything reaches the container; the agent answers from its own code and state.
    const cases: Array<[string, Buffer, RegExp]> = [
      ["a symlink to / and a write through it", await rawTar([{ name: "evil", type: "symlink", linkname: "/" }, { name: "evil/app/server.mjs", content: "pwned" }]), /symlink evil -> \/ leaves the state directory/],
      ["a relative symlink climbing out", await rawTar([{ name: "up", type: "symlink", linkname: "../../app" }]), /symlink up -> \.\.\/\.\.\/app leaves/],
      ["an entry through an inner symlink", await rawTar([{ name: "here", type: "symlink", linkname: "." }, { name: "here/x", content: "x" }]), /entry here\/x goes through the symlink here/],
      ["a ../ entry", await rawTar([{ name: "../../app/server.mjs", content: "pwned" }]), /climbs out with \.\./],
      ["an absolute entry", await rawTar([{ name: "/app/server.mjs", content: "pwned" }]), /absolute path/],
      ["a hard link", await rawTar([{ name: "state.json", content: "{}" }, { name: "h", type: "link", linkname: "state.json" }]), /entry h is a link/],
      ["a device", await rawTar([{ name: "dev", type: "character-device" }]), /entry dev is a character-device/],
    ];
    for (const [what, tarBytes, why] of cases) {
      const err = await trial({ request: get("/state"), snapshot: { path: "/data", tar: tarBytes } }).catch((e: unknown) => e);
      expect(err, what).toBeInstanceOf(SnapshotRejectedError);
      expect(err, what).toMatchObject({ code: "MOSS_E_SNAPSHOT_REJECTED", retryable: false, message: expect.stringMatching(why) });
    }
    const small = createRuntime({ namePrefix: prefix, snapshotMaxBytes: 1_000, snapshotMaxEntries: 3 });
    const big = await small.runTrial({ image: v1.image, port: 8080, env: {}, timeoutMs: 5_000, labels: testLabels, request: get("/state"), snapshot: { path: "/data", tar: makeTar({ "a.json": "x".repeat(2_000) }) } }).catch((e: unknown) => e);
    expect(big).toMatchObject({ code: "MOSS_E_SNAPSHOT_REJECTED", message: expect.stringContaining("more than 1000 bytes") });
    const many = await small.runTrial({ image: v1.image, port: 8080, env: {}, timeoutMs: 5_000, labels: testLabels, request: get("/state"), snapshot: { path: "/data", tar: makeTar({ a: "1", b: "2", c: "3", d: "4" }) } }).catch((e: unknown) => e);
    expect(many).toMatchObject({ code: "MOSS_E_SNAPSHOT_REJECTED", message: expect.stringContaining("more than 3 entries") });
    expect(await trialContainers()).toEqual([]);
    // A symlink that stays inside is kept, and the agent reads through it.
    const inner = await rawTar([{ name: "real.json", content: JSON.stringify({ greeting: "through a link" }) }, { name: "state.json", type: "symlink", linkname: "real.json" }]);
    expect(json(await trial({ request: get("/state"), snapshot: { path: "/data", tar: inner } }))).toEqual({ greeting: "through a link" });
  });

  it("collects the failures the agent reports to MOSS_REPLAY_FAILURE_FILE", async () => {
    const r = await trial({ request: { method: "POST", path: "/divide", headers: { "content-type": "application/json" }, body: JSON.stringify({ a: 1, b: 0 }) } });
    expect(r.response?.status).toBe(500);
    expect(r.reportedFailures).toEqual([{ kind: "division_by_zero", a: 1, b: 0 }]);
    expect(r.logs).toContain("division failed: division by zero");
    const ok = await trial({ request: { method: "POST", path: "/divide", headers: {}, body: JSON.stringify({ a: 6, b: 3 }) } });
    expect(json(ok)).toEqual({ result: 2 });
    expect(ok.reportedFailures).toEqual([]);
  });

  it("has no network: connecting out fails at once, inside the container", async () => {
    // Only ever run with network off: 1.1.1.1 is unroutable from a NetworkMode none container.
    const r = await trial({ request: get("/net") });
    const body = json(r) as { connected: boolean; error: string; ms: number };
    expect(body.connected).toBe(false);
    expect(body.error).toBe("ENETUNREACH");
    expect(body.ms).toBeLessThan(1000);
  });

  it("a hanging request times out, keeps what was reported, and the container is removed", async () => {
    const t0 = performance.now();
    const r = await trial({ timeoutMs: 1500, request: get("/hang") });
    const took = performance.now() - t0;
    expect(r.timedOut).toBe(true);
    expect(r.response).toBeUndefined();
    expect(r.error).toMatch(/timed out after 1500 ms while waiting for the response to GET \/hang/);
    expect(r.reportedFailures).toEqual([{ kind: "hang_started" }]);
    expect(took).toBeGreaterThanOrEqual(1500);
    expect(took).toBeLessThan(1500 + 2500);
    expect(await trialContainers()).toEqual([]);
  });

  it("runs with memory, pids and CPU limits, no capabilities, a read-only root, as nobody, no network", async () => {
    const tagValue = randomBytes(4).toString("hex");
    const running = trial({ timeoutMs: 2000, labels: { ...testLabels, "moss.test.probe": tagValue }, request: get("/hang") });
    let info: Docker.ContainerInspectInfo | undefined;
    let podNetwork: string | undefined;
    for (let i = 0; i < 100 && !info; i++) {
      const [c] = await docker.listContainers({ all: true, filters: { label: [`moss.test.probe=${tagValue}`] } });
      try {
        if (!c) throw Object.assign(new Error("not yet"), { statusCode: 404 });
        const seen = await docker.getContainer(c.Id).inspect();
        podNetwork = (await docker.getContainer(seen.HostConfig.NetworkMode!.slice("container:".length)).inspect()).HostConfig.NetworkMode;
        info = seen;
      } catch (err) {
        // Listed but gone (or its sidecar) by the time it is inspected: the trial says why below.
        if ((err as { statusCode?: number }).statusCode !== 404) throw err;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const r = await running;
    expect(info, r.error ?? r.logs).toBeDefined();
    const hc = info!.HostConfig;
    expect(hc.Memory).toBe(256 * 1024 * 1024);
    expect(hc.MemorySwap).toBe(256 * 1024 * 1024);
    expect(hc.PidsLimit).toBe(128);
    expect(hc.NanoCpus).toBe(1e9);
    // The pod's network namespace is the sidecar's: a loopback, nothing else.
    expect(hc.NetworkMode).toMatch(/^container:[0-9a-f]{64}$/);
    expect(podNetwork).toBe("none");
    expect(hc.CapDrop).toEqual(["ALL"]);
    expect(hc.SecurityOpt).toContain("no-new-privileges");
    expect(hc.Binds ?? []).toEqual([]);
    // A read-only root; writable only: a tmpfs /tmp and the trial's own out volume (no state directory here).
    expect(hc.ReadonlyRootfs).toBe(true);
    expect(Object.keys(hc.Tmpfs ?? {})).toEqual(["/tmp"]);
    expect(info!.Mounts.map((m) => [m.Type, m.Destination, m.Name])).toEqual([["volume", "/moss/out", `${info!.Name.slice(1)}-out`]]);
    // The image runs as root: the trial as nobody.
    expect(info!.Config.User).toBe("65534:65534");
    expect(info!.Config.Labels).toMatchObject({ "moss.role": "trial", "moss.prefix": prefix });
    expect(await trialContainers()).toEqual([]);
  });

  it("reports an agent that crashes under the request", async () => {
    const r = await trial({ request: get("/crash") });
    expect(r.response).toBeUndefined();
    expect(r.timedOut).toBe(false);
    expect(r.error).toMatch(/the agent exited with code 3 while handling the request/);
    expect(r.exitCode).toBe(3);
    expect(r.logs).toContain("crashing as asked");
  });

  it("reports an agent that exits before listening, without waiting for the timeout", async () => {
    const r = await trial({ env: { CRASH_ON_START: "1" }, timeoutMs: 10_000, request: get("/health") });
    expect(r.error).toMatch(/the agent exited with code 2 before listening on port 8080/);
    expect(r.exitCode).toBe(2);
    expect(r.timedOut).toBe(false);
    expect(r.durationMs).toBeLessThan(5000);
  });

  it("reports an agent that never listens as timed out", async () => {
    const r = await trial({ env: { NO_LISTEN: "1" }, timeoutMs: 1000, request: get("/health") });
    expect(r.timedOut).toBe(true);
    expect(r.error).toMatch(/did not listen on port 8080 within 1000 ms|timed out after 1000 ms while waiting for the agent to listen/);
  });

  it("runs trials in parallel", async () => {
    const rs = await Promise.all(Array.from({ length: 4 }, () => trial({ request: get("/health") })));
    expect(rs.map((r) => r.response?.status)).toEqual([200, 200, 200, 200]);
    expect(await trialContainers()).toEqual([]);
  });

  it("kills a trial that overruns its budget plus the start allowance, and still reads the failure file", async () => {
    // With no allowance the runtime's own limit fires before the driver's (which starts later).
    const strict = createRuntime({ namePrefix: prefix, trialStartAllowanceMs: 0 });
    const r = await strict.runTrial({ image: v1.image, port: 8080, env: {}, timeoutMs: 1000, labels: testLabels, request: get("/hang") });
    expect(r.timedOut).toBe(true);
    expect(r.error).toMatch(/did not finish within 1000 ms \(\+0 ms start allowance\) and was killed/);
    expect(r.exitCode).toBe(137);
    expect(r.reportedFailures).toEqual([{ kind: "hang_started" }]);
    expect(r.logs).toContain("GET /hang");
    expect(await trialContainers()).toEqual([]);
  });

  it("an agent that exceeds the memory limit is killed and reported", async () => {
    const r = await trial({ request: get("/oom") });
    expect(r.response).toBeUndefined();
    expect(r.error).toMatch(/the agent was killed by SIGKILL while handling the request/);
    expect(r.exitCode).toBe(137);
  });

  it("works when the image runs as a non-root USER", async () => {
    const nobody = await runtime.buildImage({ repoDir: repo.dir, commit: repo.nobody, tag: imageTag("nobody"), labels: testLabels });
    expect(json(await trial({ image: nobody.image, request: get("/whoami") }))).toEqual({ uid: 65534 });
    const r = await trial({ image: nobody.image, request: { method: "POST", path: "/divide", headers: {}, body: JSON.stringify({ a: 2, b: 0 }) } });
    expect(r.response?.status).toBe(500);
    expect(r.reportedFailures).toEqual([{ kind: "division_by_zero", a: 2, b: 0 }]);
  });

  it("network: true puts the trial on Moss's own trial bridge, never the default one", async () => {
    // Only loopback traffic inside the container: the driver talks to the agent on 127.0.0.1.
    const r = await trial({ network: true, request: get("/health") });
    expect(r.response?.status).toBe(200);
    const net = await docker.getNetwork(`${prefix}-trials`).inspect();
    expect(net.Options).toMatchObject({ "com.docker.network.bridge.enable_icc": "false" });
  });

  it("rejects a missing image and a bad spec with clear errors", async () => {
    await expect(trial({ image: imageTag("does-not-exist"), request: get("/health") })).rejects.toBeInstanceOf(ImageNotFoundError);
    await expect(trial({ port: 0, request: get("/health") })).rejects.toBeInstanceOf(InvalidSpecError);
    await expect(trial({ request: get("/health"), snapshot: { path: "data", tar: Buffer.alloc(0) } })).rejects.toBeInstanceOf(InvalidSpecError);
    const bad = await trial({ request: get("/health"), snapshot: { path: "/data/x", tar: Buffer.from("not a tar") } }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(TrialError);
    expect(bad).toMatchObject({ code: "MOSS_E_TRIAL_FAILED", retryable: false });
    expect((bad as Error).message).toContain("is the snapshot a valid tar?");
    expect(await trialContainers()).toEqual([]);
  });
});

describe("live", { timeout: 60_000 }, () => {
  const agent = "echo";
  let port: number;

  beforeAll(async () => {
    port = await freePort();
  });

  async function health(): Promise<{ version: string }> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/health`);
        return (await res.json()) as { version: string };
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 25));
      }
    }
  }

  it("deploys, swaps to a new version, rolls back, and removes", async () => {
    const env = { PORT: String(port) };
    const first = await timed("deployLive", () => runtime.deployLive({ agent, image: v1.image, version: "v1", env }));
    expect(first).toEqual({ container: `${prefix}-live-${agent}` });
    expect(await health()).toEqual({ ok: true, version: "v1" });
    const st = await runtime.liveStatus(agent);
    expect(st).toEqual({ container: `${prefix}-live-${agent}`, image: v1.image, running: true, version: "v1" });
    const info = await docker.getContainer(first.container).inspect();
    expect(info.HostConfig.NetworkMode).toBe("host");
    expect(info.HostConfig.RestartPolicy?.Name).toBe("no");
    expect(info.Config.Labels).toMatchObject({ "moss.agent": agent, "moss.role": "live", "moss.version": "v1" });

    // Same port (host network): the old one must be stopped before the new one starts.
    const swapped = await timed("deployLive (swap)", () => runtime.deployLive({ agent, image: v2.image, version: "v2", env }));
    expect(swapped).toEqual({ container: `${prefix}-live-${agent}`, previous: { container: `${prefix}-prev-${agent}`, image: v1.image } });
    expect(await health()).toEqual({ ok: true, version: "v2" });
    const prev = await docker.getContainer(`${prefix}-prev-${agent}`).inspect();
    expect(prev.State.Running).toBe(false);

    // Provenance: an image whose id is not the built one, or whose commit label names another commit, is refused.
    const wrongId = await runtime.deployLive({ agent, image: v1.image, imageId: v2.imageId, version: repo.v1, env }).catch((e: unknown) => e);
    expect(wrongId).toBeInstanceOf(ImageMismatchError);
    expect(wrongId).toMatchObject({ code: "MOSS_E_IMAGE_MISMATCH", retryable: false, message: expect.stringContaining(`the build made ${v2.imageId}`) });
    const wrongCommit = await runtime.deployLive({ agent, image: v1.image, imageId: v1.imageId, version: repo.v2, env }).catch((e: unknown) => e);
    expect(wrongCommit).toMatchObject({ code: "MOSS_E_IMAGE_MISMATCH", message: expect.stringContaining(`moss.commit label is ${repo.v1}`) });
    expect(await health()).toEqual({ ok: true, version: "v2" });

    // A missing image fails before anything is touched.
    const err = await runtime.deployLive({ agent, image: imageTag("missing"), version: "x", env }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageNotFoundError);
    expect(await health()).toEqual({ ok: true, version: "v2" });

    const back = await timed("rollbackLive", () => runtime.rollbackLive(agent));
    expect(back).toEqual({ container: `${prefix}-live-${agent}`, image: v1.image });
    expect(await health()).toEqual({ ok: true, version: "v1" });
    expect((await runtime.liveStatus(agent))?.image).toBe(v1.image);

    const again = await runtime.rollbackLive(agent).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(NoPreviousVersionError);
    expect((again as NoPreviousVersionError).code).toBe("MOSS_E_NO_PREVIOUS_VERSION");
    expect(await health()).toEqual({ ok: true, version: "v1" });

    await runtime.removeAgent(agent);
    expect(await runtime.liveStatus(agent)).toBeUndefined();
    const left = await docker.listContainers({ all: true, filters: { label: [`moss.prefix=${prefix}`, `moss.agent=${agent}`] } });
    expect(left).toEqual([]);
  });

  it("rejects an agent name that cannot be part of a container name", async () => {
    await expect(runtime.deployLive({ agent: "../x", image: v1.image, version: "v1", env: {} })).rejects.toBeInstanceOf(InvalidSpecError);
  });
});

/** A tar with exactly these entries, as a hostile reporter would write it (ustar, names taken as given). */
async function rawTar(entries: Array<{ name: string; type?: "file" | "symlink" | "link" | "character-device"; linkname?: string; content?: string }>): Promise<Buffer> {
  const TYPE = { file: "0", link: "1", symlink: "2", "character-device": "3" } as const;
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const content = Buffer.from(e.content ?? "");
    const h = Buffer.alloc(512);
    const put = (value: string, at: number, len: number) => h.write(value.slice(0, len), at, "utf8");
    const octal = (n: number, len: number) => n.toString(8).padStart(len - 1, "0");
    put(e.name, 0, 100);
    put(octal(0o644, 8), 100, 8);
    put(octal(0, 8), 108, 8);
    put(octal(0, 8), 116, 8);
    put(octal(e.type && e.type !== "file" ? 0 : content.length, 12), 124, 12);
    put(octal(0, 12), 136, 12);
    h.fill(" ", 148, 156);
    put(TYPE[e.type ?? "file"], 156, 1);
    put(e.linkname ?? "", 157, 100);
    put("ustar\0", 257, 6);
    put("00", 263, 2);
    let sum = 0;
    for (const b of h) sum += b;
    put(`${octal(sum, 7)}\0`, 148, 8);
    blocks.push(h);
    if (!e.type || e.type === "file") blocks.push(content, Buffer.alloc((512 - (content.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}
