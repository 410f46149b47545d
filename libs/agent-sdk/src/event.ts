import { randomUUID } from "node:crypto";
import { FailureEvent, SuccessEvent, type BlobRef, type ErrorInfo, type FailureEventInput } from "@moss/contracts";
import { MossSdkError, SdkErrorCodes } from "./errors";

/** Header values as Node's `IncomingHttpHeaders` has them, or plain strings. */
export type HeaderValues = Record<string, string | readonly string[] | number | undefined>;

/** The request that failed, as the agent saw it. */
export interface CapturedRequest {
  /** Default `POST`. */
  method?: string;
  /** Path and query, starting with `/`. */
  path: string;
  headers?: HeaderValues;
  /** Text, bytes (UTF-8) or a JSON value (serialized). */
  body?: string | Uint8Array | object;
}

export interface CaptureInput {
  /** The HTTP request that failed (an HTTP agent); or else `invocation`. */
  request?: CapturedRequest;
  /** A command agent's turn: its arguments (after the image's ENTRYPOINT) and stdin. */
  invocation?: { args: readonly string[]; stdin?: string | Uint8Array };
  /** Whatever was thrown. */
  error: unknown;
  /** Route / intent being served; part of Moss's fingerprint. */
  route?: string;
  /** The answer the agent gave, if any. */
  response?: { status: number; body?: string };
  tags?: Record<string, string>;
  /** The agent's own fingerprint; wins over Moss's. */
  fingerprint?: string;
  /**
   * What a right answer to this turn looks like, for its replays: a status range (default: the agent's config, else
   * 200-299) and checks of the JSON response (`{ path: "$.total", equals: 42 }`, `matches`, `exists`, `absent`).
   */
  expect?: { statusMin?: number; statusMax?: number; json?: Array<{ path: string; equals?: unknown; matches?: string; exists?: true; absent?: true }> };
}

/** A turn that went well, as `captureSuccess` takes it: what it was asked and what it answered. */
export interface SuccessInput {
  /** The HTTP request it served (an HTTP agent); or else `invocation`. */
  request?: CapturedRequest;
  invocation?: { args: readonly string[]; stdin?: string | Uint8Array };
  /** Route / intent it served: the regression set spreads over routes, and the per-route cap counts by it. */
  route?: string;
  /** What it answered: the outcome a candidate must keep. */
  response: { status: number; body?: string };
  tags?: Record<string, string>;
}

/** Limits of the `moss.failure.v1` schema that captured data is cut to, so that a big body never loses the whole event. */
export const Limits = {
  body: 1_000_000,
  responseBody: 100_000,
  errorType: 200,
  errorMessage: 10_000,
  stack: 50_000,
  logLine: 4_000,
  logLines: 200,
  route: 200,
  fingerprint: 200,
  method: 16,
} as const;

const cut = (s: string, max: number): string => (s.length > max ? `${s.slice(0, max - 12)}…[truncated]` : s);

/** A fresh event id: a UUID without dashes (valid as an `Id` and as a `Nats-Msg-Id`). */
export const newFailureId = (): string => randomUUID().replaceAll("-", "");

/** What an unknown throw says about itself, in the schema's shape. */
export function describeError(err: unknown): ErrorInfo {
  if (err instanceof Error) {
    let stack = err.stack;
    // Causes are often where the real problem is; keep their stacks after the error's own.
    let cause: unknown = err.cause;
    for (let depth = 0; cause !== undefined && depth < 5; depth++) {
      const text = cause instanceof Error ? (cause.stack ?? `${cause.name}: ${cause.message}`) : safeString(cause);
      stack = `${stack ?? `${err.name}: ${err.message}`}\nCaused by: ${text}`;
      cause = cause instanceof Error ? cause.cause : undefined;
    }
    return {
      type: cut(err.name || err.constructor?.name || "Error", Limits.errorType),
      message: cut(String(err.message), Limits.errorMessage),
      ...(stack !== undefined ? { stack: cut(stack, Limits.stack) } : {}),
    };
  }
  return { type: err === null ? "null" : typeof err === "object" ? "NonErrorObject" : `NonError(${typeof err})`, message: cut(safeString(err), Limits.errorMessage) };
}

function safeString(v: unknown): string {
  if (typeof v === "string") return v;
  try {
    const s = JSON.stringify(v);
    if (s !== undefined) return s;
  } catch {
    // circular or BigInt: fall through
  }
  return String(v);
}

/** Header names whose values are replaced by `[redacted]` unless the reporter says otherwise. */
export const DEFAULT_REDACTED_HEADERS: readonly string[] = ["authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"];

function normalizeHeaders(h: HeaderValues | undefined, redact: ReadonlySet<string>): Record<string, string> {
  const out: Record<string, string> = {};
  if (!h) return out;
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    const name = k.toLowerCase();
    out[name] = redact.has(name) ? "[redacted]" : Array.isArray(v) ? v.join(", ") : String(v);
  }
  return out;
}

function bodyText(b: CapturedRequest["body"]): string | undefined {
  if (b === undefined) return undefined;
  if (typeof b === "string") return b;
  if (b instanceof Uint8Array) return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("utf8");
  return safeString(b);
}

/** The event's state snapshot: inline (base64 tar, at most 1 MiB) or a reference to the blob store. */
export type SnapshotField = { path: string; inlineBase64: string } | { path: string; blob: BlobRef };

export interface EventContext {
  agent: string;
  version: string;
  logs: string[];
  env: Record<string, string>;
  timeoutMs?: number;
  snapshot?: SnapshotField;
  /** With a turn: its clock and seed, its cassette, and the state it left behind (then `snapshot` is the one before it). */
  turn?: FailureEvent["turn"];
  cassette?: FailureEvent["cassette"];
  afterSnapshot?: SnapshotField;
  redactHeaders: ReadonlySet<string>;
}

/** What a failure and a recorded success both carry: the turn's input, answer, logs, env, state and calls. */
function turnFields(id: string, input: Omit<SuccessInput, "response"> & { response?: SuccessInput["response"] }, ctx: EventContext) {
  const req = input.request;
  const body = req ? bodyText(req.body) : undefined;
  return {
    id,
    agent: ctx.agent,
    version: ctx.version,
    occurredAt: new Date().toISOString(),
    ...(req
      ? {
          request: {
            method: cut((req.method ?? "POST").toUpperCase(), Limits.method),
            path: req.path,
            headers: normalizeHeaders(req.headers, ctx.redactHeaders),
            ...(body !== undefined ? { body: cut(body, Limits.body) } : {}),
          },
        }
      : {}),
    ...(input.invocation
      ? {
          invocation: {
            args: [...input.invocation.args],
            ...(input.invocation.stdin !== undefined ? { stdin: cut(bodyText(input.invocation.stdin) ?? "", Limits.body) } : {}),
          },
        }
      : {}),
    logs: ctx.logs.slice(-Limits.logLines),
    env: ctx.env,
    tags: input.tags ?? {},
    ...(input.route !== undefined ? { route: cut(input.route, Limits.route) } : {}),
    ...(input.response !== undefined
      ? { response: { status: input.response.status, ...(input.response.body !== undefined ? { body: cut(input.response.body, Limits.responseBody) } : {}) } }
      : {}),
    ...(ctx.timeoutMs !== undefined ? { timeoutMs: ctx.timeoutMs } : {}),
    ...(ctx.snapshot !== undefined ? { snapshot: ctx.snapshot } : {}),
    ...(ctx.turn !== undefined ? { turn: ctx.turn } : {}),
    ...(ctx.cassette !== undefined ? { cassette: ctx.cassette } : {}),
  };
}

/** Build and validate a failure event; throws `MOSS_E_INVALID_EVENT` with every problem listed. */
export function buildFailureEvent(id: string, input: CaptureInput, ctx: EventContext): FailureEvent {
  const candidate: FailureEventInput = {
    schema: "moss.failure.v1",
    ...turnFields(id, input, ctx),
    error: describeError(input.error),
    ...(input.fingerprint !== undefined ? { fingerprint: cut(input.fingerprint, Limits.fingerprint) } : {}),
    ...(input.expect !== undefined ? { expect: input.expect } : {}),
    ...(ctx.afterSnapshot !== undefined ? { afterSnapshot: ctx.afterSnapshot } : {}),
  };
  const parsed = FailureEvent.safeParse(candidate);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "(event)"}: ${i.message}`).join("; ");
    throw new MossSdkError(SdkErrorCodes.invalidEvent, `failure event ${id} does not match moss.failure.v1: ${problems}`, { cause: parsed.error });
  }
  return parsed.data;
}

/** Build and validate a recorded success; throws `MOSS_E_INVALID_EVENT` with every problem listed. */
export function buildSuccessEvent(id: string, input: SuccessInput, ctx: EventContext): SuccessEvent {
  const parsed = SuccessEvent.safeParse({ schema: "moss.success.v1", ...turnFields(id, input, ctx) });
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "(event)"}: ${i.message}`).join("; ");
    throw new MossSdkError(SdkErrorCodes.invalidEvent, `recorded success ${id} does not match moss.success.v1: ${problems}`, { cause: parsed.error });
  }
  return parsed.data;
}
