import Fastify from "fastify";

export interface CollectedSpan {
  traceId: string;
  spanId: string;
  name: string;
  service: string;
}

/** A minimal OTLP/HTTP (JSON) trace receiver standing in for Jaeger. */
export async function startOtlpReceiver(): Promise<{ endpoint: string; spans: CollectedSpan[]; close(): Promise<void> }> {
  const spans: CollectedSpan[] = [];
  const app = Fastify({ bodyLimit: 50 * 1024 * 1024 });
  app.post("/v1/traces", async (req) => {
    const body = req.body as { resourceSpans?: Array<{ resource?: { attributes?: Array<{ key: string; value: { stringValue?: string } }> }; scopeSpans?: Array<{ spans?: Array<{ traceId: string; spanId: string; name: string }> }> }> };
    for (const rs of body.resourceSpans ?? []) {
      const service = rs.resource?.attributes?.find((a) => a.key === "service.name")?.value.stringValue ?? "?";
      for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) spans.push({ traceId: hex(s.traceId), spanId: hex(s.spanId), name: s.name, service });
    }
    return {};
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const port = (app.server.address() as { port: number }).port;
  return { endpoint: `http://127.0.0.1:${port}/v1/traces`, spans, close: () => app.close() };
}

/** OTLP JSON ids are hex; some encoders send base64. */
function hex(id: string): string {
  return /^[0-9a-f]+$/i.test(id) ? id.toLowerCase() : Buffer.from(id, "base64").toString("hex");
}
