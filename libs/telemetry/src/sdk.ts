import { context, propagation, trace, type Context, type Span, type Tracer } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { NodeSDK } from "@opentelemetry/sdk-node";
import { BatchSpanProcessor, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";

export interface TelemetryOptions {
  serviceName: string;
  serviceVersion?: string;
  /** OTLP/HTTP traces endpoint, e.g. `http://jaeger:4318/v1/traces`. Unset: spans are recorded (trace ids exist) but exported nowhere. */
  otlpEndpoint?: string;
}

export interface Telemetry {
  tracer: Tracer;
  /** Flushes and stops exporting; call last in shutdown. */
  shutdown(): Promise<void>;
}

/**
 * Keeps spans sampled and trace ids real when no exporter is configured, so a batch still has a trace id
 * that an operator can look up once an exporter is added.
 */
const discard: SpanProcessor = {
  onStart() {},
  onEnd() {},
  forceFlush: () => Promise.resolve(),
  shutdown: () => Promise.resolve(),
};

/** Starts the OpenTelemetry SDK for one process. No connection is opened unless an endpoint is configured. */
export function startTelemetry(opts: TelemetryOptions): Telemetry {
  const spanProcessors: SpanProcessor[] = opts.otlpEndpoint
    ? [new BatchSpanProcessor(new OTLPTraceExporter({ url: opts.otlpEndpoint }), { scheduledDelayMillis: 1_000 })]
    : [discard];
  const sdk = new NodeSDK({
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: opts.serviceName,
      [ATTR_SERVICE_VERSION]: opts.serviceVersion ?? "0.1.0",
    }),
    autoDetectResources: false,
    spanProcessors,
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [],
    textMapPropagator: new W3CTraceContextPropagator(),
  });
  sdk.start();
  return {
    tracer: trace.getTracer(`moss.${opts.serviceName}`),
    shutdown: () => sdk.shutdown(),
  };
}

/** The tracer Moss libraries use; a no-op until `startTelemetry` ran. */
export function mossTracer(): Tracer {
  return trace.getTracer("moss");
}

/** Writes the active (or given) context into a string carrier (NATS headers, batch records). */
export function injectContext(carrier: Record<string, string> = {}, ctx: Context = context.active()): Record<string, string> {
  propagation.inject(ctx, carrier);
  return carrier;
}

/** Reads a context from a carrier written by `injectContext`. */
export function extractContext(carrier: Record<string, string | undefined>, base: Context = context.active()): Context {
  return propagation.extract(base, carrier);
}

/** Trace id of a carrier, if it holds one. */
export function traceIdOf(carrier: Record<string, string>): string | undefined {
  const tp = carrier["traceparent"];
  return tp?.split("-")[1];
}

/**
 * Runs `fn` inside a new active span (child of `parent` when given), recording errors and always ending it.
 */
export async function withSpan<T>(
  name: string,
  attrs: Record<string, string | number | boolean | undefined>,
  fn: (span: Span) => Promise<T>,
  parent?: Context,
): Promise<T> {
  const tracer = mossTracer();
  const clean: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) clean[k] = v;
  return tracer.startActiveSpan(name, { attributes: clean }, parent ?? context.active(), async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: 2, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  });
}
