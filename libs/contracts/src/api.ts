/**
 * The shapes of Moss's HTTP APIs: what the curator's ingest accepts besides failure events, and what the auditor's
 * operator API answers. Server and clients (the CLI) import these; nothing redefines them.
 */
import { z } from "zod";
import { BlobRef, Deployment, ErrorInfo, FailureEvent, ServiceStatus, HttpRequest, Invocation, PromotionOutcome, RegressionResult, ReplayResult, StageRecord } from "./schemas";

/** `POST /v1/flags`: an operator (or the agent itself) marks a turn as bad; it becomes a failure like any other. */
export const Flag = z.object({
  agent: FailureEvent.shape.agent,
  version: FailureEvent.shape.version,
  request: HttpRequest,
  response: FailureEvent.shape.response,
  route: FailureEvent.shape.route,
  /** Why this turn is bad, in words. */
  reason: z.string().min(1).max(2_000),
  by: z.string().min(1).max(200),
  /** Group flags explicitly (e.g. one per issue); default: by route and reason. */
  fingerprint: FailureEvent.shape.fingerprint,
  snapshot: FailureEvent.shape.snapshot,
  env: FailureEvent.shape.env,
  /** What a right answer looks like (`moss flag --expect`): its replays must meet it. */
  expect: FailureEvent.shape.expect,
});
export type Flag = z.infer<typeof Flag>;

/** One line of a batch's story. */
export const TimelineEntry = z.object({ at: z.string(), kind: z.string(), summary: z.string(), /** Who published what the entry tells (see the audit record's `who`). */ who: z.string().optional() });
export type TimelineEntry = z.infer<typeof TimelineEntry>;

/** One attempt of a batch as the audit log tells it. `diffText` and each stage's `outputText` are filled in by the API. */
export const AttemptView = z.object({
  attempt: z.number().int(),
  commit: z.string().optional(),
  branch: z.string().optional(),
  image: z.string().optional(),
  filesChanged: z.array(z.string()).optional(),
  diff: BlobRef.optional(),
  diffText: z.string().optional(),
  verdict: z.string().optional(),
  reason: z.string().optional(),
  replay: z.array(ReplayResult).optional(),
  /** The recorded successes the candidate was replayed on, with what changed. */
  regressions: z.array(RegressionResult).optional(),
  /** The attempt's stages (locate, plan, reviews, implement) with their verdicts. */
  stages: z.array(StageRecord.extend({ outputText: z.string().optional() })).optional(),
  codingAgent: z.string().optional(),
  signed: z.boolean().optional(),
});
export type AttemptView = z.infer<typeof AttemptView>;

/** `GET /v1/batches/:id`: a batch's whole story, from the audit log alone. */
export const BatchTimeline = z.object({
  batchId: z.string(),
  agent: z.string().optional(),
  fingerprint: z.string().optional(),
  count: z.number().int().optional(),
  traceId: z.string().optional(),
  /** The batch's sample failures, as their events tell them. */
  failures: z.array(z.object({ id: z.string(), occurredAt: z.string(), route: z.string().optional(), version: z.string().optional(), request: HttpRequest.optional(), invocation: Invocation.optional(), error: ErrorInfo })),
  attempts: z.array(AttemptView),
  /** The last decision: promoted, rolled-back, exhausted, rejected, awaiting-approval... or in progress. */
  verdict: z.string(),
  promotion: PromotionOutcome.optional(),
  timeline: z.array(TimelineEntry),
  /** Messages of this batch a stage gave up on (terminated and copied to the dead-letter subject), with why. */
  deadLetters: z.array(z.object({ at: z.string(), subject: z.string(), consumer: z.string(), code: z.string(), reason: z.string() })).default([]),
});
export type BatchTimeline = z.infer<typeof BatchTimeline>;
/** A timeline as a client may hold it (defaulted fields may be missing): what the CLI renders. */
export type BatchTimelineInput = z.input<typeof BatchTimeline>;

/** One row of `GET /v1/batches`, newest first. */
export const BatchSummary = z.object({
  batchId: z.string(),
  agent: z.string().optional(),
  count: z.number().int().optional(),
  verdict: z.string(),
  lastAt: z.string(),
});
export type BatchSummary = z.infer<typeof BatchSummary>;

/** `GET /v1/audit/verify`: the audit log's chain recomputed and held to its signed checkpoints and segments. */
export const AuditVerifyReport = z.object({
  ok: z.boolean(),
  records: z.number().int(),
  checkpoints: z.number().int(),
  /** The first record whose link is broken (in the chain, or against a checkpoint or its segment). */
  brokenAt: z.number().int().optional(),
  why: z.string().optional(),
  /** The checkpoint the log contradicts, when one does. */
  contradicts: z.object({ seq: z.number().int(), at: z.string(), why: z.string() }).optional(),
  /** Checkpoints without a signature (no signing key was configured): they hold the log only as far as KV is trusted. */
  unsigned: z.number().int(),
  /** The newest records held to their stream's own copy: how many compared, how many the stream no longer holds. */
  stream: z.object({ compared: z.number().int(), aged: z.number().int() }).optional(),
  /** The checkpoints git keeps (refs/notes/moss-audit in the agent repositories) the log was held to. */
  git: z.object({ copies: z.number().int() }).optional(),
});
export type AuditVerifyReport = z.infer<typeof AuditVerifyReport>;

/** A read query over the bus (see `Queries`): a GET of one of the answering service's read routes. */
export const QueryRequest = z.object({ method: z.literal("GET"), url: z.string().startsWith("/").max(2_000) });
export type QueryRequest = z.infer<typeof QueryRequest>;

/** A query's answer, shaped like the HTTP answer it stands for; a body too large for the bus is in the blob store. */
export const QueryAnswer = z.object({
  status: z.number().int().min(100).max(599),
  contentType: z.string().default("application/json"),
  body: z.string().optional(),
  blob: BlobRef.optional(),
});
export type QueryAnswer = z.infer<typeof QueryAnswer>;

/** `GET /v1/batches` on the operator API: a batch as its record says it is now (filter by state, agent, fingerprint). */
export const BatchRow = z.object({
  batchId: z.string(),
  agent: z.string(),
  state: z.string(),
  fingerprint: z.string(),
  count: z.number().int(),
  attempt: z.number().int(),
  openedAt: z.string(),
  updatedAt: z.string(),
  reason: z.string().optional(),
});
export type BatchRow = z.infer<typeof BatchRow>;
export const BatchList = z.object({ batches: z.array(BatchRow), total: z.number().int() });
export type BatchList = z.infer<typeof BatchList>;

/** `GET /v1/status` on the operator API: the services as `moss up` reports them, the live deployments, batches by state. */
export const StatusReport = z.object({ services: z.array(ServiceStatus), deployments: z.array(Deployment), batches: z.record(z.string(), z.number().int()) });
export type StatusReport = z.infer<typeof StatusReport>;

/**
 * The git note (`refs/notes/moss`) on every Moss commit: what became of it — its candidate, its replay, the verdict,
 * its promotion — and how to see the rest. Written by the rewriter as each of those is published; `git log
 * --notes=moss` shows it next to the commit, wherever the repository is cloned.
 */
export const MossNote = z.object({
  note: z.literal("moss.note.v1"),
  batch: z.string(),
  agent: z.string(),
  attempt: z.number().int(),
  commit: z.string(),
  candidate: z.object({ branch: z.string(), image: z.string(), codingAgent: z.string().optional(), filesChanged: z.array(z.string()) }).optional(),
  replay: z
    .object({
      passed: z.boolean(),
      failures: z.array(z.object({ id: z.string(), passed: z.boolean(), verdict: z.string().optional(), reason: z.string() })),
      regressions: z.object({ replayed: z.number().int(), changed: z.number().int() }),
    })
    .optional(),
  verdict: z.object({ verdict: z.string(), reason: z.string() }).optional(),
  promotion: z.object({ outcome: z.string(), reason: z.string(), approvedBy: z.string() }).optional(),
  links: z.object({ show: z.string(), trace: z.string(), replay: z.string() }),
});
export type MossNote = z.infer<typeof MossNote>;

/** `GET /v1/traces/:traceId` on the operator API: a trace's spans as the collector (Jaeger's query API) has them. */
export const TraceSpans = z.object({
  traceId: z.string(),
  source: z.string(),
  spans: z.array(z.object({ service: z.string(), name: z.string(), startMs: z.number(), durationMs: z.number(), spanId: z.string(), parentId: z.string().optional() })),
});
export type TraceSpans = z.infer<typeof TraceSpans>;
