import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBlobStore, type BlobStore } from "@moss/blob";
import { createBus, type Bus, type KV } from "@moss/bus";
import { BatchRecord, FailureEvent, type FailureEventInput } from "@moss/contracts";
import type { Logger } from "@moss/telemetry";
import { startNats, type NatsServer } from "../helpers/nats";

/** A logger that writes nothing (handlers log a lot; test output stays readable). */
export const silent: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };

/** A real nats-server + bus + fs blob store on temp dirs; `bucket()` hands out a fresh KV bucket per test. */
export interface Env {
  nats: NatsServer;
  bus: Bus;
  blob: BlobStore;
  blobDir: string;
  /** A new, empty KV bucket (unique name), so tests never see each other's keys. */
  bucket(prefix: string): Promise<KV>;
  stop(): Promise<void>;
}

export async function startEnv(name: string): Promise<Env> {
  const nats = await startNats();
  const bus = await createBus({ url: nats.url, name, logger: silent });
  await bus.provision();
  const blobDir = mkdtempSync(join(tmpdir(), `moss-${name}-blob-`));
  const blob = createBlobStore({ kind: "fs", dir: blobDir });
  await blob.init();
  let n = 0;
  return {
    nats,
    bus,
    blob,
    blobDir,
    bucket: (prefix) => bus.kv(`${prefix}_${++n}`),
    async stop() {
      await bus.close().catch(() => undefined);
      await nats.stop();
      rmSync(blobDir, { recursive: true, force: true });
    },
  };
}

export const VERSION = "0123456789abcdef0123456789abcdef01234567";
export const CANDIDATE = "fedcba9876543210fedcba9876543210fedcba98";

/** A Node stack whose top in-app frame is `handleChat` in /app/src/chat.ts, under library and runtime frames. */
export function nodeStack(opts: { line?: number; file?: string; fn?: string } = {}): string {
  const line = opts.line ?? 42;
  return [
    "TypeError: Cannot read properties of undefined (reading 'content')",
    "    at pick (/app/node_modules/llm-client/dist/index.js:120:17)",
    "    at Array.map (node:internal/array:9:3)",
    `    at ${opts.fn ?? "handleChat"} (${opts.file ?? "/app/src/chat.ts"}:${line}:13)`,
    "    at Server.<anonymous> (/app/src/server.ts:30:5)",
    "    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)",
  ].join("\n");
}

export function failure(over: Partial<FailureEventInput> & { id: string }): FailureEvent {
  return FailureEvent.parse({
    agent: "chat-bot",
    version: VERSION,
    occurredAt: "2025-01-01T00:00:00.000Z",
    route: "/v1/chat",
    request: { method: "POST", path: "/v1/chat", headers: { "content-type": "application/json" }, body: '{"q":"hi"}' },
    error: { type: "TypeError", message: "Cannot read properties of undefined (reading 'content')", stack: nodeStack() },
    ...over,
  });
}

/** A batch record as the curator leaves it, in any state. */
export function batchRecord(over: Partial<BatchRecord> & Pick<BatchRecord, "batchId" | "failures">): BatchRecord {
  const at = "2025-01-01T00:00:00.000Z";
  return BatchRecord.parse({
    agent: "chat-bot",
    fingerprint: "fp1|TypeError|/app/src/chat.ts#handleChat|/v1/chat",
    baseVersion: VERSION,
    state: "ready",
    count: over.failures.length,
    openedAt: at,
    deadline: at,
    closedAt: at,
    attempt: 0,
    updatedAt: at,
    ...over,
  });
}

export async function seed(kv: KV, rec: BatchRecord): Promise<void> {
  await kv.put(rec.batchId, JSON.stringify(rec));
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
