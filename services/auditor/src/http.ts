import type { BlobStore } from "@moss/blob";
import type { FailureEvent } from "@moss/contracts";
import { Codes } from "@moss/errors";
import { replyError } from "@moss/lifecycle";
import Fastify, { type FastifyInstance } from "fastify";
import type { KV } from "@moss/bus";
import type { AuditLog } from "./audit-log";
import { verifyLog, type GitCopies, type StreamCopies } from "./checkpoints";
import { batchTimeline, listBatches } from "./timeline";

export interface AuditorHttpDeps {
  log: AuditLog;
  blob: BlobStore;
  /** The log's checkpoints (KV) and the allowed signers they are verified against: `verify` holds the log to them. */
  checkpoints?: { kv: KV; allowedSigners?: string };
  /** The streams' own copies of the messages, which `verify` holds the newest records to. */
  streams?: StreamCopies;
  /** The checkpoints as the agent repositories keep them (git notes), which `verify` holds the checkpoints to. */
  git?: GitCopies;
}

/**
 * The auditor's listener: only whether it is alive. Its read model is not served on the network: the operator API
 * asks for it over the bus (`Queries.audit`), behind the operators' tokens.
 */
export function buildHealthApp(log: AuditLog): FastifyInstance {
  const app = Fastify({ logger: false });
  app.get("/health", async () => ({ ok: true, records: log.size }));
  return app;
}

/**
 * The read routes over the audit log, answered over the bus to the operator API (`app.inject()` per query). Built
 * without listening; tests use `app.inject()` too.
 */
export function buildApp(deps: AuditorHttpDeps): FastifyInstance {
  const app = Fastify({ logger: false });
  app.get("/health", async () => ({ ok: true, records: deps.log.size }));
  // Lists page: `limit` (default 200, at most 1000) and the `next` cursor of the previous page.
  const limitOf = (q: { limit?: string }, dflt: number) => Math.max(1, Math.min(1_000, Number(q.limit) || dflt));
  app.get<{ Querystring: { limit?: string; before?: string } }>("/v1/batches", async (req) => listBatches(deps.log, { limit: limitOf(req.query, 200), before: req.query.before }));
  app.get<{ Params: { id: string }; Querystring: { diff?: string } }>("/v1/batches/:id", async (req, reply) => {
    const t = batchTimeline(deps.log, req.params.id);
    if (!t) return replyError(reply, Codes.BATCH_NOT_FOUND, `no audit records for batch ${req.params.id}; list batches with \`moss batches\``);
    // Diffs are stored once in the blob store; the timeline carries them as text for reading.
    const text = async (ref?: { sha256: string }, max = 1_000_000) => (ref ? (await deps.blob.get(ref.sha256).catch(() => undefined))?.toString("utf8").slice(0, max) : undefined);
    const attempts = await Promise.all(
      t.attempts.map(async (a) => ({
        ...a,
        diffText: await text(a.diff),
        stages: a.stages && (await Promise.all(a.stages.map(async (st) => ({ ...st, outputText: await text(st.output, 8_000) })))),
      })),
    );
    return { ...t, attempts };
  });
  app.get<{ Querystring: { limit?: string; after?: string } }>("/v1/dead-letters", async (req) => {
    const limit = limitOf(req.query, 100);
    const page = deps.log.deadLetters(Number(req.query.after) || 0, limit);
    const deadLetters = page.map((r) => ({ at: r.at, ...(r.data as object) }));
    return page.length === limit ? { deadLetters, next: String(page[page.length - 1]!.seq) } : { deadLetters };
  });
  // A failure's cassette: the outbound calls of its turn, as its replays are served them.
  app.get<{ Params: { id: string } }>("/v1/failures/:id/cassette", async (req, reply) => {
    const rec = deps.log.failure(req.params.id);
    if (!rec) return replyError(reply, Codes.FAILURE_NOT_FOUND, `no failure ${req.params.id} in the audit log; failure ids are in \`moss show BATCH\``);
    const c = (rec.data as FailureEvent).cassette;
    if (!c) return replyError(reply, Codes.NO_CASSETTE, `failure ${req.params.id} was reported without a cassette (no outbound call was recorded in its turn)`);
    if (c.inline) return c.inline;
    const bytes = await deps.blob.get(c.blob!.sha256);
    return reply.type("application/json").send(bytes);
  });
  app.get("/v1/audit/verify", async () => (deps.checkpoints ? verifyLog(deps.log, deps.checkpoints.kv, deps.blob, deps.checkpoints.allowedSigners, deps.streams, deps.git) : { ...deps.log.verify(), checkpoints: 0, unsigned: 0 }));
  return app;
}
