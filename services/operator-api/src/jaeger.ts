/**
 * Reading a trace back from Jaeger's query API (`GET /api/traces/<id>`), as `moss trace` draws it: each span with its
 * service, name, start and duration. Jaeger answers times in microseconds; the spans come back in ms from the trace's
 * first span.
 */
import type { TraceSpans } from "@moss/contracts";

interface JaegerSpan {
  spanID: string;
  operationName: string;
  startTime: number;
  duration: number;
  processID: string;
  references?: Array<{ refType: string; spanID: string }>;
}
interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string }>;
}

export function jaegerSpans(baseUrl: string, o: { timeoutMs?: number } = {}): (traceId: string) => Promise<TraceSpans | undefined> {
  const base = baseUrl.replace(/\/+$/, "");
  return async (traceId) => {
    const url = `${base}/api/traces/${traceId}`;
    let res: Response;
    try {
      res = await fetch(url, { signal: AbortSignal.timeout(o.timeoutMs ?? 5_000) });
    } catch (err) {
      throw new Error(`cannot reach the collector's query API at ${url}: ${(err as Error).message} (telemetry.jaegerQuery)`);
    }
    if (res.status === 404) return undefined;
    if (!res.ok) throw new Error(`the collector's query API answered ${res.status} for ${url}`);
    const body = (await res.json()) as { data?: JaegerTrace[] };
    const trace = body.data?.[0];
    if (!trace) return undefined;
    const t0 = Math.min(...trace.spans.map((s) => s.startTime));
    const spans = trace.spans
      .map((s) => {
        const parent = s.references?.find((r) => r.refType === "CHILD_OF")?.spanID;
        return { service: trace.processes[s.processID]?.serviceName ?? "?", name: s.operationName, startMs: (s.startTime - t0) / 1000, durationMs: s.duration / 1000, spanId: s.spanID, ...(parent ? { parentId: parent } : {}) };
      })
      .sort((a, b) => a.startMs - b.startMs);
    return { traceId, source: `jaeger ${base}`, spans };
  };
}
