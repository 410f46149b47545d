// The container sandbox's runner, read like a process: exit codes, stdin, capped output, a timeout that kills the
// tool and everything it started, and a clear reason when the image or the program is missing. And the mounts check
// that keeps Moss's own paths out of the container.
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDockerClient } from "@moss/runtime";
import { exposedByMounts, runInContainer, type ContainerSpec } from "@moss/rewriter";
import { afterAll, describe, expect, it } from "vitest";

const docker = createDockerClient("/var/run/docker.sock");
const spec: ContainerSpec = { image: "moss/coding-agent:latest", proxyImage: "moss/node-base:latest", mounts: [], allow: [], memoryMiB: 256, pids: 64 };
const box = mkdtempSync(join(tmpdir(), "moss-sandbox-test-"));
chmodSync(box, 0o777);
const opts = { cwd: box, env: { PATH: "/usr/bin:/bin", HOME: box }, timeoutMs: 20_000, runAs: { uid: 201_000, gid: 201_000 } };
afterAll(() => rmSync(box, { recursive: true, force: true }));

describe("a tool in a sandbox container", () => {
  it("runs as the sandbox uid in the box, with its exit code, stdout and stderr, and no network", async () => {
    const r = await runInContainer(docker, spec, box, undefined, ["sh", "-c", "id -u; pwd; echo oops >&2; cat /proc/net/route | wc -l; exit 3"], opts);
    expect(r).toMatchObject({ kind: "exited", exitCode: 3, signal: null });
    expect(r.stdout.split("\n").slice(0, 3)).toEqual(["201000", box, "1"]);
    expect(r.stderr).toBe("oops\n");
  }, 30_000);

  it("reads a stdin file to its end", async () => {
    writeFileSync(join(box, "in.txt"), "line one\nline two\n");
    const r = await runInContainer(docker, spec, box, undefined, ["wc", "-l"], { ...opts, stdinFile: join(box, "in.txt") });
    expect(r).toMatchObject({ kind: "exited", exitCode: 0 });
    expect(r.stdout.trim()).toBe("2");
  }, 30_000);

  it("is killed at its timeout, with whatever it left running in the background", async () => {
    const r = await runInContainer(docker, spec, box, undefined, ["sh", "-c", "sleep 300 & echo started; wait"], { ...opts, timeoutMs: 1_500 });
    expect(r).toMatchObject({ kind: "timeout", signal: "SIGKILL" });
    expect(r.stdout).toContain("started");
    expect(execFileSync("docker", ["ps", "-aq", "--filter", "label=moss.sandbox"], { encoding: "utf8" }).trim()).toBe("");
  }, 30_000);

  it("says so when the program or the image is missing", async () => {
    const noProgram = await runInContainer(docker, spec, box, undefined, ["claude", "-p", "hi"], opts);
    expect(noProgram.kind).toBe("spawn-error");
    expect(noProgram.error).toMatch(/"claude".*not found/);
    const noImage = await runInContainer(docker, { ...spec, image: "moss/no-such-tool:1" }, box, undefined, ["true"], opts);
    expect(noImage).toMatchObject({ kind: "spawn-error" });
    expect(noImage.error).toContain("the sandbox image moss/no-such-tool:1 is not on this Docker engine");
    expect(noImage.error).toContain("rewriter.sandbox.image");
  }, 30_000);
});

describe("the sandbox's mounts", () => {
  it("may not be, hold or lie inside any of Moss's own paths", () => {
    const secret = ["/srv/moss/.moss", "/srv/moss/moss.json", "/srv/agents/shop"];
    expect(exposedByMounts(["/opt/claude", "/srv/moss-tools"], secret)).toEqual([]);
    expect(exposedByMounts(["/srv"], secret)).toEqual(secret);
    expect(exposedByMounts(["/srv/moss/.moss/keys"], secret)).toEqual(["/srv/moss/.moss"]);
    expect(exposedByMounts(["/srv/agents/shop/"], secret)).toEqual(["/srv/agents/shop"]);
  });
});
