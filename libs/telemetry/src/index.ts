export { startTelemetry, mossTracer, injectContext, extractContext, traceIdOf, withSpan } from "./sdk";
export type { Telemetry, TelemetryOptions } from "./sdk";
export { context, trace, type Context, type Span } from "@opentelemetry/api";
export { createLogger } from "./log";
export type { Logger, LogLevel } from "./log";
