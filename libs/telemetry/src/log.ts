import { trace } from "@opentelemetry/api";

export type LogLevel = "debug" | "info" | "warn" | "error";
const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

/**
 * One JSON object per line on stderr, with the active trace id, so a log line can be found from a trace and back.
 * Level from `MOSS_LOG_LEVEL` (read by the caller's main and passed in), default `info`.
 */
export function createLogger(service: string, opts: { level?: LogLevel; fields?: Record<string, unknown>; write?: (line: string) => void } = {}): Logger {
  const min = order[opts.level ?? "info"];
  const write = opts.write ?? ((line: string) => process.stderr.write(line + "\n"));
  const base = { service, ...opts.fields };
  const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (order[level] < min) return;
    const span = trace.getActiveSpan()?.spanContext();
    const rec: Record<string, unknown> = { t: new Date().toISOString(), level, msg, ...base, ...fields };
    if (span) rec["trace_id"] = span.traceId;
    for (const [k, v] of Object.entries(rec)) if (v instanceof Error) rec[k] = { name: v.name, message: v.message, code: (v as { code?: string }).code, stack: v.stack };
    write(JSON.stringify(rec));
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (fields) => createLogger(service, { ...opts, fields: { ...opts.fields, ...fields } }),
  };
}
