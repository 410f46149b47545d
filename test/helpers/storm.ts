import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createBus, kvKeys, type Bus } from "@moss/bus";
import { parseConfig, type MossConfigInput } from "@moss/config";
import { Buckets, Consumers, Streams, failureSubject, type FailureEventInput } from "@moss/contracts";

/** Three root causes of the same agent, as real Node stacks (different error types, frames, routes). */
export const ROOT_CAUSES = [
  { type: "TypeError", message: "Cannot read properties of undefined (reading 'rate')", frame: "at convert (/app/src/tools/currency.ts:41:17)", route: "currency" },
  { type: "ToolInputError", message: "calculator: unsupported token 'usd'", frame: "at tokenize (/app/src/tools/calculator.ts:16:11)", route: "calculator" },
  { type: "TimeoutError", message: "weather api timed out after 5000 ms", frame: "at fetchForecast (/app/src/tools/weather.ts:88:9)", route: "weather" },
] as const;

/** A realistic ~1 KiB failure event of root cause `cause`, unique by `i`. */
export function stormEvent(agent: string, i: number, cause: number): FailureEventInput {
  const c = ROOT_CAUSES[cause]!;
  return {
    id: `${agent}-${i.toString(36)}x${cause}`,
    agent,
    version: "0123456789abcdef0123456789abcdef01234567",
    occurredAt: new Date(1_700_000_000_000 + i).toISOString(),
    route: c.route,
    request: { method: "POST", path: "/v1/chat", headers: { "content-type": "application/json" }, body: JSON.stringify({ session: `s${i % 97}`, message: `request number ${i} for ${c.route}` }) },
    response: { status: 500, body: '{"error":"internal error"}' },
    error: {
      type: c.type,
      message: c.message,
      stack: `${c.type}: ${c.message}\n    ${c.frame}\n    at route (/app/src/router.ts:30:12)\n    at Server.<anonymous> (/app/src/server.ts:55:20)\n    at Server.emit (node:events:519:28)`,
    },
    logs: [`handling request ${i}`, `route=${c.route}`, "calling tool"],
    env: { TZ: "UTC" },
    timeoutMs: 5_000,
  };
}

/** Publishes events with `inflight` acknowledged publishes in flight; resolves with the elapsed ms. */
export async function publishAll(bus: Bus, payloads: Array<{ subject: string; data: string; id: string }>, inflight = 256): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < payloads.length) {
      const p = payloads[next++]!;
      await bus.js.publish(p.subject, p.data, { msgID: p.id });
    }
  };
  await Promise.all(Array.from({ length: inflight }, worker));
  return performance.now() - t0;
}

export function stormPayloads(agent: string, n: number, causes = 3): Array<{ subject: string; data: string; id: string; cause: number }> {
  return Array.from({ length: n }, (_, i) => {
    const cause = i % causes;
    const ev = stormEvent(agent, i, cause);
    return { subject: failureSubject(agent), data: JSON.stringify(ev), id: ev.id, cause };
  });
}

/** A config for a curator-only stack on `natsUrl` under `dataDir`; returns its file path and parsed form. */
export function curatorConfig(dataDir: string, natsUrl: string, curator: MossConfigInput["curator"] = {}) {
  const input: MossConfigInput = { dataDir, nats: { url: natsUrl }, curator: { http: { enabled: false }, ...curator } };
  const file = join(dataDir, "moss.config.json");
  writeFileSync(file, JSON.stringify(input));
  return { file, config: parseConfig(input, { base: dataDir, source: file }) };
}

/** Waits until the curator consumer has acked everything in the failure stream. */
export async function waitDrained(bus: Bus, expected: number, timeoutMs = 120_000): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const info = await bus.jsm.consumers.info(Streams.FAILURES, Consumers.curator.durable).catch(() => undefined);
    if (info && info.num_pending === 0 && info.num_ack_pending === 0 && info.ack_floor.stream_seq >= expected) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error(`curator did not drain ${expected} failures in ${timeoutMs} ms (ack floor ${info?.ack_floor.stream_seq})`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Per fingerprint of `agent`: the batch ids (records) and failures counted (batch count + attached). On a bus of its own, or `on` one given. */
export async function batchTotals(natsUrl: string, agent: string, on?: Bus): Promise<{ batches: number; totals: number[] }> {
  const bus = on ?? (await createBus({ url: natsUrl, name: "storm-check" }));
  try {
    const state = await bus.kv(Buckets.curator);
    const e = await state.get(`agent.${agent}`);
    const s = e!.json<{ open: Record<string, { batchId: string; count: number }>; active: Record<string, { batchId: string; attached: number }>; closing: Record<string, { batchId: string; count: number; fpKey: string }>; queued: Array<{ batchId: string; count: number }> }>();
    const batches = await bus.kv(Buckets.batches);
    const ids = await kvKeys(batches);
    const totals: number[] = [];
    for (const [fpKey, a] of Object.entries(s.active)) {
      const rec = (await batches.get(a.batchId))!.json<{ count: number }>();
      totals.push(rec.count + a.attached + (s.open[fpKey]?.count ?? 0));
    }
    return { batches: ids.length, totals: totals.sort((x, y) => x - y) };
  } finally {
    if (!on) await bus.close();
  }
}
