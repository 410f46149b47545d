import { TraceSpans, type BatchTimeline, type TimelineEntry } from "@moss/contracts";
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

/** The trace's spans as rows: each span's service, name, start (from the trace's first span) and its own duration. */
export function spanRows(t: TraceSpans): TraceRow[] {
  return t.spans.map((sp) => ({ stage: sp.name, service: sp.service, startMs: sp.startMs, durationMs: sp.durationMs, note: "" }));
}

/** The rows as a terminal waterfall (`from` says where they come from). */
export function renderTrace(batchId: string, traceId: string | undefined, rows: readonly TraceRow[], from = "from the audit records"): string[] {
  const total = Math.max(1, ...rows.map((r) => r.startMs + r.durationMs));
  const out = [`Batch ${batchId}${traceId ? `  trace ${traceId}` : ""}  — ${fmt(total)} ${from === "from the audit records" ? "from the first failure, " : ""}${from}`];
  for (const r of rows) {
    const start = Math.round((r.startMs / total) * WIDTH);
    const len = Math.max(1, Math.round((r.durationMs / total) * WIDTH));
    const bar = " ".repeat(Math.min(start, WIDTH - 1)) + "█".repeat(Math.min(len, WIDTH - Math.min(start, WIDTH - 1)));
    out.push(`  ${r.stage.slice(0, 40).padEnd(r.note ? 15 : 40)} ${r.service.padEnd(13)} +${fmt(r.startMs).padStart(8)} ${fmt(r.durationMs).padStart(8)}  |${bar.padEnd(WIDTH)}|  ${r.note.slice(0, 80)}`);
  }
  return out;
}

export const trace: Command = {
  name: "trace",
  help: "  trace BATCH [--audit]    the batch's trace as a waterfall: every span (service, offset, duration) when telemetry.jaegerQuery names a collector, else its stages from the audit records",
  options: { json: { type: "boolean" }, audit: { type: "boolean" } },
  async run({ args, values, config }) {
    const [batchId] = args;
    if (!batchId) throw new Error("usage: moss trace BATCH [--audit]");
    const cfg = config();
    const t = (await operatorGet(cfg, `/v1/batches/${encodeURIComponent(batchId)}`)) as BatchTimeline;
    // The spans when a collector is there to read them back from; the audit records otherwise (or when it has none).
    let spans: TraceSpans | undefined;
    let why = "";
    if (t.traceId && !values["audit"]) {
      try {
        spans = TraceSpans.parse(await operatorGet(cfg, `/v1/traces/${t.traceId}`));
      } catch (err) {
        why = (err as Error).message;
      }
    }
    const rows = spans ? spanRows(spans) : traceRows(t);
    const from = spans ? `from ${spans.spans.length} span(s) (${spans.source})` : "from the audit records";
    if (values["json"]) console.log(JSON.stringify({ batchId, traceId: t.traceId, from: spans ? "spans" : "audit", rows }, null, 2));
    else {
      for (const l of renderTrace(batchId, t.traceId, rows, from)) console.log(l);
      if (why && !values["audit"]) console.log(`  (not from spans: ${why})`);
    }
    return 0;
  },
};
