import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { batchStore } from "@moss/batch";
import { createBus, type Bus } from "@moss/bus";
import type { LoadedConfig } from "@moss/config";
import { BatchRecord, Buckets, type FailureEventInput } from "@moss/contracts";
import { startStack, type Stack } from "@moss/cli";
import { freePort, startNats, type NatsServer } from "./nats";
import { curatorConfig } from "../helpers/storm";

export const VERSION = "0123456789abcdef0123456789abcdef01234567";

/** A real nats-server and a real curator process listening for HTTP ingest on a free loopback port. */
export interface IngestStack {
  nats: NatsServer;
  stack: Stack;
  config: Readonly<LoadedConfig>;
  configFile: string;
  dataDir: string;
  /** `http://127.0.0.1:<port>` of the curator's HTTP ingest. */
  ingestUrl: string;
  /** A bus on the same NATS, for reading KV buckets in assertions. */
  bus: Bus;
  /** The curator's log lines, for failure messages. */
  logs: string[];
  stop(): Promise<void>;
}

export async function startIngestStack(opts: { batchSize?: number; batchWindowMs?: number; token?: string; name?: string } = {}): Promise<IngestStack> {
  const nats = await startNats();
  const dataDir = mkdtempSync(join(tmpdir(), `moss-${opts.name ?? "ingest"}-`));
  const port = await freePort();
  const logs: string[] = [];
  let stack: Stack | undefined;
  try {
    const { file, config } = curatorConfig(dataDir, nats.url, {
      batchSize: opts.batchSize ?? 2,
      batchWindowMs: opts.batchWindowMs ?? 60_000,
      http: { enabled: true, host: "127.0.0.1", port, ...(opts.token ? { token: opts.token } : {}) },
    });
    stack = await startStack({ config, configFile: file, services: ["curator"], onLog: (_s, l) => logs.push(l) });
    const bus = await createBus({ url: nats.url, name: "ingest-test" });
    const started = stack;
    return {
      nats,
      stack: started,
      config,
      configFile: file,
      dataDir,
      ingestUrl: `http://127.0.0.1:${port}`,
      bus,
      logs,
      async stop() {
        await bus.close().catch(() => undefined);
        await started.stop();
        await nats.stop();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stack?.stop().catch(() => undefined);
    await nats.stop();
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
}

/** Every batch record of `agent` in `moss_batches`. */
export async function batchesOf(bus: Bus, agent: string): Promise<BatchRecord[]> {
  return (await batchStore(await bus.kv(Buckets.batches)).list()).filter((b) => b.agent === agent);
}

/** A valid failure event of `agent`; every call with the same `cause` shares one root cause (one fingerprint). */
export function failureInput(agent: string, id: string, over: Partial<FailureEventInput> = {}): FailureEventInput {
  return {
    id,
    agent,
    version: VERSION,
    occurredAt: new Date().toISOString(),
    route: "/v1/chat",
    request: { method: "POST", path: "/v1/chat", headers: { "content-type": "application/json" }, body: '{"message":"convert 100 USD to EUR"}' },
    response: { status: 500, body: '{"error":"internal error"}' },
    error: {
      type: "TypeError",
      message: "Cannot read properties of undefined (reading 'rate')",
      stack: "TypeError: Cannot read properties of undefined (reading 'rate')\n    at convert (/app/src/tools/currency.ts:41:17)\n    at route (/app/src/router.ts:30:12)",
    },
    ...over,
  };
}
