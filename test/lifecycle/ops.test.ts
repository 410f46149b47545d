// Every service's operations listener, on a real stack (moss up's supervisor, a real nats-server): /healthz while the
// process lives, /readyz with the bus and its consumers (503 once the bus is gone), and Prometheus /metrics counting
// what it handled and published, its handlers' durations, its consumers' lag, and the operator API's batches by state.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBus, type Bus } from "@moss/bus";
import { freePort, startStack, type Stack } from "@moss/cli";
import { parseConfig } from "@moss/config";
import { Messages } from "@moss/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { failure } from "../helpers/env";
import { startNats, waitFor, type NatsServer } from "../helpers/nats";

describe("the ops listener of every service (real stack)", () => {
  const dir = mkdtempSync(join(tmpdir(), "moss-ops-"));
  let nats: NatsServer;
  let stack: Stack;
  let bus: Bus;
  const ports: Record<string, number> = {};
  const get = async (service: string, path: string) => {
    const res = await fetch(`http://127.0.0.1:${ports[service]}${path}`);
    return { status: res.status, text: await res.text() };
  };
  /** One sample of a metric, by its labels (the service label included). */
  const sample = (text: string, name: string, labels: Record<string, string>) => {
    const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
    const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && want.every((w) => l.includes(w)));
    return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
  };

  beforeAll(async () => {
    nats = await startNats();
    mkdirSync(join(dir, "shop"));
    for (const s of ["curator", "operator-api"]) ports[s] = await freePort();
    const input = {
      dataDir: join(dir, "data"),
      nats: { url: nats.url, auth: "none" as const },
      auditor: { port: await freePort() },
      operatorApi: { port: await freePort() },
      curator: { batchSize: 2, batchWindowMs: 60_000, http: { enabled: false } },
      ops: { ports },
      agents: { shop: { repo: join(dir, "shop") } },
    };
    const file = join(dir, "moss.json");
    writeFileSync(file, JSON.stringify(input));
    stack = await startStack({ config: parseConfig(input, { base: dir, source: file }), configFile: file, services: ["curator", "operator-api"], operator: "tester" });
    bus = await createBus({ url: nats.url, name: "ops-test" });
  }, 60_000);
  afterAll(async () => {
    await bus?.close();
    await stack?.stop();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("/healthz says the process is alive; /readyz that the bus is connected and its consumers are bound", async () => {
    const h = await waitFor(async () => (await get("curator", "/healthz").catch(() => undefined))?.status === 200 || undefined, 10_000, "curator /healthz");
    expect(h).toBe(true);
    expect(JSON.parse((await get("curator", "/healthz")).text)).toMatchObject({ ok: true, service: "curator" });
    const r = await get("curator", "/readyz");
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text)).toMatchObject({ ready: true, service: "curator", bus: "connected", consumers: [{ consumer: "curator" }, { consumer: "curator-successes" }] });
  });

  it("/metrics counts what the service handled and published, with durations and lag; the operator API counts batches by state", async () => {
    for (const id of ["f-ops-1", "f-ops-2"]) await bus.publish(Messages.failure, failure({ id, agent: "shop" }));
    const text = await waitFor(async () => {
      const m = (await get("curator", "/metrics")).text;
      // The batch is announced inside the chunk's handler; the chunk is acked (and counted) just after.
      return sample(m, "moss_messages_published_total", { message: "batch.ready.v1" }) === 1 && sample(m, "moss_messages_handled_total", { consumer: "curator", outcome: "acked" }) === 2 ? m : undefined;
    }, 20_000, "the batch in the curator's metrics");
    expect(sample(text, "moss_messages_handled_total", { service: "curator", consumer: "curator", message: "failure.v1", outcome: "acked" })).toBe(2);
    // The failures are handled in chunks (no per-message duration); a per-message consumer's handlers are timed.
    expect(text).toContain("# TYPE moss_handler_seconds histogram");
    expect(sample(text, "moss_consumer_lag", { consumer: "curator" })).toBe(0);
    expect(text).toContain("moss_process_resident_memory_bytes");
    const api = await waitFor(async () => {
      const m = (await get("operator-api", "/metrics")).text;
      return sample(m, "moss_batches", { state: "ready" }) === 1 ? m : undefined;
    }, 10_000, "the ready batch in the operator API's metrics");
    expect(api).toContain('service="operator-api"');
  });

  it("/readyz turns 503 once the bus is gone, and /healthz still answers", async () => {
    await nats.stop();
    const r = await waitFor(async () => {
      const x = await get("curator", "/readyz");
      return x.status === 503 ? x : undefined;
    }, 15_000, "curator not ready without its bus");
    expect(JSON.parse(r.text)).toMatchObject({ ready: false, bus: expect.stringMatching(/reconnecting|closed/) });
    expect((await get("curator", "/healthz")).status).toBe(200);
  }, 30_000);
});
