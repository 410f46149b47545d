// `moss up` supervises what it starts: a service that dies is started again and reported; when moss up itself dies,
// nothing it started lingers.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createBus, kvValues } from "@moss/bus";
import { reachable, startStack } from "@moss/cli";
import { parseConfig } from "@moss/config";
import { ADMIN, Buckets, ServiceStatus } from "@moss/contracts";
import { busCredential } from "@moss/lifecycle";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runMoss } from "../helpers/moss";
import { freePort, startNats, waitFor, type NatsServer } from "../helpers/nats";

const BIN = fileURLToPath(new URL("../../cli/bin/moss.mjs", import.meta.url));
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("moss up supervises its services", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "moss-supervise-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const configFile = async (name: string, natsUrl?: string) => {
    const input = { dataDir: join(dir, name), nats: { url: natsUrl ?? `nats://127.0.0.1:${await freePort()}` }, auditor: { port: await freePort() }, operatorApi: { port: await freePort() }, curator: { http: { enabled: false } } };
    const file = join(dir, `${name}.json`);
    writeFileSync(file, JSON.stringify(input));
    return { file, config: parseConfig(input, { base: dir, source: file }) };
  };

  it("a service killed with SIGKILL is back within seconds, and moss status says it was restarted", async () => {
    const { file, config } = await configFile("restart");
    const events: string[] = [];
    // moss status reads through the operator API, as every operator command does.
    const stack = await startStack({ config, configFile: file, services: ["curator", "operator-api"], operator: "tester", onEvent: (l) => events.push(l) });
    try {
      const first = stack.children.get("curator")!;
      first.kill("SIGKILL");
      const t0 = Date.now();
      await waitFor(() => stack.children.get("curator") !== first && stack.children.get("curator")!.exitCode === null, 10_000, "the curator to be started again");
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(events.filter((e) => e.startsWith("curator"))).toEqual([expect.stringMatching(/^curator died \(SIGKILL\); starting it again in \d+ ms$/), expect.stringMatching(/^curator is running again \(pid \d+, restart 1\)$/)]);
      const bus = await createBus({ url: config.nats.url, name: "supervise-test", credential: busCredential(config, ADMIN) });
      try {
        const s = await waitFor(async () => (await kvValues(await bus.kv(Buckets.services), ServiceStatus)).find((e) => e.value.state === "running" && e.value.restarts === 1), 5_000, "the status");
        expect(s.value).toMatchObject({ name: "curator", pid: stack.children.get("curator")!.pid, lastExit: { signal: "SIGKILL" } });
      } finally {
        await bus.close();
      }
      const status = await runMoss(["status", "--config", file]);
      expect(status.stderr).toBe("");
      expect(status.stdout).toMatch(/service curator on .+: running \(pid \d+\) since .+, 1 restart\(s\); last died .+ \(SIGKILL\)/);
    } finally {
      await stack.stop();
    }
  }, 60_000);

  it("when moss up itself is killed, its services and its nats-server stop instead of lingering", async () => {
    const { file, config } = await configFile("orphans");
    const up = spawn(process.execPath, [BIN, "up", "--only", "curator", "--config", file], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    up.stderr.on("data", (d: Buffer) => (err += d.toString()));
    // --only needs a running NATS: it says so, and starts nothing.
    const code = await new Promise<number | null>((r) => up.once("exit", r));
    expect(code).toBe(1);
    expect(err).toContain("moss up --only runs services against a running stack, and no NATS answers");

    const full = spawn(process.execPath, [BIN, "up", "--config", file], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    full.stdout.on("data", (d: Buffer) => (out += d.toString()));
    await waitFor(() => out.includes("moss is up"), 60_000, "moss up");
    const bus = await createBus({ url: config.nats.url, name: "supervise-test-2", credential: busCredential(config, ADMIN) });
    let pids: number[];
    try {
      pids = (await waitFor(async () => {
        const all = await kvValues(await bus.kv(Buckets.services), ServiceStatus);
        return all.length === 7 ? all : undefined;
      }, 10_000, "the seven services")).map((e) => e.value.pid!);
    } finally {
      await bus.close();
    }
    expect(pids.every(alive)).toBe(true);
    full.kill("SIGKILL");
    await waitFor(() => pids.every((p) => !alive(p)), 30_000, "the services to stop");
    const natsPort = Number(new URL(config.nats.url).port);
    await waitFor(async () => !(await reachable("127.0.0.1", natsPort)), 10_000, "nats-server to stop");
  }, 120_000);

  it("--only runs the named services against a running stack", async () => {
    const nats: NatsServer = await startNats();
    try {
      const { file } = await configFile("only", nats.url);
      const up = spawn(process.execPath, [BIN, "up", "--only", "curator,replayer", "--config", file], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      up.stdout.on("data", (d: Buffer) => (out += d.toString()));
      await waitFor(() => out.includes("moss is up"), 60_000, "moss up --only");
      expect(out).toContain(`moss is up: nats ${nats.url}; curator, replayer;`);
      up.kill("SIGTERM");
      expect(await new Promise((r) => up.once("exit", r))).toBe(0);
    } finally {
      await nats.stop();
    }
  }, 90_000);
});
