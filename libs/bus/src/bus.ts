import {
  Buckets,
  DEAD_LETTER_MAX_COPY,
  inboxPrefix,
  Headers as H,
  compiled,
  Messages,
  messageForSubject,
  StreamDefs,
  subjectMatches,
  type ConsumerDef,
  type DeadLetter,
  type MessageDef,
} from "@moss/contracts";
import { hostname } from "node:os";
import { errorCode, isMoot, isTerminal } from "@moss/errors";
import { createLogger, extractContext, injectContext, withSpan, type Logger } from "@moss/telemetry";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type JsMsg, type PubAck } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { connect, headers as natsHeaders, nkeyAuthenticator, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import type { z } from "zod";
import type { BusCredential } from "./auth";
import { BusUnavailableError, InvalidMessageError, isPermissionViolation, NatsDeniedError, UnroutableMessageError } from "./errors";
import { provision } from "./provision";

export interface BusOptions {
  /** NATS server URL(s), comma separated. */
  url: string;
  /** Connection name shown by the server (the service name). */
  name: string;
  logger?: Logger;
  /** Give up connecting at start after this long. Default 10 s. Once connected, reconnects forever. */
  connectTimeoutMs?: number;
  /** Who this process is on the bus, and its nkey seed. Unset: anonymous (a nats-server without auth only). */
  credential?: BusCredential;
  /** Told of every message handled and published: what the service's metrics count. */
  observe?: BusObserver;
  /** Copies JetStream keeps of every stream and bucket this bus creates (config `nats.replicas`). Default 1. */
  replicas?: number;
}

/** What the bus tells a service's metrics. */
export interface BusObserver {
  /** A message a consumer handled: acked, naked (retried), termed (dead-lettered) or dropped (its work was moot). */
  handled(consumer: string, message: string, outcome: "acked" | "naked" | "termed" | "dropped", seconds?: number, code?: string): void;
  /** A message this process published, with the outcome it names when it names one (promoted, rolled-back, passed...). */
  published(message: string, outcome?: string): void;
}

/** The outcome a message names, for counting: its outcome, verdict, or whether it passed. */
function outcomeOf(data: unknown): string | undefined {
  const d = (typeof data === "object" && data !== null ? data : {}) as { outcome?: unknown; verdict?: unknown; passed?: unknown; decision?: unknown };
  for (const v of [d.outcome, d.verdict, d.decision]) if (typeof v === "string") return v;
  return typeof d.passed === "boolean" ? (d.passed ? "passed" : "failed") : undefined;
}

export interface PublishOptions {
  /** A W3C trace carrier (a batch's root span) the message joins, instead of the active context. */
  trace?: Record<string, string>;
  headers?: Record<string, string>;
}

/** What a handler gets besides the message. */
export interface HandlerContext {
  subject: string;
  /** 1 on first delivery. */
  deliveryCount: number;
  streamSeq: number;
  headers: Record<string, string>;
  /** Tells the server the handler is still working (extends ack wait). Called automatically on a timer too. */
  working(): void;
  /** The payload as text (raw routes only). */
  text?: string;
}

export type Handler<S extends z.ZodType> = (msg: z.infer<S>, ctx: HandlerContext) => Promise<void>;

export interface Route<S extends z.ZodType = z.ZodType> {
  def: MessageDef<S>;
  handle: Handler<S>;
  /** Hand the payload over unvalidated (JSON-parsed when it parses, else the text): for recorders like the auditor. */
  raw?: boolean;
}

/** What a raw route is told about a message besides its payload: whether it is valid, and as what. */
export interface RawContext extends HandlerContext {
  valid: boolean;
  /** The message as its schema reads it, when valid (unknown keys dropped, defaults filled). */
  value?: unknown;
  /** The payload as it arrived, as text. */
  text: string;
}

/** A route that records whatever arrives on `def`'s subject, valid or not; it never dead-letters for schema. */
export function rawRoute(def: MessageDef, handle: (payload: unknown, ctx: RawContext) => Promise<void>): Route {
  return {
    def,
    raw: true,
    handle: (payload, ctx) => {
      const parsed = def.schema.safeParse(payload);
      return handle(payload, { ...ctx, valid: parsed.success, ...(parsed.success ? { value: parsed.data } : {}), text: ctx.text ?? "" });
    },
  };
}

/** Pairs a message definition with its handler, keeping the two typed together. */
export function route<S extends z.ZodType>(def: MessageDef<S>, handle: Handler<S>): Route {
  return { def, handle: handle as Handler<z.ZodType> };
}

export interface ConsumeOptions {
  /** Handlers run at once. Default 1. */
  concurrency?: number;
  /**
   * Messages pulled ahead of the handlers. Default max(2 × concurrency, 10). A work queue shared by replicas sets it to
   * `concurrency`: what one replica holds unstarted, another free one cannot take.
   */
  prefetch?: number;
  /** Backoff of the n-th redelivery: min(maxBackoffMs, baseBackoffMs * 2^(n-1)). Defaults 500 ms / 30 s. */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
}

export interface ChunkItem<T> {
  msg: T;
  subject: string;
  streamSeq: number;
  deliveryCount: number;
  headers: Record<string, string>;
}
/** Delivery info and headers are parsed only if a handler asks: a storm has thousands of messages per chunk. */
class LazyChunkItem<T> implements ChunkItem<T> {
  readonly streamSeq: number;
  constructor(
    readonly msg: T,
    private readonly m: JsMsg,
  ) {
    this.streamSeq = m.seq;
  }
  get subject(): string {
    return this.m.subject;
  }
  get deliveryCount(): number {
    return this.m.info.deliveryCount;
  }
  get headers(): Record<string, string> {
    return headersToRecord(this.m.headers) as Record<string, string>;
  }
}

const utf8 = new TextDecoder();

export type ChunkHandler<S extends z.ZodType> = (items: Array<ChunkItem<z.infer<S>>>) => Promise<void>;
export interface ChunkOptions extends ConsumeOptions {
  /** Most messages handed to one call. Default 500. */
  maxChunk?: number;
  /** How long a partial chunk waits for more messages. Default 20 ms. */
  lingerMs?: number;
}

export interface Consumption {
  /** Stops pulling, waits up to graceMs for handlers in flight. */
  stop(graceMs?: number): Promise<void>;
  /** Resolves when the consume loop ends. */
  readonly done: Promise<void>;
  /** Messages handled, by outcome. */
  readonly stats: { acked: number; naked: number; termed: number };
  /** The durable consumer it reads (its lag is read from the server). */
  readonly consumer: ConsumerDef;
}

export interface Bus {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  /**
   * Streams, consumers and KV buckets, created or updated where they differ: everything (admin: `moss up`, `moss
   * provision`), or only `consumers` on the existing streams (a service, whose grant covers its own consumers).
   */
  provision(scope?: { consumers: readonly ConsumerDef[] }): Promise<void>;
  /** Validates and publishes a message on its subject with its dedup id (both from its definition): a {@link Publish} port. */
  publish<S extends z.ZodType>(def: MessageDef<S>, msg: z.input<S>, opts?: PublishOptions): Promise<PubAck>;
  consume(consumer: ConsumerDef, routes: Route[], opts?: ConsumeOptions): Promise<Consumption>;
  /**
   * Consumes in chunks (up to maxChunk, flushed whenever nothing more is waiting): for high-volume subjects where
   * one durable write per chunk beats one per message. Invalid messages are dead-lettered one by one; the chunk is
   * acked after `handle` resolves, or every message in it is nak'ed / dead-lettered if it throws.
   */
  consumeChunks<S extends z.ZodType>(consumer: ConsumerDef, def: MessageDef<S>, handle: ChunkHandler<S>, opts?: ChunkOptions): Promise<Consumption>;
  kv(bucket: string): Promise<KV>;
  /** Drains and closes the connection. */
  close(): Promise<void>;
}

/** Connects (with reconnect) and returns the bus. Opens nothing at import time. */
export async function createBus(opts: BusOptions): Promise<Bus> {
  const log = opts.logger ?? createLogger(opts.name);
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: opts.url.split(","),
      name: opts.name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      timeout: opts.connectTimeoutMs ?? 10_000,
      ...(opts.credential ? { authenticator: nkeyAuthenticator(opts.credential.seed), inboxPrefix: inboxPrefix(opts.credential.identity) } : {}),
    });
  } catch (err) {
    throw new BusUnavailableError(opts.url, err, opts.credential?.identity);
  }
  if (opts.credential && !nc.info?.auth_required) {
    log.warn("NATS does not require authentication: any client that reaches it can forge verdicts, records and consent. Run it with the config `moss up` writes, or `moss credentials`.", { url: opts.url });
  }
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect" || s.type === "reconnect") log.warn(`nats ${s.type}`, { server: (s as { server?: string }).server });
    }
  })();
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const kvm = new Kvm(nc);
  const kvs = new Map<string, Promise<KV>>();

  /** Who this process is, on every message it publishes (the auditor records it, held to the grants). */
  const from = `${opts.name}@${hostname()}`;
  const publish = async <S extends z.ZodType>(def: MessageDef<S>, msg: z.input<S>, p: PublishOptions = {}): Promise<PubAck> => {
    const parsed = compiled(def.schema).safeParse(msg);
    if (!parsed.success) throw new InvalidMessageError(`refusing to publish an invalid ${def.name}: ${parsed.error.message}`);
    const data = parsed.data as z.output<S>;
    const subject = def.subjectOf(data);
    if (/[*>]/.test(subject)) throw new InvalidMessageError(`publishing ${def.name} needs a concrete subject (pattern ${def.subject})`);
    const h = natsHeaders();
    for (const [k, v] of Object.entries(p.trace ?? injectContext({}))) h.set(k, v);
    const batchId = (data as { batchId?: string }).batchId;
    if (batchId) h.set(H.batchId, batchId);
    h.set(H.from, from);
    for (const [k, v] of Object.entries(p.headers ?? {})) h.set(k, v);
    const ack = await js.publish(subject, JSON.stringify(data), { msgID: def.msgId(data), headers: h });
    opts.observe?.published(def.name, outcomeOf(data));
    return ack;
  };

  /**
   * Copies a message to the dead-letter subject with the reason; dedup by origin so a crash never makes two. A large
   * message is copied by reference: its stream and sequence, its size and a bounded prefix.
   */
  const deadLetter = async (c: ConsumerDef, m: JsMsg, reason: string, code: string) => {
    const truncated = m.data.length > DEAD_LETTER_MAX_COPY;
    const dl: DeadLetter = {
      subject: m.subject,
      stream: c.stream,
      consumer: c.durable,
      streamSeq: m.seq,
      reason,
      code,
      payloadBase64: Buffer.from(truncated ? m.data.subarray(0, DEAD_LETTER_MAX_COPY) : m.data).toString("base64"),
      size: m.data.length,
      truncated,
      headers: headersToRecord(m.headers, true) as Record<string, string[]>,
      at: new Date().toISOString(),
    };
    await js.publish(Messages.deadLetter.subjectOf(dl), JSON.stringify(dl), { msgID: Messages.deadLetter.msgId(dl) });
  };

  /** Parses and validates a message against its route; throws InvalidMessageError (terminal) if it does not fit. */
  const decode = (c: ConsumerDef, routes: Route[], m: JsMsg): { r: Route; data: unknown; text?: string } => {
    const r = routes.length === 1 && c.filterSubjects.length === 1 ? routes[0] : routes.find((x) => subjectMatches(x.def.subject, m.subject));
    if (!r) throw new UnroutableMessageError(m.subject, c.durable);
    let body: unknown;
    const text = utf8.decode(m.data);
    try {
      body = JSON.parse(text);
    } catch (err) {
      if (!r.raw) throw new InvalidMessageError(`${r.def.name} on ${m.subject} is not JSON: ${(err as Error).message}`);
      body = text;
    }
    if (r.raw) return { r, data: body, text };
    const parsed = compiled(r.def.schema).safeParse(body);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
      throw new InvalidMessageError(`${r.def.name} on ${m.subject} does not match its schema: ${problems}`);
    }
    return { r, data: parsed.data };
  };

  /** A handler failed for this message: nak with backoff, or (terminal / out of deliveries) term + dead-letter. */
  const fail = async (c: ConsumerDef, m: JsMsg, err: unknown, o: ConsumeOptions, stats: Consumption["stats"], clog: Logger) => {
    const code = errorCode(err);
    const seen = (outcome: "naked" | "termed" | "dropped") => opts.observe?.handled(c.durable, messageForSubject(m.subject)?.name ?? m.subject, outcome, undefined, code);
    const reason = (err as Error)?.message ?? String(err);
    const deliveryCount = m.info.deliveryCount;
    if (isMoot(err)) {
      // The work no longer matters (its batch ended meanwhile): acked, said once, neither retried nor dead-lettered.
      clog.info("message dropped: its work no longer matters", { subject: m.subject, seq: m.seq, code, reason });
      await m.ackAck().catch(() => m.ack());
      stats.acked++;
      seen("dropped");
      return;
    }
    if (isTerminal(err) || deliveryCount >= c.maxDeliver) {
      const why = isTerminal(err) ? reason : `gave up after ${deliveryCount} deliveries: ${reason}`;
      // Logged once: a termed message is never redelivered.
      clog.error("message dead-lettered", { subject: m.subject, seq: m.seq, code, reason: why });
      try {
        await deadLetter(c, m, why.slice(0, 8_000), code);
        m.term(why.slice(0, 200));
        stats.termed++;
        seen("termed");
      } catch (dlErr) {
        if (deliveryCount >= 2 * c.maxDeliver) {
          // No message is nak'ed for ever: it stays in its stream, where an operator finds it by its sequence.
          clog.error("dead-letter copy failed again; terminating the message without one", { subject: m.subject, stream: c.stream, seq: m.seq, code, reason: why, err: dlErr });
          m.term(why.slice(0, 200));
          stats.termed++;
          seen("termed");
          return;
        }
        clog.error("dead-letter publish failed; will be redelivered", { err: dlErr });
        m.nak(backoff(deliveryCount, o));
        stats.naked++;
        seen("naked");
      }
    } else {
      const delay = backoff(deliveryCount, o);
      clog.warn("handler failed, will retry", { subject: m.subject, seq: m.seq, code, reason, delivery: deliveryCount, retryInMs: delay, stack: (err as Error)?.stack });
      m.nak(delay);
      stats.naked++;
      seen("naked");
    }
  };

  const consume = async (c: ConsumerDef, routes: Route[], o: ConsumeOptions = {}): Promise<Consumption> => {
    const consumer = await js.consumers.get(c.stream, c.durable);
    const concurrency = o.concurrency ?? 1;
    const messages = await consumer.consume({ max_messages: o.prefetch ?? Math.max(concurrency * 2, 10) });
    const stats = { acked: 0, naked: 0, termed: 0 };
    const inflight = new Set<Promise<void>>();
    const clog = log.child({ consumer: c.durable });

    const handleOne = async (m: JsMsg) => {
      const hdrs = headersToRecord(m.headers) as Record<string, string>;
      const timer = setInterval(() => m.working(), Math.max(1_000, c.ackWaitMs / 3));
      const t0 = performance.now();
      try {
        const { r, data, text } = decode(c, routes, m);
        const deliveryCount = m.info.deliveryCount;
        await withSpan(
          `${c.durable} ${r.def.name}`,
          { "messaging.system": "nats", "messaging.destination.name": m.subject, "messaging.consumer.group.name": c.durable, "moss.batch": hdrs[H.batchId], "moss.delivery": deliveryCount },
          () => r.handle(data, { subject: m.subject, deliveryCount, streamSeq: m.seq, headers: hdrs, working: () => m.working(), ...(text !== undefined ? { text } : {}) }),
          extractContext(hdrs),
        );
        await m.ackAck().catch(() => m.ack());
        stats.acked++;
        opts.observe?.handled(c.durable, r.def.name, "acked", (performance.now() - t0) / 1000);
      } catch (err) {
        await fail(c, m, err, o, stats, clog);
      } finally {
        clearInterval(timer);
      }
    };

    let stopping = false;
    const done = (async () => {
      for await (const m of messages) {
        if (stopping) {
          m.nak();
          continue;
        }
        const p = handleOne(m).finally(() => inflight.delete(p));
        inflight.add(p);
        if (inflight.size >= concurrency) await Promise.race(inflight);
      }
      await Promise.allSettled(inflight);
    })();

    return {
      consumer: c,
      stats,
      done,
      async stop(graceMs = 10_000) {
        stopping = true;
        await messages.close().catch(() => undefined);
        await Promise.race([Promise.allSettled(inflight), new Promise((r) => setTimeout(r, graceMs).unref())]);
      },
    };
  };

  const consumeChunks = async <S extends z.ZodType>(c: ConsumerDef, def: MessageDef<S>, handle: ChunkHandler<S>, o: ChunkOptions = {}): Promise<Consumption> => {
    const consumer = await js.consumers.get(c.stream, c.durable);
    const maxChunk = o.maxChunk ?? 500;
    // A deep pull buffer keeps the handler fed while a chunk's writes are in flight.
    const messages = await consumer.consume({ max_messages: maxChunk * 4 });
    const stats = { acked: 0, naked: 0, termed: 0 };
    const clog = log.child({ consumer: c.durable });
    const routes = [route(def, async () => undefined)];
    let buf: JsMsg[] = [];
    let current: Promise<void> = Promise.resolve();
    let stopping = false;

    const flush = async (chunk: JsMsg[]) => {
      const items: Array<ChunkItem<z.infer<S>>> = [];
      const held: JsMsg[] = [];
      for (const m of chunk) {
        try {
          const msg = decode(c, routes, m).data as z.infer<S>;
          items.push(new LazyChunkItem(msg, m));
          held.push(m);
        } catch (err) {
          await fail(c, m, err, o, stats, clog);
        }
      }
      if (!items.length) return;
      const timer = setInterval(() => held.forEach((m) => m.working()), Math.max(1_000, c.ackWaitMs / 3));
      try {
        await handle(items);
        for (const m of held) m.ack();
        // One round trip confirms every ack of the chunk reached the server.
        await nc.flush();
        stats.acked += held.length;
        for (const _ of held) opts.observe?.handled(c.durable, def.name, "acked");
      } catch (err) {
        for (const m of held) await fail(c, m, err, o, stats, clog);
      } finally {
        clearInterval(timer);
      }
    };

    // Chunks flush when full, or `lingerMs` after the first message of a partial chunk: big chunks under load,
    // low latency when quiet, and never a message left waiting for a next one that does not come.
    const lingerMs = o.lingerMs ?? 20;
    let timer: NodeJS.Timeout | undefined;
    let queued = 0;
    const schedule = () => {
      if (timer) clearTimeout(timer);
      timer = undefined;
      const chunk = buf;
      buf = [];
      queued++;
      current = current.then(() => flush(chunk)).finally(() => void queued--);
      return current;
    };
    const done = (async () => {
      for await (const m of messages) {
        if (stopping) {
          m.nak();
          continue;
        }
        buf.push(m);
        // One chunk is handled while the next one fills (decoding overlaps the handler's I/O); no more than that.
        if (buf.length >= maxChunk) {
          if (queued > 0) await current;
          void schedule();
        }
        else if (!timer) timer = setTimeout(() => void schedule(), lingerMs);
      }
      if (buf.length) await schedule();
      await current;
    })();

    return {
      consumer: c,
      stats,
      done,
      async stop(graceMs = 10_000) {
        stopping = true;
        await messages.close().catch(() => undefined);
        await Promise.race([current, new Promise((r) => setTimeout(r, graceMs).unref())]);
      },
    };
  };

  /** Opens a bucket (creating it where the grant allows); a refusal is said as one, and not remembered. */
  const kv = (bucket: string): Promise<KV> => {
    let p = kvs.get(bucket);
    if (!p) {
      p = kvm.create(bucket, { history: 5, replicas: opts.replicas ?? 1 }).catch((err: unknown) => {
        kvs.delete(bucket);
        if (!isPermissionViolation(err)) throw err;
        throw new NatsDeniedError(`${opts.credential?.identity ?? opts.name} may not open KV bucket ${bucket} (${(err as Error).message}): it is not in its grant, or the bucket does not exist yet and only admin creates buckets (\`moss up\` or \`moss provision\`).`, { cause: err });
      });
      kvs.set(bucket, p);
    }
    return p;
  };

  return {
    nc,
    js,
    jsm,
    async provision(scope) {
      try {
        if (scope) await provision(jsm, StreamDefs, scope.consumers, [], opts.replicas);
        else {
          await provision(jsm, undefined, undefined, undefined, opts.replicas);
          for (const b of Object.values(Buckets)) await kv(b);
        }
      } catch (err) {
        if (!isPermissionViolation(err)) throw err;
        throw new NatsDeniedError(
          `${opts.credential?.identity ?? opts.name} may not ${scope ? "create the streams or consumers it needs" : "provision"} (${(err as Error).message}). Streams and buckets are provisioned as admin: \`moss up\` does it; against your own nats-server run \`moss provision\` first.`,
          { cause: err },
        );
      }
    },
    publish,
    consume,
    consumeChunks,
    kv,
    async close() {
      if (!nc.isClosed()) await nc.drain().catch(() => nc.close());
    },
  };
}

function backoff(deliveryCount: number, o: ConsumeOptions): number {
  return Math.min(o.maxBackoffMs ?? 30_000, (o.baseBackoffMs ?? 500) * 2 ** Math.max(0, deliveryCount - 1));
}

function headersToRecord(h: MsgHdrs | undefined, all = false): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  if (!h) return out;
  for (const k of h.keys()) out[k] = all ? h.values(k) : h.get(k);
  return out;
}

