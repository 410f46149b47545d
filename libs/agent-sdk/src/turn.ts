/**
 * A turn as the SDK sees it: when it started, its random seed, and the outbound HTTP calls it made — recorded live,
 * answered by Moss's replay proxy in a trial.
 *
 * Recording covers `fetch` (Node's global one, built on undici), which is what the official `openai` and
 * `@anthropic-ai/sdk` clients and most agents use. A call belongs to the turn whose `reporter.turn()` it runs under
 * (AsyncLocalStorage, so concurrent turns never mix); calls outside a turn are not recorded. Limits: at most
 * {@link TurnLimits.calls} calls per turn and {@link TurnLimits.bodyBytes} bytes per body; past them a call or a body
 * is marked truncated — a replay that reaches it diverges, and says so.
 *
 * In a trial (env MOSS_REPLAY_PROXY set), every fetch goes to the replay proxy instead, the original URL in
 * `x-moss-replay-url`, so HTTPS calls are answered too (nothing else is reachable there anyway).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { randomInt } from "node:crypto";
import type { RecordedBody, RecordedCall } from "@moss/contracts";

export const TurnLimits = {
  /** Calls recorded per turn. */
  calls: 500,
  /** Bytes recorded per request or response body. */
  bodyBytes: 8 * 2 ** 20,
  /** How long a failure waits for the bodies of calls still streaming. */
  settleMs: 2_000,
} as const;

/** Env Moss sets in a trial: where the replay proxy listens, the turn's recorded start and seed. */
export const REPLAY_PROXY_ENV = "MOSS_REPLAY_PROXY";
export const REPLAY_TIME_ENV = "MOSS_REPLAY_TIME";
export const REPLAY_SEED_ENV = "MOSS_REPLAY_SEED";

export interface TurnState {
  startedAt: Date;
  seed: number;
  /** performance.now() at the start: now() is startedAt plus the time since. */
  hr0: number;
  rng: () => number;
  calls: RecordedCall[];
  truncated: boolean;
  /** Response bodies still being read. */
  pending: Set<Promise<void>>;
  /** The state directory's tar, taken before the turn ran (what its failure's replay restores). */
  before?: Buffer;
}

const storage = new AsyncLocalStorage<TurnState>();

/** The turn the caller runs in, if any. */
export const currentTurn = (): TurnState | undefined => storage.getStore();

/** A small seeded PRNG (mulberry32): the same seed gives the same draws, live and in the replay. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A new turn: live, a fresh start and seed; in a trial, the failure's (MOSS_REPLAY_TIME / MOSS_REPLAY_SEED). */
export function newTurn(env: Record<string, string | undefined>): TurnState {
  const replayTime = env[REPLAY_TIME_ENV] ? new Date(env[REPLAY_TIME_ENV]!) : undefined;
  const replaySeed = env[REPLAY_SEED_ENV] !== undefined && /^\d+$/.test(env[REPLAY_SEED_ENV]!) ? Number(env[REPLAY_SEED_ENV]) : undefined;
  const seed = replaySeed !== undefined && replaySeed < 2 ** 32 ? replaySeed : randomInt(0, 2 ** 32 - 1);
  const startedAt = replayTime && !Number.isNaN(replayTime.getTime()) ? replayTime : new Date();
  return { startedAt, seed, hr0: performance.now(), rng: seededRandom(seed), calls: [], truncated: false, pending: new Set() };
}

export function runInTurn<T>(turn: TurnState, fn: () => T): T {
  return storage.run(turn, fn);
}

/** The turn's clock: its start plus the time since (outside a turn, the real clock). */
export function turnNow(turn: TurnState | undefined): Date {
  return turn ? new Date(turn.startedAt.getTime() + (performance.now() - turn.hr0)) : new Date();
}

/** Waits (bounded) for the bodies of the turn's calls that are still streaming. */
export async function settle(turn: TurnState): Promise<void> {
  if (!turn.pending.size) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.allSettled([...turn.pending]), new Promise<void>((r) => (timer = setTimeout(r, TurnLimits.settleMs)))]);
  clearTimeout(timer);
}

async function recordBody(body: ReadableStream<Uint8Array> | null): Promise<RecordedBody | undefined> {
  if (!body) return undefined;
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let truncated = false;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (size + value.length > TurnLimits.bodyBytes) {
      chunks.push(value.subarray(0, TurnLimits.bodyBytes - size));
      truncated = true;
      await reader.cancel().catch(() => undefined);
      break;
    }
    chunks.push(value);
    size += value.length;
  }
  const buf = Buffer.concat(chunks);
  try {
    return { text: new TextDecoder("utf-8", { fatal: true }).decode(buf), base64: false, truncated };
  } catch {
    return { text: buf.toString("base64"), base64: true, truncated };
  }
}

const headersOf = (h: Headers, redact: ReadonlySet<string>): Record<string, string> => {
  const out: Record<string, string> = {};
  h.forEach((v, k) => (out[k] = redact.has(k.toLowerCase()) ? "[redacted]" : v));
  return out;
};

const ORIGINAL = Symbol.for("moss.agent-sdk.fetch.original");
type Fetch = typeof fetch;
/** What the wrapper does, set by the latest reporter: the replay proxy (in a trial) and the headers not kept. */
const mode: { proxy?: string; redact: ReadonlySet<string> } = { redact: new Set() };

/**
 * Wraps the global fetch once per process (a second reporter reuses the wrapper): records a turn's calls live, or
 * sends every call to the replay proxy in a trial. `redact` names the request headers whose values are not kept.
 */
export function installFetchRecorder(env: Record<string, string | undefined>, redact: ReadonlySet<string>): void {
  mode.proxy = env[REPLAY_PROXY_ENV] || undefined;
  mode.redact = redact;
  const g = globalThis as unknown as { fetch: Fetch & { [ORIGINAL]?: Fetch } };
  if (typeof g.fetch !== "function" || g.fetch[ORIGINAL]) return;
  const original = g.fetch;
  const wrapped = (async (input: Parameters<Fetch>[0], init?: RequestInit): Promise<Response> => {
    const proxy = mode.proxy;
    if (proxy) {
      const req = new Request(input, init);
      const u = new URL(req.url);
      const headers = new Headers(req.headers);
      headers.set("x-moss-replay-url", req.url);
      return original(`${proxy.replace(/\/+$/, "")}${u.pathname}${u.search}`, {
        method: req.method,
        headers,
        ...(req.body ? { body: req.body, duplex: "half" } : {}),
        signal: req.signal,
      } as RequestInit);
    }
    const turn = storage.getStore();
    if (!turn) return original(input, init);
    if (turn.calls.length >= TurnLimits.calls) {
      turn.truncated = true;
      return original(input, init);
    }
    const req = new Request(input, init);
    const call: RecordedCall = { method: req.method, url: req.url, headers: headersOf(req.headers, mode.redact) };
    turn.calls.push(call);
    const reqBody = req.body ? await recordBody(req.clone().body) : undefined;
    if (reqBody) call.body = reqBody;
    let res: Response;
    try {
      res = await original(req);
    } catch (err) {
      call.error = String((err as Error)?.message ?? err).slice(0, 2_000);
      throw err;
    }
    const respHeaders: Record<string, string> = {};
    res.headers.forEach((v, k) => (respHeaders[k] = v));
    // The agent reads the answer as it streams; the copy is read alongside, and the failure waits for it.
    const reading = recordBody(res.clone().body).then(
      (body) => void (call.response = { status: res.status, headers: respHeaders, body: body ?? { text: "", base64: false, truncated: false } }),
      (err: unknown) => void (call.error = `the answer could not be read: ${String((err as Error)?.message ?? err)}`),
    );
    turn.pending.add(reading);
    void reading.finally(() => turn.pending.delete(reading));
    return res;
  }) as Fetch & { [ORIGINAL]?: Fetch };
  wrapped[ORIGINAL] = original;
  g.fetch = wrapped;
}
