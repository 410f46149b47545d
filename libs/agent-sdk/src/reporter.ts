import { createHash } from "node:crypto";
import { appendFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { connect, nkeyAuthenticator, nkeys, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import { AgentName, GitSha, agentIdentity, failureSubject, inboxPrefix, successSubject, type FailureEvent } from "@moss/contracts";
import { MossSdkError, SdkErrorCodes } from "./errors";
import { DEFAULT_REDACTED_HEADERS, Limits, buildFailureEvent, buildSuccessEvent, newFailureId, type CaptureInput, type EventContext, type SnapshotField, type SuccessInput } from "./event";
import { MAX_INLINE_SNAPSHOT_BYTES, MAX_UPLOADED_SNAPSHOT_BYTES, snapshotDirectory } from "./snapshot";
import { SNAPSHOT_CONTENT_TYPE, type SnapshotUploader } from "./upload";
import { Spool } from "./spool";
import { currentTurn, installFetchRecorder, newTurn, runInTurn, settle, turnNow, type TurnState } from "./turn";

/** nats-server's default max_payload: what an event must fit when the server cannot be asked. */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/** Largest cassette (as JSON) a failure event carries inline; a bigger one needs `uploadSnapshot`. */
export const MAX_INLINE_CASSETTE_BYTES = 256 * 1024;

/** Env var Moss sets inside replay containers: failures go to this file (one JSON line each), never to NATS. */
export const REPLAY_FAILURE_FILE_ENV = "MOSS_REPLAY_FAILURE_FILE";
/** Env var read for the NATS URL when `natsUrl` is not given. */
export const NATS_URL_ENV = "MOSS_NATS_URL";
/** Env var read for `sampleRate` when it is not given: the share of successful turns recorded, 0 to 1. */
export const SAMPLE_RATE_ENV = "MOSS_SAMPLE_RATE";
/** Env var read for the agent's NATS credential (its nkey seed) when `natsSeed` is not given; Moss sets it in live containers. */
export const NATS_SEED_ENV = "MOSS_NATS_SEED";

/** Options of `createReporter`. Every default is named here. */
export interface MossReporterOptions {
  /** Agent name (lowercase, NATS-token safe); failures go to `moss.failure.<agent>`. */
  agent: string;
  /** Git commit of the agent's code, usually env `MOSS_AGENT_VERSION`. Checked at creation. */
  version: string;
  /** NATS server URL(s), comma-separated. Default: env `MOSS_NATS_URL`, else `nats://127.0.0.1:4222`. */
  natsUrl?: string;
  /**
   * The agent's nkey seed (`SU...`): it connects as `agent.<name>`, whose only grant is publishing its own failures.
   * Default: env `MOSS_NATS_SEED`; unset, it connects anonymously (a nats-server without auth).
   */
  natsSeed?: string;
  /**
   * Directory snapshotted (tar) into each failure: inline base64 up to 1 MiB, or through `uploadSnapshot` up to
   * 64 MiB. Bigger → no snapshot and a warning; the failure is still reported.
   */
  stateDir?: string;
  /**
   * Stores the state dir's tar in Moss's blob store (content-addressed) before the event is sent; the event then
   * carries `snapshot.blob` instead of inline base64, and snapshots up to 64 MiB are allowed. `blobUploader(store)`
   * adapts a `@moss/blob` store. If the upload fails or times out, a tar of at most 1 MiB goes inline instead;
   * a bigger one is left out (with a warning). Not used in replay mode (offline): inline only. Default: none.
   */
  uploadSnapshot?: SnapshotUploader;
  /** How long one `uploadSnapshot` call may take. Default 30000 ms. */
  snapshotUploadTimeoutMs?: number;
  /** Only these env vars are captured (when set); never the whole environment. Default: none. */
  envAllow?: string[];
  /** Recent log lines kept and attached to failures. Default 50, at most 200. */
  logLines?: number;
  /** The request budget written into each event (`timeoutMs`); replays allow 1.5x this. Default: the schema's 10 s. */
  timeoutMs?: number;
  /** How long a connect or a JetStream publish may take before the event is spooled instead. Default 3000 ms. */
  publishTimeoutMs?: number;
  /** Where unsent events wait. Default `<os.tmpdir()>/moss-spool-<agent>.jsonl`. */
  spoolFile?: string;
  /** Period of background retries while the spool is not empty. Default 5000 ms. */
  retryIntervalMs?: number;
  /** Request headers whose values are replaced by `[redacted]`. Default: authorization, proxy-authorization, cookie, set-cookie, x-api-key. */
  redactHeaders?: string[];
  /** Environment read for `MOSS_NATS_URL`, `MOSS_REPLAY_FAILURE_FILE` and the allow-list. Default `process.env`. */
  env?: Record<string, string | undefined>;
  /** Where the SDK's own warnings go. Default `console.warn`. */
  onWarning?: (message: string) => void;
  /**
   * Record the outbound HTTP calls (global `fetch`) each `turn()` makes into the failure's cassette, and, in a trial,
   * send them to Moss's replay proxy. Default true.
   */
  recordCalls?: boolean;
  /**
   * The share of successful turns `captureSuccess` records (0 to 1) for Moss's regression replay: each with its
   * before-turn snapshot, its cassette and its answer, on `moss.success.<agent>`. Default: env `MOSS_SAMPLE_RATE`,
   * else 0 (none).
   */
  sampleRate?: number;
  /** Most successes recorded per route per minute, however many are sampled. Default 10. */
  successesPerRoute?: number;
}

export type { CaptureInput, SuccessInput } from "./event";

export interface Reporter {
  /** Remember a log line (ring buffer of the last `logLines`), attached to the next failures. */
  log(line: string): void;
  /**
   * Runs one turn of the agent (one request): the state directory is snapshotted first (a failure carries that
   * before-turn state, which its replay starts from, and the state it left behind as evidence), its start time and
   * a random seed are recorded, and its outbound `fetch` calls go into the failure's cassette. In a trial the turn
   * gets the failure's clock and seed back. Resolves or rejects as `fn` does.
   */
  turn<T>(fn: () => T | Promise<T>): Promise<T>;
  /** The turn's clock (in a trial: the failing turn's, as it ran); outside a turn, the real one. */
  now(): Date;
  /** A draw in [0, 1) from the turn's seeded generator (the same draws in the trial); outside a turn, Math.random(). */
  random(): number;
  /**
   * Report a failure. Resolves with the failure id once the event is durable: acknowledged by
   * JetStream, appended to the local spool, or (replay mode) written to the replay file.
   * Never rejects.
   */
  captureFailure(input: CaptureInput): Promise<string>;
  /**
   * A turn that went well, for regression replay: sampled (`sampleRate`, at most `successesPerRoute` a minute per
   * route) and, inside `turn()`, sent with its before-turn snapshot and its cassette. Resolves with its id once sent,
   * or undefined when it was not sampled or could not be recorded faithfully (then a warning says why). Never
   * rejects; never spooled (a sample lost is only a sample); nothing in a trial.
   */
  captureSuccess(input: SuccessInput): Promise<string | undefined>;
  /** Wait for in-flight captures, try to send the spool once more, drain the connection. */
  close(): Promise<void>;
}

const DEFAULTS = {
  natsUrl: "nats://127.0.0.1:4222",
  logLines: 50,
  publishTimeoutMs: 3_000,
  retryIntervalMs: 5_000,
  snapshotUploadTimeoutMs: 30_000,
} as const;

/** Create a reporter. Opens no connection: NATS is connected on the first failure (or spool retry). */
export function createReporter(opts: MossReporterOptions): Reporter {
  return new MossReporter(opts);
}

interface Link {
  nc: NatsConnection;
  js: JetStreamClient;
}

class MossReporter implements Reporter {
  private readonly agent: string;
  private readonly version: string;
  private readonly env: Record<string, string | undefined>;
  private readonly servers: string[];
  private readonly seed: Uint8Array | undefined;
  private readonly replayFile: string | undefined;
  private readonly stateDir: string | undefined;
  private readonly logCap: number;
  private readonly lines: string[] = [];
  private readonly publishTimeoutMs: number;
  private readonly retryIntervalMs: number;
  private readonly redact: ReadonlySet<string>;
  private readonly warn: (m: string) => void;
  private readonly spool: Spool;
  private link: Promise<Link> | undefined;
  private readonly inflight = new Set<Promise<unknown>>();
  /** Serializes spool flushes in this process. */
  private flushing: Promise<void> = Promise.resolve();
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Something may wait in the spool (unknown at start, so true); saves a directory scan per failure. */
  private spoolMaybePending = true;
  private readonly sampleRate: number;
  private readonly successesPerRoute: number;
  /** When each route's recent successes were recorded (the last minute's). */
  private readonly recorded = new Map<string, number[]>();

  constructor(private readonly opts: MossReporterOptions) {
    const agent = AgentName.safeParse(opts.agent);
    if (!agent.success) throw new MossSdkError(SdkErrorCodes.config, `createReporter: agent ${JSON.stringify(opts.agent)} is not a valid agent name (${agent.error.issues[0]?.message})`);
    const version = GitSha.safeParse(opts.version);
    if (!version.success) {
      throw new MossSdkError(
        SdkErrorCodes.config,
        `createReporter: version ${JSON.stringify(opts.version)} is not a git commit sha; set MOSS_AGENT_VERSION to the commit the agent was built from`,
      );
    }
    if (opts.uploadSnapshot !== undefined && typeof opts.uploadSnapshot !== "function") {
      throw new MossSdkError(SdkErrorCodes.config, "createReporter: uploadSnapshot must be a function (tar: Buffer) => Promise<{ sha256, size }>, e.g. blobUploader(store)");
    }
    if (opts.timeoutMs !== undefined && !(Number.isInteger(opts.timeoutMs) && opts.timeoutMs > 0 && opts.timeoutMs <= 600_000)) {
      throw new MossSdkError(SdkErrorCodes.config, `createReporter: timeoutMs must be an integer in 1..600000, got ${opts.timeoutMs}`);
    }
    this.agent = agent.data;
    this.version = version.data;
    this.env = opts.env ?? process.env;
    const rate = opts.sampleRate ?? (this.env[SAMPLE_RATE_ENV] ? Number(this.env[SAMPLE_RATE_ENV]) : 0);
    if (!(rate >= 0 && rate <= 1)) {
      throw new MossSdkError(SdkErrorCodes.config, `createReporter: sampleRate (or ${SAMPLE_RATE_ENV}) must be a number from 0 to 1, got ${JSON.stringify(opts.sampleRate ?? this.env[SAMPLE_RATE_ENV])}`);
    }
    this.sampleRate = rate;
    if (opts.successesPerRoute !== undefined && !(Number.isInteger(opts.successesPerRoute) && opts.successesPerRoute >= 0)) {
      throw new MossSdkError(SdkErrorCodes.config, `createReporter: successesPerRoute must be a non-negative integer, got ${opts.successesPerRoute}`);
    }
    this.successesPerRoute = opts.successesPerRoute ?? 10;
    this.servers = (opts.natsUrl ?? this.env[NATS_URL_ENV] ?? DEFAULTS.natsUrl)
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
    const seedText = (opts.natsSeed ?? this.env[NATS_SEED_ENV])?.trim();
    if (seedText) {
      try {
        if (!nkeys.fromSeed(new TextEncoder().encode(seedText)).getPublicKey().startsWith("U")) throw new Error("not a user seed");
      } catch (err) {
        throw new MossSdkError(SdkErrorCodes.config, `createReporter: natsSeed (or ${NATS_SEED_ENV}) is not an nkey user seed (SU...): ${(err as Error).message}`);
      }
      this.seed = new TextEncoder().encode(seedText);
    }
    const replay = this.env[REPLAY_FAILURE_FILE_ENV];
    this.replayFile = replay ? replay : undefined;
    this.stateDir = opts.stateDir !== undefined ? resolve(opts.stateDir) : undefined;
    this.logCap = Math.max(0, Math.min(Limits.logLines, Math.floor(opts.logLines ?? DEFAULTS.logLines)));
    this.publishTimeoutMs = opts.publishTimeoutMs ?? DEFAULTS.publishTimeoutMs;
    this.retryIntervalMs = opts.retryIntervalMs ?? DEFAULTS.retryIntervalMs;
    this.redact = new Set((opts.redactHeaders ?? DEFAULT_REDACTED_HEADERS).map((h) => h.toLowerCase()));
    this.warn = opts.onWarning ?? ((m) => console.warn(`[moss] ${m}`));
    this.spool = new Spool(opts.spoolFile ?? join(tmpdir(), `moss-spool-${this.agent}.jsonl`));
    if (opts.recordCalls !== false) installFetchRecorder(this.env, this.redact);
    if (!this.replayFile) {
      // Events left by an earlier run are retried in the background, without waiting for a new failure.
      void this.spool.hasPending().then((p) => p && this.armRetry(), () => undefined);
    }
  }

  log(line: string): void {
    if (this.logCap === 0) return;
    this.lines.push(line.length > Limits.logLine ? `${line.slice(0, Limits.logLine - 12)}…[truncated]` : line);
    if (this.lines.length > this.logCap) this.lines.splice(0, this.lines.length - this.logCap);
  }

  async turn<T>(fn: () => T | Promise<T>): Promise<T> {
    const turn = newTurn(this.env);
    if (this.stateDir !== undefined) {
      // Before anything of the turn runs: this is the state its replay must start from.
      turn.before = await snapshotDirectory(this.stateDir, this.replayFile || !this.opts.uploadSnapshot ? MAX_INLINE_SNAPSHOT_BYTES : MAX_UPLOADED_SNAPSHOT_BYTES).catch(() => undefined);
    }
    return runInTurn(turn, fn);
  }

  now(): Date {
    return turnNow(currentTurn());
  }

  random(): number {
    return currentTurn()?.rng() ?? Math.random();
  }

  captureFailure(input: CaptureInput): Promise<string> {
    const id = newFailureId();
    const logs = [...this.lines];
    const turn = currentTurn();
    const p = this.capture(id, input, logs, turn).catch((err: unknown) => {
      this.warn(`failure ${id} could not be recorded: ${err instanceof Error ? err.message : String(err)}`);
    });
    this.track(p);
    return p.then(() => id);
  }

  captureSuccess(input: SuccessInput): Promise<string | undefined> {
    // A trial reports nothing but failures; a success is only a sample.
    if (this.replayFile || this.closed || !this.sampled(input.route)) return Promise.resolve(undefined);
    const id = newFailureId();
    const logs = [...this.lines];
    const p = this.recordSuccess(id, input, logs, currentTurn()).then(
      (sent) => (sent ? id : undefined),
      (err: unknown) => {
        this.warn(`success ${id} could not be recorded: ${err instanceof Error ? err.message : String(err)}`);
        return undefined;
      },
    );
    this.track(p);
    return p;
  }

  /** This success is recorded: drawn at `sampleRate`, and under its route's cap for the last minute. */
  private sampled(route: string | undefined): boolean {
    if (this.sampleRate <= 0 || Math.random() >= this.sampleRate) return false;
    const now = Date.now();
    const key = route ?? "";
    const recent = (this.recorded.get(key) ?? []).filter((t) => now - t < 60_000);
    if (recent.length >= this.successesPerRoute) {
      this.recorded.set(key, recent);
      return false;
    }
    recent.push(now);
    this.recorded.delete(key);
    this.recorded.set(key, recent);
    // Routes seen long ago go first: the map stays small however many routes an agent has.
    for (const k of this.recorded.keys()) if (this.recorded.size > 1_000) this.recorded.delete(k);
    return true;
  }

  /**
   * Sends a recorded success; false (with a warning) when its replay could not be faithful: outside a turn with a
   * state directory (its before-turn state is unknown), a before-snapshot or cassette that could not be kept, or an
   * event over the server's max payload.
   */
  private async recordSuccess(id: string, input: SuccessInput, logs: string[], turn?: TurnState): Promise<boolean> {
    const extra: Pick<FailureEvent, "turn" | "cassette"> & { snapshot?: SnapshotField } = {};
    const skip = (why: string) => (this.warn(`success ${id} not recorded: ${why}`), false);
    if (turn) {
      await settle(turn);
      extra.turn = { startedAt: turn.startedAt.toISOString(), seed: turn.seed };
      if (turn.truncated) return skip("its turn made more outbound calls (or bigger bodies) than a cassette keeps");
      const c = await this.cassette(id, turn);
      if (turn.calls.length && !c.cassette) return skip("its cassette could not be kept");
      Object.assign(extra, c);
      if (this.stateDir !== undefined) {
        const before = turn.before && (await this.snapshotField(id, turn.before));
        if (!before) return skip(`the state of ${this.stateDir} before the turn could not be kept`);
        extra.snapshot = before;
      }
    } else if (this.stateDir !== undefined) {
      return skip("captureSuccess was called outside reporter.turn(), so the state it started from is unknown");
    }
    const event = buildSuccessEvent(id, input, { ...this.eventContext(logs), ...extra });
    const line = JSON.stringify(event);
    const max = await this.maxPayload();
    if (Buffer.byteLength(line) > max) return skip(`it is ${Buffer.byteLength(line)} bytes, over the NATS server's max payload of ${max}; set uploadSnapshot so big evidence goes by reference`);
    await this.publish(successSubject(this.agent), id, line);
    return true;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.disarmRetry();
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
    if (this.replayFile) return;
    await this.flushSpool().catch((err: unknown) => this.warn(`spool flush on close failed: ${String(err)}`));
    const link = this.link;
    this.link = undefined;
    if (link) {
      const l = await link.catch(() => undefined);
      if (l) {
        // Draining waits for the server; a server that is gone must not hold up the agent's shutdown.
        await withTimeout(l.nc.drain(), this.publishTimeoutMs, "drain").catch(() => l.nc.close().catch(() => undefined));
      }
    }
    if (await this.spool.hasPending().catch(() => false)) {
      this.warn(`NATS unreachable: unsent failures stay in ${this.spool.file} and are sent by the next reporter of agent ${this.agent}`);
    }
  }

  private track(p: Promise<unknown>): void {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  private async capture(id: string, input: CaptureInput, logs: string[], turn?: TurnState): Promise<void> {
    let extra: Pick<FailureEvent, "turn" | "cassette"> & { snapshot?: SnapshotField; afterSnapshot?: SnapshotField } = {};
    if (turn) {
      await settle(turn);
      extra = { turn: { startedAt: turn.startedAt.toISOString(), seed: turn.seed }, ...(await this.cassette(id, turn)) };
      if (turn.before) {
        const before = await this.snapshotField(id, turn.before);
        if (before) extra.snapshot = before;
        // The state the failure left behind, as evidence, when it fits next to the one that is replayed.
        const after = await this.snapshot(id);
        if (after.snapshot && ("blob" in after.snapshot || turn.before.length + Buffer.byteLength(after.snapshot.inlineBase64, "base64") <= MAX_INLINE_SNAPSHOT_BYTES / 2)) extra.afterSnapshot = after.snapshot;
      }
    }
    const event = buildFailureEvent(id, input, { ...this.eventContext(logs), ...(turn?.before ? {} : await this.snapshot(id)), ...extra });
    let line = JSON.stringify(event);
    if (this.replayFile) {
      await appendFile(this.replayFile, `${line}\n`);
      return;
    }
    // A message over the server's max payload could never be sent: the evidence that can go goes, with a warning.
    line = this.fit(event, await this.maxPayload());
    if (this.closed) {
      await this.spool.append([line]);
      this.spoolMaybePending = true;
      return;
    }
    try {
      await this.publish(failureSubject(event.agent), event.id, line);
    } catch (err) {
      await this.spool.append([line]);
      this.spoolMaybePending = true;
      this.warn(`failure ${id} spooled to ${this.spool.file} (NATS: ${err instanceof Error ? err.message : String(err)})`);
      this.armRetry();
      return;
    }
    // NATS works again: send what waited, without holding up this request.
    if (this.spoolMaybePending) this.track(this.flushSpool().catch(() => undefined));
  }

  /** The server's max payload (connecting if need be); NATS's default, 1 MiB, when it cannot be asked. */
  private async maxPayload(): Promise<number> {
    if (this.closed) return DEFAULT_MAX_PAYLOAD;
    const link = await withTimeout(this.connectLink(), this.publishTimeoutMs, "connect").catch(() => undefined);
    return link?.nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD;
  }

  /**
   * The event as JSON within `max` bytes: the after-failure snapshot goes first, then the cassette, then the state
   * snapshot, each with a warning that says what to set (uploadSnapshot keeps them by reference, a few hundred bytes).
   */
  private fit(event: FailureEvent, max: number): string {
    let ev = event;
    let line = JSON.stringify(ev);
    for (const field of ["afterSnapshot", "cassette", "snapshot"] as const) {
      if (Buffer.byteLength(line) <= max) break;
      if (ev[field] === undefined) continue;
      const { [field]: _dropped, ...rest } = ev;
      ev = rest as FailureEvent;
      const next = JSON.stringify(ev);
      this.warn(`failure ${event.id}: left out its ${field} (${Buffer.byteLength(line) - Buffer.byteLength(next)} bytes): the event would be over the NATS server's max payload of ${max} bytes; set uploadSnapshot so big evidence goes to the blob store by reference`);
      line = next;
    }
    if (Buffer.byteLength(line) > max) this.warn(`failure ${event.id} is ${Buffer.byteLength(line)} bytes, over the NATS server's max payload of ${max}, even without snapshots and cassette; it cannot be delivered (its request body is the rest)`);
    return line;
  }

  /** What every event of this reporter carries: who, which version, the logs, the allowed env, the budget. */
  private eventContext(logs: string[]): EventContext {
    return {
      agent: this.agent,
      version: this.version,
      logs,
      env: this.capturedEnv(),
      redactHeaders: this.redact,
      ...(this.opts.timeoutMs !== undefined ? { timeoutMs: this.opts.timeoutMs } : {}),
    };
  }

  private capturedEnv(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const k of this.opts.envAllow ?? []) {
      // The agent's own credential never leaves the process in an event.
      if (k.toUpperCase() === NATS_SEED_ENV) continue;
      const v = this.env[k];
      if (v !== undefined) out[k] = v;
    }
    return out;
  }

  /** The turn's cassette: inline when small, else uploaded (`uploadSnapshot`), else left out with a warning. */
  private async cassette(id: string, turn: TurnState): Promise<Pick<FailureEvent, "cassette">> {
    if (!turn.calls.length) return {};
    const cassette = { schema: "moss.cassette.v1" as const, failureId: id, calls: turn.calls, truncated: turn.truncated };
    const json = Buffer.from(JSON.stringify(cassette));
    if (json.length <= MAX_INLINE_CASSETTE_BYTES) return { cassette: { inline: cassette } };
    const upload = this.replayFile ? undefined : this.opts.uploadSnapshot;
    if (upload) {
      try {
        const ref = await withTimeout(Promise.resolve().then(() => upload(json)), this.opts.snapshotUploadTimeoutMs ?? DEFAULTS.snapshotUploadTimeoutMs, "cassette upload");
        if (ref?.sha256 === createHash("sha256").update(json).digest("hex")) return { cassette: { blob: { sha256: ref.sha256, size: json.length, contentType: "application/json" } } };
        this.warn(`failure ${id}: the cassette upload answered a different digest; no cassette attached`);
      } catch (err) {
        this.warn(`failure ${id}: no cassette attached: its upload failed (${err instanceof Error ? err.message : String(err)})`);
      }
      return {};
    }
    this.warn(`failure ${id}: no cassette attached: its ${turn.calls.length} calls take ${json.length} bytes, over the ${MAX_INLINE_CASSETTE_BYTES} allowed inline; set uploadSnapshot so big cassettes go to the blob store (its replay will diverge at the first call)`);
    return {};
  }

  private async snapshot(id: string): Promise<{ snapshot?: SnapshotField }> {
    if (this.stateDir === undefined) return {};
    const path = this.stateDir;
    // Replay containers are offline: the blob store is out of reach there, and the replayer only needs the event.
    const upload = this.replayFile ? undefined : this.opts.uploadSnapshot;
    let tar: Buffer;
    try {
      tar = await snapshotDirectory(path, upload ? MAX_UPLOADED_SNAPSHOT_BYTES : MAX_INLINE_SNAPSHOT_BYTES);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      this.warn(
        e.code === "ENOENT" ? `failure ${id}: state directory ${path} does not exist; no snapshot attached` : `failure ${id}: no state snapshot attached (${e.message})`,
      );
      return {};
    }
    const snapshot = await this.snapshotField(id, tar);
    return snapshot ? { snapshot } : {};
  }

  /** A tar of the state directory as the event carries it: uploaded (`uploadSnapshot`), or inline when that fails or is not set. */
  private async snapshotField(id: string, tar: Buffer): Promise<SnapshotField | undefined> {
    const path = this.stateDir!;
    const upload = this.replayFile ? undefined : this.opts.uploadSnapshot;
    if (!upload) return { path, inlineBase64: tar.toString("base64") };
    try {
      const sha256 = createHash("sha256").update(tar).digest("hex");
      const timeoutMs = this.opts.snapshotUploadTimeoutMs ?? DEFAULTS.snapshotUploadTimeoutMs;
      const ref = await withTimeout(
        Promise.resolve().then(() => upload(tar)),
        timeoutMs,
        "snapshot upload",
      );
      if (ref?.sha256 !== sha256 || ref.size !== tar.length) {
        throw new Error(
          `uploadSnapshot answered ${JSON.stringify(ref)} for a tar of ${tar.length} bytes with sha256 ${sha256}; it must store the bytes content-addressed and return their sha256 and size`,
        );
      }
      return { path, blob: { sha256, size: tar.length, contentType: SNAPSHOT_CONTENT_TYPE } };
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      if (tar.length <= MAX_INLINE_SNAPSHOT_BYTES) {
        this.warn(`failure ${id}: snapshot upload failed (${why}); attached inline instead`);
        return { path, inlineBase64: tar.toString("base64") };
      }
      this.warn(`failure ${id}: no state snapshot attached: the upload failed (${why}) and ${tar.length} bytes of tar is over the ${MAX_INLINE_SNAPSHOT_BYTES} bytes allowed inline`);
      return undefined;
    }
  }

  private connectLink(): Promise<Link> {
    if (this.link) return this.link;
    const attempt = (async (): Promise<Link> => {
      const nc = await connect({
        servers: this.servers,
        name: `moss-agent-sdk:${this.agent}`,
        timeout: this.publishTimeoutMs,
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 1_000,
        waitOnFirstConnect: false,
        ...(this.seed ? { authenticator: nkeyAuthenticator(this.seed), inboxPrefix: inboxPrefix(agentIdentity(this.agent)) } : {}),
      });
      void nc.closed().then(() => {
        if (this.link === attempt) this.link = undefined;
      });
      return { nc, js: jetstream(nc, { timeout: this.publishTimeoutMs }) };
    })();
    this.link = attempt;
    // A failed connect is forgotten, so that the next capture or retry tries again.
    attempt.catch(() => {
      if (this.link === attempt) this.link = undefined;
    });
    return attempt;
  }

  private async publish(subject: string, id: string, payload: string): Promise<void> {
    const { js } = await withTimeout(this.connectLink(), this.publishTimeoutMs, "connect");
    await withTimeout(js.publish(subject, payload, { msgID: id, timeout: this.publishTimeoutMs }), this.publishTimeoutMs + 500, "publish");
  }

  private flushSpool(): Promise<void> {
    const run = this.flushing.then(async () => {
      // Cleared before the claim: an event spooled during this flush sets it again.
      this.spoolMaybePending = false;
      const r = await this.spool
        .flush(
        async (line) => {
          // A spool line is an event this SDK validated; its own agent decides the subject.
          const ev = JSON.parse(line) as Pick<FailureEvent, "id" | "agent">;
          await this.publish(failureSubject(ev.agent), ev.id, line);
        },
        (why) => this.warn(why),
        )
        .catch((err: unknown) => {
          this.spoolMaybePending = true;
          throw err;
        });
      if (r.kept > 0) {
        this.spoolMaybePending = true;
        this.armRetry();
      }
    });
    this.flushing = run.catch(() => undefined);
    return run;
  }

  private armRetry(): void {
    if (this.closed || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      const p = this.flushSpool().catch((err: unknown) => {
        this.warn(`spool retry failed: ${String(err)}`);
        this.armRetry();
      });
      this.track(p);
    }, this.retryIntervalMs);
    // A pending retry must not keep the agent's process alive.
    this.retryTimer.unref();
  }

  private disarmRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
