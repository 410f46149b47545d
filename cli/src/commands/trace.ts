import type { BatchTimeline, TimelineEntry } from "@moss/contracts";
import { operatorGet, type Command } from "../shared";

/** One stage of a batch as a waterfall row: what, which service, when it started (from the first failure), how long. */
export interface TraceRow {
  stage: string;
  service: string;
  startMs: number;
  durationMs: number;
  note: string;
}

/** Which service ends each kind of timeline entry (and so did the work since the entry before it). */
const SERVICE: Record<string, string> = { batch: "curator", candidate: "rewriter", "candidate-failed": "rewriter", replay: "replayer", verdict: "promoter", approval: "operator-api", promotion: "promoter", retry: "promoter", "dead-letter": "bus", "breaker-reset": "operator-api" };
const STAGE: Record<string, string> = { batch: "curate", candidate: "rewrite", "candidate-failed": "rewrite", replay: "replay", verdict: "verdict", approval: "consent", promotion: "promote + bake", retry: "retry", "dead-letter": "dead letter", "breaker-reset": "breaker reset" };

/**
 * The batch's stages from its audit records: each runs from the entry before it to its own (the first failure opens
 * the batch), so the rows are the waterfall of where its time went.
 */
export function traceRows(t: Pick<BatchTimeline, "timeline">): TraceRow[] {
  const entries = [...t.timeline].map((e) => ({ ...e, ms: Date.parse(e.at) })).filter((e) => !Number.isNaN(e.ms)).sort((a, b) => a.ms - b.ms);
  const first = entries.find((e) => e.kind === "failure");
  if (!first) return [];
  const t0 = first.ms;
  const rows: TraceRow[] = [];
  let prev: (TimelineEntry & { ms: number }) = first;
  for (const e of entries) {
    if (e.kind === "failure") continue;
    rows.push({ stage: STAGE[e.kind] ?? e.kind, service: SERVICE[e.kind] ?? "?", startMs: prev.ms - t0, durationMs: Math.max(0, e.ms - prev.ms), note: e.summary });
    prev = e;
  }
  return rows;
}

const WIDTH = 40;
const fmt = (ms: number) => (ms >= 60_000 ? `${(ms / 60_000).toFixed(1)} min` : `${(ms / 1000).toFixed(1)} s`);

/** The rows as a terminal waterfall. */
export function renderTrace(batchId: string, traceId: string | undefined, rows: readonly TraceRow[]): string[] {
  const total = Math.max(1, ...rows.map((r) => r.startMs + r.durationMs));
  const out = [`Batch ${batchId}${traceId ? `  trace ${traceId} (Jaeger shows its spans)` : ""}  — ${fmt(total)} from the first failure, from the audit records`];
  for (const r of rows) {
    const start = Math.round((r.startMs / total) * WIDTH);
    const len = Math.max(1, Math.round((r.durationMs / total) * WIDTH));
    const bar = " ".repeat(Math.min(start, WIDTH - 1)) + "█".repeat(Math.min(len, WIDTH - Math.min(start, WIDTH - 1)));
    out.push(`  ${r.stage.padEnd(15)} ${r.service.padEnd(13)} +${fmt(r.startMs).padStart(8)} ${fmt(r.durationMs).padStart(8)}  |${bar.padEnd(WIDTH)}|  ${r.note.slice(0, 80)}`);
  }
  return out;
}

export const trace: Command = {
  name: "trace",
  help: "  trace BATCH              the batch's stages as a waterfall: which service, when, how long (from the audit records)",
  options: { json: { type: "boolean" } },
  async run({ args, values, config }) {
    const [batchId] = args;
    if (!batchId) throw new Error("usage: moss trace BATCH");
    const t = (await operatorGet(config(), `/v1/batches/${encodeURIComponent(batchId)}`)) as BatchTimeline;
    const rows = traceRows(t);
    if (values["json"]) console.log(JSON.stringify({ batchId, traceId: t.traceId, rows }, null, 2));
    else for (const l of renderTrace(batchId, t.traceId, rows)) console.log(l);
    return 0;
  },
};
