/**
 * The operator API's OpenAPI 3.1 document, served at `/docs/json`: each route with what it is for, the role it needs,
 * and the JSON Schema of its body and answer, made from the same zod schemas that validate them. A route the app serves
 * that this table does not describe fails the operator API's tests, so the document cannot fall behind the routes.
 */
import { AuditVerifyReport, BatchList, BatchTimeline, BisectRecord, RegressionSet, ReviewedBaseline, ReviewRecord, StatusReport, TimeTravelRecord, TraceSpans } from "@moss/contracts";
import { z } from "zod";
import { Bisect, MarkReviewed, Pin, Reason, Replay, Reset, Rollback } from "./inputs";

interface RouteDoc {
  summary: string;
  /** `read`: any operator's token; `operate`: a token with the operate role; `none`: no token. */
  role: "none" | "read" | "operate";
  body?: z.ZodType;
  answer?: z.ZodType;
}

const Error = z.object({ error: z.string().describe("a MOSS_E_ code"), message: z.string().describe("what went wrong, where, and what to do") });

/** Every route, keyed `METHOD url` as fastify registers it. */
export const ROUTE_DOCS: Record<string, RouteDoc> = {
  "GET /health": { summary: "The API is up.", role: "none" },
  "GET /docs/json": { summary: "This document.", role: "none" },
  "GET /v1/whoami": { summary: "The operator a token authenticates, and its role.", role: "read" },
  "GET /v1/batches": { summary: "Batches as their records say they are now (?state=a,b &agent= &fingerprint= &limit=), newest first.", role: "read", answer: BatchList },
  "GET /v1/batches/:id": { summary: "A batch's timeline from the audit log: failures, attempts and their stages, diff, replays, verdict, promotion.", role: "read", answer: BatchTimeline },
  "GET /v1/status": { summary: "The services (as `moss up` reports them), the live deployments, batches by state.", role: "read", answer: StatusReport },
  "GET /v1/agents/:agent/versions": { summary: "The agent's live deployment (previous and last-known-good versions) and its candidates that were not promoted.", role: "read" },
  "GET /v1/agents/:agent/regressions": { summary: "The agent's regression set: the recorded successes every candidate is replayed on.", role: "read", answer: RegressionSet },
  "GET /v1/dead-letters": { summary: "Dead letters with their reasons, from the audit log (?after= &limit=).", role: "read" },
  "GET /v1/failures/:id/cassette": { summary: "A stored failure's cassette: the outbound calls of its turn, as its replays are served them.", role: "read" },
  "GET /v1/audit/verify": { summary: "Recompute the audit log's chain and hold it to its signed checkpoints and exported segments.", role: "read", answer: AuditVerifyReport },
  "GET /v1/traces/:traceId": { summary: "A trace's spans, read back from the collector (telemetry.jaegerQuery): service, name, start, duration.", role: "read", answer: TraceSpans },
  "GET /v1/audit/batches": { summary: "Every batch the audit log has records of, with its last verdict (?limit= &before=).", role: "read" },
  "POST /v1/batches/:id/approve": { summary: "Consent: promote a batch awaiting approval.", role: "operate", body: Reason },
  "POST /v1/batches/:id/reject": { summary: "Reject a batch, with a reason (counts against its fingerprint's breaker).", role: "operate", body: Reason },
  "POST /v1/breakers/reset": { summary: "Close a fingerprint's circuit breaker (by batch id or AGENT.FPKEY).", role: "operate", body: Reset },
  "POST /v1/agents/:agent/rollback": { summary: "Put the agent back on its last-known-good (or a kept) version now.", role: "operate", body: Rollback },
  "POST /v1/agents/:agent/regressions/:id/pin": { summary: "Pin (or with unpin, unpin) a recorded success of the agent's regression set.", role: "operate", body: Pin },
  "POST /v1/agents/:agent/regressions/:id/drop": { summary: "Drop a recorded success from the agent's regression set.", role: "operate", body: Pin },
  "POST /v1/replays": { summary: "Replay stored turns against a version (time travel).", role: "operate", body: Replay, answer: TimeTravelRecord },
  "GET /v1/replays/:id": { summary: "A replay's record, as each stage leaves it.", role: "read", answer: TimeTravelRecord },
  "GET /v1/replays/:id/logs/:caseId": { summary: "One case's trial logs, as text.", role: "read" },
  "POST /v1/bisects": { summary: "Find the first version at which a stored failure starts (or stops) happening.", role: "operate", body: Bisect, answer: BisectRecord },
  "GET /v1/bisects/:id": { summary: "A bisect's record: the range, each step, the answer.", role: "read", answer: BisectRecord },
  "POST /v1/agents/:agent/reviewed": { summary: "Record the version a human reviewed (tagged moss/reviewed/AGENT).", role: "operate", body: MarkReviewed, answer: ReviewRecord },
  "GET /v1/agents/:agent/reviewed": { summary: "The agent's reviewed baseline.", role: "read", answer: ReviewedBaseline },
  "GET /v1/agents/:agent/diff": { summary: "Ask for the semantic diff of a version (?version=, default live) against the reviewed baseline.", role: "read", answer: ReviewRecord },
  "POST /v1/agents/:agent/reconcile": { summary: "The live Moss line against the human main branch: a branch prepared, or the conflicts listed.", role: "operate", body: z.object({ version: z.string().optional() }), answer: ReviewRecord },
  "GET /v1/reviews/:id": { summary: "A mark-reviewed, diff or reconcile request and its answer.", role: "read", answer: ReviewRecord },
};

const json = (s: z.ZodType) => z.toJSONSchema(s, { io: "input", unrepresentable: "any" });

export function openApi(): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const [key, d] of Object.entries(ROUTE_DOCS)) {
    const [method, url] = key.split(" ") as [string, string];
    const path = url.replace(/:([A-Za-z]+)/g, "{$1}");
    const params = [...url.matchAll(/:([A-Za-z]+)/g)].map((m) => ({ name: m[1], in: "path", required: true, schema: { type: "string" } }));
    (paths[path] ??= {})[method.toLowerCase()] = {
      summary: d.summary,
      "x-moss-role": d.role,
      ...(d.role === "none" ? { security: [] } : {}),
      ...(params.length ? { parameters: params } : {}),
      ...(d.body ? { requestBody: { required: true, content: { "application/json": { schema: json(d.body) } } } } : {}),
      responses: {
        [method === "POST" && d.answer ? "202" : "200"]: { description: "done", ...(d.answer ? { content: { "application/json": { schema: json(d.answer) } } } : {}) },
        ...(d.role === "none" ? {} : { "401": { description: "no operator's token", content: { "application/json": { schema: json(Error) } } } }),
        ...(d.role === "operate" ? { "403": { description: "a read-only token", content: { "application/json": { schema: json(Error) } } } } : {}),
        "4XX": { description: "refused, with what to do", content: { "application/json": { schema: json(Error) } } },
      },
    };
  }
  return {
    openapi: "3.1.0",
    info: { title: "Moss operator API", version: "1", description: "Consent, rollback, time travel, bisect, review and reconcile; every request but /health and /docs/json carries an operator's bearer token." },
    components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
    security: [{ bearer: [] }],
    paths,
  };
}
