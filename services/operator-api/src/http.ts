import { randomUUID } from "node:crypto";
import { breakerKey, canMove, isFinal, parseBreakerKey, resetBreaker, type BisectStore, type RegressionStore, type ReviewStore, type Stores, type TimeTravelStore } from "@moss/batch";
import { AgentName, BatchState, Messages, VersionRef, type BatchRecord, type BatchRow, type Publish, type RollbackDone, type ServiceStatus, type StatusReport, type TraceSpans, type ReviewedBaseline, type ReviewRequest, type TimeTravelCase } from "@moss/contracts";
import { AllCodes, Codes, errorCode } from "@moss/errors";
import { replyError } from "@moss/lifecycle";
import type { Logger } from "@moss/telemetry";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { z } from "zod";
import { Bisect, MarkReviewed, MAX_TIME_TRAVEL_CASES, Pin, Reason, Replay, Reset, Rollback } from "./inputs";
import { openApi } from "./openapi";
import { authenticate, readOperators } from "./operators";

export interface OperatorApiDeps {
  stores: Pick<Stores, "batches" | "breakers"> & Partial<Pick<Stores, "deployments" | "candidates">>;
  /** Publishes with the operator API's bus identity: the only one that may approve, reject or reset. */
  publish: Publish;
  /** The operators file, read at every request: a token added or revoked counts at once. */
  operatorsFile: string;
  /** The agents' regression sets, whose cases an operator pins and drops (and replays against any version). */
  regressions?: Pick<RegressionStore, "pin" | "drop"> & Partial<Pick<RegressionStore, "get">>;
  /** Time travel: the requests' records, the stored failures by id (or prefix), and the blobs their logs are in. */
  timeTravel?: {
    travels: TimeTravelStore;
    bisects?: BisectStore;
    findFailures(idOrPrefix: string): Promise<Array<TimeTravelCase & { agent: string }>>;
    blob: { get(sha256: string): Promise<Buffer> };
  };
  /** The reviewed baselines and the review requests (mark-reviewed, diff) the rewriter answers. */
  review?: { reviews: ReviewStore; baseline(agent: string): Promise<ReviewedBaseline | undefined>; known(agent: string): boolean };
  /**
   * The auditor's read model (timelines, dead letters, cassettes, verification), asked over the bus: the operator API
   * is its only door, behind the operators' tokens.
   */
  audit?: (url: string) => Promise<{ status: number; contentType: string; body: Buffer }>;
  /** A trace's spans, read back from the collector (`telemetry.jaegerQuery`); undefined when none is configured. */
  spans?: (traceId: string) => Promise<TraceSpans | undefined>;
  /** The services as `moss up` reports them (`moss status`). */
  services?: () => Promise<ServiceStatus[]>;
  /** The promoter's rollback outcomes as they are published: a waiter registered before the request is published. */
  rollbacks?: { wait(requestId: string, ms: number): Promise<RollbackDone | undefined> };
  /** How long an approve or reject waits for the promoter to act on it before answering 202 (default 15 s). */
  outcomeWaitMs?: number;
  /** Where refusals and decisions are said (who, what, from where). */
  log?: Logger;
}


/** How many batches are in each state (what `/v1/status` says and the `moss_batches` gauge counts). */
export function countByState(records: readonly Pick<BatchRecord, "state">[]): Record<string, number> {
  const n: Record<string, number> = {};
  for (const r of records) n[r.state] = (n[r.state] ?? 0) + 1;
  return n;
}

const registered = new WeakMap<FastifyInstance, ReadonlyArray<{ method: string; url: string }>>();
/** The routes an app of `buildApp` serves. */
export function routesOf(app: FastifyInstance): ReadonlyArray<{ method: string; url: string }> {
  return registered.get(app) ?? [];
}

/**
 * The operator API: the one way to approve, reject or reset. Every request carries an operator's bearer token; the
 * name it authenticates is what the decision records. Built without listening; tests use `app.inject()`.
 */
export function buildApp(deps: OperatorApiDeps): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024 });
  // Every route, as registered: what `routesOf` answers (tests hold every mutation to its token's role).
  const routes: Array<{ method: string; url: string }> = [];
  app.addHook("onRoute", (r) => {
    for (const method of [r.method].flat()) routes.push({ method, url: r.url });
  });
  registered.set(app, routes);
  const operatorOf = (req: FastifyRequest) => {
    const h = req.headers.authorization;
    return authenticate(readOperators(deps.operatorsFile), h?.startsWith("Bearer ") ? h.slice(7).trim() : undefined);
  };
  app.setErrorHandler((err: Error & { statusCode?: number }, req, reply) => {
    // Fastify's own 4xx (not JSON, too large...) keep their status; a Moss error its registry's; anything else is 500.
    if (err.statusCode && err.statusCode < 500) return reply.code(err.statusCode).send({ error: Codes.BAD_REQUEST.code, message: err.message });
    const code = AllCodes.find((c) => c.code === errorCode(err)) ?? Codes.INTERNAL;
    deps.log?.error("operator API request failed", { method: req.method, url: req.url, code: code.code, err: err.message });
    return replyError(reply, code, `${req.method} ${req.url}: ${err.message}`);
  });
  app.decorateRequest("operator", "");
  app.addHook("onRequest", async (req, reply) => {
    if (req.url === "/health" || req.url === "/docs/json") return;
    const who = operatorOf(req);
    if (who && who.role !== "operate" && req.method !== "GET" && req.method !== "HEAD") {
      deps.log?.warn("operator API request refused: a read-only token", { method: req.method, url: req.url, from: req.ip, operator: who.name });
      return replyError(reply, Codes.READ_ONLY_TOKEN, `${req.method} ${req.url} changes something, and ${who.name}'s token may only read; an operator with the operate role can (\`moss operator add NAME\` makes one)`);
    }
    if (!who) {
      deps.log?.warn("operator API request refused: no operator's token", { method: req.method, url: req.url, from: req.ip, token: req.headers.authorization ? "unknown" : "none" });
      return replyError(reply, Codes.NOT_AN_OPERATOR, `${req.method} ${req.url} needs an operator's token (Authorization: Bearer <token>), and this request has ${req.headers.authorization ? "a token no operator has" : "none"}; \`moss operator add NAME\` makes one`);
    }
    (req as FastifyRequest & { operator: string }).operator = who.name;
  });
  const who = (req: FastifyRequest) => (req as FastifyRequest & { operator: string }).operator;
  const body = <S extends z.ZodType>(schema: S, req: FastifyRequest) => {
    const r = schema.safeParse(req.body ?? {});
    return r.success ? { ok: true as const, value: r.data as z.infer<S> } : { ok: false as const, message: r.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ") };
  };

  app.get("/health", async () => ({ ok: true }));
  // The API as OpenAPI 3.1: every route, its input's schema (the zod schema that validates it) and its answer's.
  app.get("/docs/json", async () => openApi());
  app.get("/v1/whoami", async (req) => ({ operator: who(req), role: operatorOf(req)?.role }));

  // Batches as their records say they are now: every state, filtered by state, agent and fingerprint (or its start).
  app.get<{ Querystring: { state?: string; agent?: string; fingerprint?: string; limit?: string } }>("/v1/batches", async (req, reply) => {
    const { state, agent, fingerprint } = req.query;
    const states = state?.split(",").filter(Boolean) ?? [];
    const unknown = states.filter((x) => !BatchState.safeParse(x).success);
    if (unknown.length) return replyError(reply, Codes.BAD_REQUEST, `batches: no state ${unknown.join(", ")}; the states are ${BatchState.options.join(", ")}`);
    const limit = Math.max(1, Math.min(5_000, Number(req.query.limit) || 500));
    const all = (await deps.stores.batches.list()).filter((b) => (!states.length || states.includes(b.state)) && (!agent || b.agent === agent) && (!fingerprint || b.fingerprint.startsWith(fingerprint) || b.fingerprintKey === fingerprint));
    all.sort((a, b) => b.updatedAt.localeCompare(a.updatedAt));
    const rows: BatchRow[] = all.slice(0, limit).map((b) => ({ batchId: b.batchId, agent: b.agent, state: b.state, fingerprint: b.fingerprint, count: b.count, attempt: b.attempt, openedAt: b.openedAt, updatedAt: b.updatedAt, ...(b.reason ? { reason: b.reason } : {}) }));
    return { batches: rows, total: all.length };
  });
  app.get("/v1/status", async (): Promise<StatusReport> => {
    const batches = countByState(await deps.stores.batches.list());
    return { services: (await deps.services?.()) ?? [], deployments: (await deps.stores.deployments?.list()) ?? [], batches };
  });
  // What an agent runs and ran: the live deployment (its previous and last-known-good versions) and the candidates
  // that were not promoted.
  app.get<{ Params: { agent: string } }>("/v1/agents/:agent/versions", async (req) => {
    const { agent } = req.params;
    return { agent, deployment: (await deps.stores.deployments?.get(agent)) ?? null, candidates: (await deps.stores.candidates?.list(agent)) ?? [] };
  });
  app.get<{ Params: { agent: string } }>("/v1/agents/:agent/regressions", async (req) => {
    const { agent } = req.params;
    return (await deps.regressions?.get?.(agent)) ?? { agent, cases: [], seen: 0 };
  });
  // The auditor's read model, through the one door: the answer as the auditor gives it (status, type, body).
  const fromAudit = async (url: string, reply: FastifyReply) => {
    if (!deps.audit) return replyError(reply, Codes.INTERNAL, "this operator API has no way to ask the auditor");
    const a = await deps.audit(url);
    return reply.code(a.status).type(a.contentType).send(a.body);
  };
  /** The request's query string, `?` included ("" when it has none), passed on as it came. */
  const query = (req: FastifyRequest) => {
    const at = req.url.indexOf("?");
    return at < 0 ? "" : req.url.slice(at);
  };
  app.get<{ Params: { id: string } }>("/v1/batches/:id", async (req, reply) => fromAudit(`/v1/batches/${encodeURIComponent(req.params.id)}${query(req)}`, reply));
  app.get("/v1/dead-letters", async (req, reply) => fromAudit(`/v1/dead-letters${query(req)}`, reply));
  app.get<{ Params: { id: string } }>("/v1/failures/:id/cassette", async (req, reply) => fromAudit(`/v1/failures/${encodeURIComponent(req.params.id)}/cassette`, reply));
  app.get("/v1/audit/verify", async (_req, reply) => fromAudit("/v1/audit/verify", reply));
  // A batch's trace, from the collector its spans went to (`moss trace` draws it; without one, it draws the audit records).
  app.get<{ Params: { traceId: string } }>("/v1/traces/:traceId", async (req, reply) => {
    if (!/^[0-9a-f]{32}$/.test(req.params.traceId)) return replyError(reply, Codes.BAD_REQUEST, `trace ${req.params.traceId}: a trace id is 32 hex digits (\`moss show BATCH\` prints a batch's)`);
    if (!deps.spans) return replyError(reply, Codes.NO_SUCH_REPLAY, "no collector to read spans from: set telemetry.jaegerQuery (a Jaeger query API) to read traces back; `moss trace` draws the audit records meanwhile");
    const got = await deps.spans(req.params.traceId);
    if (!got?.spans.length) return replyError(reply, Codes.NO_SUCH_REPLAY, `the collector has no spans of trace ${req.params.traceId} (yet): spans arrive a few seconds after the work, and age out with the collector's retention`);
    return got;
  });
  app.get("/v1/audit/batches", async (req, reply) => fromAudit(`/v1/batches${query(req)}`, reply));

  /**
   * Waits (up to `outcomeWaitMs`) until the batch's record says the decision was acted on; the record as it then is,
   * and whether it got there.
   */
  const settle = async (batchId: string, acted: (r: BatchRecord) => boolean): Promise<{ record?: BatchRecord; settled: boolean }> => {
    const end = Date.now() + (deps.outcomeWaitMs ?? 15_000);
    for (;;) {
      const record = await deps.stores.batches.get(batchId);
      if (record && acted(record)) return { record, settled: true };
      if (Date.now() >= end) return { record, settled: false };
      await new Promise((r) => setTimeout(r, 150));
    }
  };
  for (const decision of ["approve", "reject"] as const) {
    app.post<{ Params: { id: string } }>(`/v1/batches/:id/${decision}`, async (req, reply) => {
      const b = body(Reason, req);
      if (!b.ok) return replyError(reply, Codes.BAD_REQUEST, `${decision} ${req.params.id}: ${b.message}`);
      const reason = b.value.reason ?? "";
      if (decision === "reject" && !reason.trim()) return replyError(reply, Codes.BAD_REQUEST, `rejecting ${req.params.id} needs a reason (it goes into the audit trail)`);
      const rec = await deps.stores.batches.get(req.params.id);
      if (!rec) return replyError(reply, Codes.BATCH_NOT_FOUND, `no batch ${req.params.id}; list them with \`moss batches\` (a batch still collecting failures has no record until it closes)`);
      if (decision === "approve" && rec.state !== "awaiting-approval") {
        return replyError(reply, Codes.NOT_AWAITING_APPROVAL, `batch ${rec.batchId} is ${rec.state}, not awaiting-approval; only a batch whose candidate passed replay can be approved`, { state: rec.state });
      }
      if (decision === "reject" && rec.state !== "rejected" && !canMove(rec.state, "rejected")) {
        return replyError(reply, Codes.BATCH_TRANSITION, `batch ${rec.batchId} is ${rec.state}: it has ended and can no longer be rejected${rec.state === "promoted" ? ` (\`moss rollback ${rec.agent}\` puts the previous version back)` : ""}`, { state: rec.state });
      }
      if (decision === "reject" && rec.state === "promoting" && rec.promotion?.decision) {
        return replyError(reply, Codes.BATCH_TRANSITION, `batch ${rec.batchId}'s bake has already decided (${rec.promotion.decision.outcome.outcome}): it can no longer be rejected; \`moss rollback ${rec.agent}\` puts the previous version back`, { state: rec.state });
      }
      await deps.publish(Messages.approval, { batchId: rec.batchId, decision, by: who(req), reason });
      deps.log?.info(`${decision} published`, { batch: rec.batchId, by: who(req), from: req.ip, state: rec.state });
      // The real outcome: a reject ends the batch (a baking candidate is rolled back first); an approval starts its promotion.
      const { record, settled } = await settle(rec.batchId, decision === "reject" ? (r) => isFinal(r.state) : (r) => r.state !== "awaiting-approval");
      const now = record ?? rec;
      const answer = { batchId: rec.batchId, decision, by: who(req), from: rec.state, state: now.state, ...(now.reason ? { reason: now.reason } : {}), settled };
      if (settled) return answer;
      return reply.code(202).send({ ...answer, message: `the promoter has not acted on the ${decision} within ${Math.round((deps.outcomeWaitMs ?? 15_000) / 1000)} s (batch ${rec.batchId} is still ${now.state}): is it running (\`moss status\`)? The ${decision} waits on the bus and counts when it does` });
    });
  }

  app.post("/v1/breakers/reset", async (req, reply) => {
    const b = body(Reset, req);
    if (!b.ok) return replyError(reply, Codes.BAD_REQUEST, `reset: ${b.message}`);
    const target = b.value.target;
    let named = parseBreakerKey(target);
    let batchId: string | undefined;
    // Batch ids and agent names never contain a dot; breaker keys always do.
    if (!target.includes(".")) {
      const rec = await deps.stores.batches.get(target);
      if (!rec) return replyError(reply, Codes.BATCH_NOT_FOUND, `no batch ${target}; list them with \`moss batches\`, or name the breaker as AGENT.FPKEY`);
      if (!rec.fingerprintKey) return replyError(reply, Codes.BAD_REQUEST, `batch ${target} does not record its fingerprint key (an older curator made it); reset by AGENT.FPKEY instead`);
      named = { agent: rec.agent, fingerprintKey: rec.fingerprintKey };
      batchId = target;
    }
    if (!named) return replyError(reply, Codes.BAD_REQUEST, `${target} is neither a batch id nor a breaker key AGENT.FPKEY`);
    const key = breakerKey(named.agent, named.fingerprintKey);
    const done = await resetBreaker(deps.stores, { ...named, batchId }, who(req));
    if (!done) return replyError(reply, Codes.NOTHING_TO_RESET, `no circuit breaker ${key}: its fingerprint never had a rejected candidate, so there is nothing to reset`);
    // The breaker is reset; its audit record is published after. A lost publish is retried by the next identical request
    // (the record's id is per reset, so a retry after success records a second reset, which is what happened).
    await deps.publish(Messages.breakerReset, done);
    return done;
  });
  // A rollback needs no consent: any operator may ask for it at any time; the promoter does it under the agent's lease.
  app.post<{ Params: { agent: string } }>("/v1/agents/:agent/rollback", async (req, reply) => {
    const b = body(Rollback, req);
    if (!b.ok) return replyError(reply, Codes.BAD_REQUEST, `rollback ${req.params.agent}: ${b.message}`);
    const agent = req.params.agent;
    if (!deps.stores.deployments) return replyError(reply, Codes.INTERNAL, "this operator API has no deployment store");
    const dep = await deps.stores.deployments.get(agent);
    if (!dep) return replyError(reply, Codes.BAD_REQUEST, `agent ${agent} has no deployment (moss deploy ${agent} makes the first); there is nothing to roll back`);
    const id = randomUUID().replaceAll("-", "");
    const at = new Date().toISOString();
    // Waiting before publishing, so the promoter's answer cannot pass by unseen.
    const waitMs = b.value.waitMs ?? 60_000;
    const outcome = deps.rollbacks && waitMs > 0 ? deps.rollbacks.wait(id, waitMs) : Promise.resolve(undefined);
    await deps.publish(Messages.rollback, { id, agent, ...(b.value.to ? { to: b.value.to } : {}), by: who(req), reason: b.value.reason ?? "", at });
    deps.log?.info("rollback requested", { agent, to: b.value.to, by: who(req), from: req.ip });
    const done = await outcome;
    // The real outcome: rolled back (to what) or refused (why); 202 only when the promoter has not answered yet.
    if (done) return { id, agent, by: who(req), at, settled: true, done };
    return reply.code(202).send({ id, agent, to: b.value.to ?? null, by: who(req), live: dep.version, at, settled: false, message: `the promoter has not answered rollback ${id} within ${Math.round(waitMs / 1000)} s: is it running (\`moss status\`)? It acts on the request when it comes back` });
  });
  /** The one stored failure an id or prefix names; else the refusal is sent, and undefined. */
  const oneFailure = async (idOrPrefix: string, reply: FastifyReply): Promise<{ agent: string; case: TimeTravelCase } | undefined> => {
    const found = await deps.timeTravel!.findFailures(idOrPrefix);
    if (found.length === 0) {
      replyError(reply, Codes.NO_STORED_FAILURE, `no stored failure ${idOrPrefix}: only failures kept as a batch's evidence are stored (\`moss show BATCH\` lists them)`);
      return undefined;
    }
    if (found.length > 1) {
      replyError(reply, Codes.BAD_REQUEST, `${idOrPrefix} is the start of ${found.length} failures' ids (${found.slice(0, 5).map((f) => f.id).join(", ")}${found.length > 5 ? ", …" : ""}): give more of it`);
      return undefined;
    }
    const f = found[0]!;
    return { agent: f.agent, case: { kind: "failure", id: f.id, event: f.event, ...(f.batchId ? { batchId: f.batchId } : {}) } };
  };
  // Time travel: stored turns against any version. The rewriter finds the version and its image, the replayer replays.
  app.post("/v1/replays", async (req, reply) => {
    const b = body(Replay, req);
    if (!b.ok) return replyError(reply, Codes.BAD_REQUEST, `replay: ${b.message}`);
    const tt = deps.timeTravel;
    if (!tt) return replyError(reply, Codes.INTERNAL, "this operator API has no time-travel store");
    const { version } = b.value;
    let agent: string;
    let cases: TimeTravelCase[];
    if (b.value.failure !== undefined) {
      const f = await oneFailure(b.value.failure, reply);
      if (!f) return reply;
      ({ agent } = f);
      cases = [f.case];
    } else if (b.value.allFailuresOf !== undefined) {
      const rec = await deps.stores.batches.get(b.value.allFailuresOf);
      if (!rec) return replyError(reply, Codes.BATCH_NOT_FOUND, `no batch ${b.value.allFailuresOf}; list them with \`moss batches\``);
      agent = rec.agent;
      cases = rec.failures.map((f) => ({ kind: "failure", id: f.id, event: f.event, batchId: rec.batchId }));
    } else {
      agent = b.value.regressions!;
      const set = await deps.regressions?.get?.(agent);
      if (!set?.cases.length) return replyError(reply, Codes.BAD_REQUEST, `agent ${agent} has no recorded successes to replay (\`moss regressions ${agent}\`): its SDK records them with a sampleRate`);
      cases = set.cases.map((c) => ({ kind: "regression", id: c.id, event: c.event }));
    }
    if (cases.length > MAX_TIME_TRAVEL_CASES) return replyError(reply, Codes.BAD_REQUEST, `that is ${cases.length} stored turns; one replay takes at most ${MAX_TIME_TRAVEL_CASES}: replay them by failure`);
    const id = randomUUID().replaceAll("-", "");
    const at = new Date().toISOString();
    await tt.travels.create({ id, agent, version, by: who(req), at, state: "requested", cases, results: [], regressions: [], updatedAt: at });
    await deps.publish(Messages.timeTravel, { id, agent, version, cases, by: who(req), at });
    deps.log?.info("replay requested", { travel: id, agent, version, cases: cases.length, by: who(req), from: req.ip });
    return reply.code(202).send(await tt.travels.get(id));
  });
  app.get<{ Params: { id: string } }>("/v1/replays/:id", async (req, reply) => {
    const rec = await deps.timeTravel?.travels.get(req.params.id);
    if (!rec) return replyError(reply, Codes.NO_SUCH_REPLAY, `no replay ${req.params.id}`);
    return rec;
  });
  // Bisect: the first version between two ends at which a stored failure starts (or, with fixed, stops) happening.
  app.post("/v1/bisects", async (req, reply) => {
    const b = body(Bisect, req);
    if (!b.ok) return replyError(reply, Codes.BAD_REQUEST, `bisect: ${b.message}`);
    const bisects = deps.timeTravel?.bisects;
    if (!bisects) return replyError(reply, Codes.INTERNAL, "this operator API has no bisect store");
    const f = await oneFailure(b.value.failure, reply);
    if (!f) return reply;
    const id = randomUUID().replaceAll("-", "");
    const at = new Date().toISOString();
    const { good, bad, fixed } = b.value;
    await bisects.create({ id, agent: f.agent, failure: f.case, good, bad, fixed, by: who(req), at, state: "requested", commits: [], lo: -1, hi: 0, steps: [], updatedAt: at });
    await deps.publish(Messages.bisect, { id, agent: f.agent, failure: f.case, good, bad, fixed, by: who(req), at });
    deps.log?.info("bisect requested", { bisect: id, agent: f.agent, failure: f.case.id, good, bad, fixed, by: who(req), from: req.ip });
    return reply.code(202).send(await bisects.get(id));
  });
  app.get<{ Params: { id: string } }>("/v1/bisects/:id", async (req, reply) => {
    const rec = await deps.timeTravel?.bisects?.get(req.params.id);
    if (!rec) return replyError(reply, Codes.NO_SUCH_REPLAY, `no bisect ${req.params.id}`);
    return rec;
  });
  // The reviewed baseline and the semantic diff against it, answered by the rewriter (it has the repository).
  const askReview = async (kind: ReviewRequest["kind"], agent: string, version: string, req: FastifyRequest, reply: FastifyReply) => {
    const rv = deps.review;
    if (!rv) return replyError(reply, Codes.INTERNAL, "this operator API has no review store");
    if (!AgentName.safeParse(agent).success || !rv.known(agent)) return replyError(reply, Codes.BAD_REQUEST, `no agent ${agent} in the config (agents.<name>)`);
    const id = randomUUID().replaceAll("-", "");
    const at = new Date().toISOString();
    await rv.reviews.create({ id, kind, agent, version, by: who(req), at, state: "requested", updatedAt: at });
    await deps.publish(Messages.review, { id, kind, agent, version, by: who(req), at });
    deps.log?.info(`${kind} requested`, { review: id, agent, version, by: who(req), from: req.ip });
    return reply.code(202).send(await rv.reviews.get(id));
  };
  app.post<{ Params: { agent: string } }>("/v1/agents/:agent/reviewed", async (req, reply) => {
    const b = body(MarkReviewed, req);
    if (!b.ok) return replyError(reply, Codes.BAD_REQUEST, `mark-reviewed ${req.params.agent}: ${b.message}`);
    return askReview("mark-reviewed", req.params.agent, b.value.version, req, reply);
  });
  app.get<{ Params: { agent: string } }>("/v1/agents/:agent/reviewed", async (req, reply) => {
    const got = await deps.review?.baseline(req.params.agent);
    if (!got) return replyError(reply, Codes.NO_SUCH_REPLAY, `agent ${req.params.agent} has no reviewed baseline: \`moss mark-reviewed ${req.params.agent} COMMIT\` records one`);
    return got;
  });
  // A diff changes nothing: a read token may ask for one (the rewriter computes it; the answer is its record).
  app.get<{ Params: { agent: string }; Querystring: { version?: string } }>("/v1/agents/:agent/diff", async (req, reply) => {
    const v = VersionRef.safeParse(req.query.version ?? "live");
    if (!v.success) return replyError(reply, Codes.BAD_REQUEST, `diff ${req.params.agent}: version: ${v.error.issues[0]?.message}`);
    return askReview("diff", req.params.agent, v.data, req, reply);
  });
  // Reconcile prepares a branch in the repository (never touches main): an operate token.
  app.post<{ Params: { agent: string } }>("/v1/agents/:agent/reconcile", async (req, reply) => {
    const b = body(z.object({ version: VersionRef.default("live") }).strict(), req);
    if (!b.ok) return replyError(reply, Codes.BAD_REQUEST, `reconcile ${req.params.agent}: ${b.message}`);
    return askReview("reconcile", req.params.agent, b.value.version, req, reply);
  });
  app.get<{ Params: { id: string } }>("/v1/reviews/:id", async (req, reply) => {
    const rec = await deps.review?.reviews.get(req.params.id);
    if (!rec) return replyError(reply, Codes.NO_SUCH_REPLAY, `no review request ${req.params.id}`);
    return rec;
  });
  // A case's trial logs (the agent's stdout and stderr, and the driver's lines), as text.
  app.get<{ Params: { id: string; caseId: string } }>("/v1/replays/:id/logs/:caseId", async (req, reply) => {
    const rec = await deps.timeTravel?.travels.get(req.params.id);
    const r = rec && [...rec.results, ...rec.regressions].find((x) => x.failureId === req.params.caseId);
    if (!r?.logs) return replyError(reply, Codes.NO_SUCH_REPLAY, `replay ${req.params.id} has no logs for ${req.params.caseId}${rec ? ` (it is ${rec.state})` : ""}`);
    return reply.type("text/plain; charset=utf-8").send(await deps.timeTravel!.blob.get(r.logs.sha256));
  });
  // Pin (never evicted, replayed by every candidate), unpin, or drop a recorded success of an agent's regression set.
  for (const action of ["pin", "drop"] as const) {
    app.post<{ Params: { agent: string; id: string } }>(`/v1/agents/:agent/regressions/:id/${action}`, async (req, reply) => {
      const b = body(Pin, req);
      if (!b.ok) return replyError(reply, Codes.BAD_REQUEST, `${action} ${req.params.id}: ${b.message}`);
      if (!deps.regressions) return replyError(reply, Codes.INTERNAL, "this operator API has no regression store");
      const { agent, id } = req.params;
      const unpin = action === "pin" && b.value.unpin === true;
      const c = action === "drop" ? await deps.regressions.drop(agent, id) : await deps.regressions.pin(agent, id, unpin ? undefined : who(req));
      if (!c) return replyError(reply, Codes.NO_REGRESSION_CASE, `agent ${agent}'s regression set has no case ${id}; list it with \`moss regressions ${agent}\``);
      const did = action === "drop" ? "dropped" : unpin ? "unpinned" : "pinned";
      // Done in KV; said on the bus for the audit log (who, what, when), like every operator action.
      await deps.publish(Messages.regressionCase, { agent, caseId: id, action: did, by: who(req), at: new Date().toISOString() });
      deps.log?.info(`regression case ${did}`, { agent, case: id, by: who(req), from: req.ip });
      return { agent, id, action: did, by: who(req), case: c };
    });
  }
  return app;
}
