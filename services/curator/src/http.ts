import { randomUUID, timingSafeEqual } from "node:crypto";
import { FailureEvent, Flag, Messages, SuccessEvent, compiled, type Publish } from "@moss/contracts";
import { Codes } from "@moss/errors";
import { replyError } from "@moss/lifecycle";
import Fastify, { type FastifyInstance } from "fastify";
import { z } from "zod";

export interface IngestDeps {
  /** Publishes to JetStream and resolves once the event is stored (the 202 means durable). */
  publish: Publish;
  token?: string;
  bodyLimitBytes: number;
}

/** The failure event a flag becomes. */
export function flagToFailure(f: Flag, now = new Date()): FailureEvent {
  return FailureEvent.parse({
    id: `flag${randomUUID().replaceAll("-", "")}`,
    agent: f.agent,
    version: f.version,
    occurredAt: now.toISOString(),
    route: f.route,
    request: f.request,
    response: f.response,
    error: { type: "FlaggedTurn", message: f.reason },
    env: f.env,
    snapshot: f.snapshot,
    fingerprint: f.fingerprint,
    expect: f.expect,
    tags: { flaggedBy: f.by },
  });
}

/**
 * HTTP ingest for agents with no NATS client: `POST /v1/failures` (a failure event, JSON Schema
 * `failure.v1.json`), `POST /v1/successes` (a recorded success, `success.v1.json`) and `POST /v1/flags`. 202 with the id once the event is in JetStream; 400 with every schema
 * problem; 401 without the bearer token; 413 over the size limit.
 */
export function buildApp(deps: IngestDeps): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: deps.bodyLimitBytes });
  const token = deps.token ? Buffer.from(deps.token) : undefined;
  app.addHook("onRequest", async (req, reply) => {
    if (!token || req.url.split("?")[0] === "/health") return;
    const got = Buffer.from((req.headers.authorization ?? "").replace(/^Bearer /i, ""));
    if (got.length !== token.length || !timingSafeEqual(got, token)) {
      return replyError(reply, Codes.UNAUTHORIZED, "missing or wrong bearer token: send `Authorization: Bearer <curator.http.token>`");
    }
  });
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    if (err.statusCode === 413) return replyError(reply, Codes.TOO_LARGE, `event larger than ${deps.bodyLimitBytes} bytes: trim logs or send the state snapshot by blob reference`);
    // Fastify's own 4xx (not JSON, wrong content type...) keep their status.
    if (err.statusCode && err.statusCode < 500) return reply.code(err.statusCode).send({ error: Codes.BAD_REQUEST.code, message: err.message });
    return replyError(reply, Codes.UNAVAILABLE, `could not store the event: ${err.message}; retry with the same id (it is deduplicated)`);
  });
  const problems = (e: z.ZodError) => e.issues.map((i) => ({ path: i.path.join(".") || "(root)", message: i.message }));

  app.get("/health", async () => ({ ok: true }));
  app.post("/v1/failures", async (req, reply) => {
    const parsed = compiled(FailureEvent).safeParse(req.body);
    if (!parsed.success) return replyError(reply, Codes.INVALID_FAILURE, "the failure event does not match failure.v1 (see libs/contracts/schemas/failure.v1.json)", { problems: problems(parsed.error) });
    await deps.publish(Messages.failure, parsed.data);
    return reply.code(202).send({ id: parsed.data.id });
  });
  app.post("/v1/successes", async (req, reply) => {
    const parsed = compiled(SuccessEvent).safeParse(req.body);
    if (!parsed.success) return replyError(reply, Codes.INVALID_SUCCESS, "the recorded success does not match success.v1 (see libs/contracts/schemas/success.v1.json)", { problems: problems(parsed.error) });
    await deps.publish(Messages.success, parsed.data);
    return reply.code(202).send({ id: parsed.data.id });
  });
  app.post("/v1/flags", async (req, reply) => {
    const parsed = Flag.safeParse(req.body);
    if (!parsed.success) return replyError(reply, Codes.INVALID_FLAG, "the flag does not match its schema", { problems: problems(parsed.error) });
    const ev = flagToFailure(parsed.data);
    await deps.publish(Messages.failure, ev);
    return reply.code(202).send({ id: ev.id });
  });
  return app;
}
