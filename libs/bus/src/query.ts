/**
 * Read queries between services over core NATS request/reply (`Queries` in @moss/contracts): the asker sends a GET,
 * the answering service (a queue group, so replicas share them) answers as its HTTP read routes would. Nothing is
 * stored: an unanswered query is asked again by whoever needs it. A body larger than the bus carries goes to the blob
 * store and the answer names it.
 */
import { QueryAnswer, QueryRequest, type QueryDef } from "@moss/contracts";
import { Codes } from "@moss/errors";
import type { Logger } from "@moss/telemetry";
import type { NatsConnection } from "@nats-io/transport-node";
import { QueryUnansweredError } from "./errors";

/** What the answering side stores a large body in (the blob store's put). */
export interface QueryBlobs {
  put(body: Buffer, o: { contentType: string }): Promise<{ sha256: string; size: number }>;
}

/** Room kept under the server's max_payload for the answer's own JSON and headers. */
const ENVELOPE = 16 * 1024;

/** Answers `q` with `handle` until stopped; a handler that throws answers 500 with its message. */
export function serveQuery(nc: NatsConnection, q: QueryDef, handle: (req: QueryRequest) => Promise<{ status: number; contentType: string; body: Buffer }>, o: { blobs: QueryBlobs; log: Logger }): { stop(): void } {
  const sub = nc.subscribe(q.subject, {
    queue: q.queue,
    callback: (_err, m) => {
      void (async () => {
        let answer: QueryAnswer;
        try {
          const req = QueryRequest.parse(m.json());
          const r = await handle(req);
          const room = (nc.info?.max_payload ?? 1024 * 1024) - ENVELOPE;
          // JSON escapes can double a body's size: only a body safely under the limit travels inline.
          answer = r.body.length * 2 <= room ? { status: r.status, contentType: r.contentType, body: r.body.toString("utf8") } : { status: r.status, contentType: r.contentType, blob: await o.blobs.put(r.body, { contentType: r.contentType }) };
        } catch (err) {
          o.log.warn("query failed", { subject: q.subject, err: (err as Error).message });
          answer = { status: 500, contentType: "application/json", body: JSON.stringify({ error: Codes.INTERNAL.code, message: `${q.subject}: ${(err as Error).message}` }) };
        }
        m.respond(JSON.stringify(answer));
      })();
    },
  });
  return { stop: () => sub.unsubscribe() };
}

/** Asks `q`; the answer (its body read from the blob store when it was too large for the bus). */
export async function askQuery(nc: NatsConnection, q: QueryDef, req: QueryRequest, o: { timeoutMs?: number; blob(sha256: string): Promise<Buffer> }): Promise<{ status: number; contentType: string; body: Buffer }> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  let raw;
  try {
    raw = await nc.request(q.subject, JSON.stringify(QueryRequest.parse(req)), { timeout: timeoutMs });
  } catch (err) {
    throw new QueryUnansweredError(q, timeoutMs, err);
  }
  const a = QueryAnswer.parse(raw.json());
  return { status: a.status, contentType: a.contentType, body: a.blob ? await o.blob(a.blob.sha256) : Buffer.from(a.body ?? "", "utf8") };
}
