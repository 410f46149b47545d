import type { z } from "zod";
import {
  Approval,
  BatchReady,
  BatchRetry,
  BatchVerdict,
  BisectRequest,
  AuditCheckpointed,
  BreakerReset,
  RegressionCaseChanged,
  CandidateFailed,
  CandidateReady,
  DeadLetter,
  FailureEvent,
  PromotionOutcome,
  Regression,
  ReplayCompleted,
  ReplayTrial,
  RollbackDone,
  ReviewDone,
  ReviewRequest,
  RollbackRequest,
  SuccessEvent,
  TimeTravelDone,
  TimeTravelReady,
  TimeTravelRequest,
} from "./schemas";

/**
 * A message kind: its subject (a concrete subject, or a pattern when the last token varies), its schema, and how a
 * message of it is addressed — the concrete subject it goes to and its JetStream dedup id, both derived from the
 * message itself. Publisher and handler import the same definition; no subject string or dedup id is typed anywhere
 * else.
 */
export interface MessageDef<S extends z.ZodType = z.ZodType> {
  /** Short stable name, used in logs, audit records and JSON Schema file names. */
  readonly name: string;
  /** Subject a consumer filters on (may contain wildcards). */
  readonly subject: string;
  readonly schema: S;
  /** The stream that stores it. */
  readonly stream: StreamName;
  /** The `Nats-Msg-Id` of a message: the same message published twice within the stream's window is stored once. */
  msgId(m: z.output<S>): string;
  /** The concrete subject a message is published on. */
  subjectOf(m: z.output<S>): string;
}

/**
 * Publishes a message of a kind on its subject with its dedup id, once it validates; resolves when JetStream stored
 * it. `trace` is a W3C trace carrier the message joins (a batch's root span) instead of the active context.
 * The one port every service's handlers publish through.
 */
export type Publish = <S extends z.ZodType>(def: MessageDef<S>, msg: z.input<S>, opts?: { trace?: Record<string, string> }) => Promise<unknown>;

function def<S extends z.ZodType>(
  name: string,
  subject: string,
  stream: StreamName,
  schema: S,
  msgId: (m: z.output<S>) => string,
  subjectOf: (m: z.output<S>) => string = () => subject,
): MessageDef<S> {
  return Object.freeze({ name, subject, schema, stream, msgId, subjectOf });
}

export const Streams = {
  /** Raw failure events from agents. */
  FAILURES: "MOSS_FAILURES",
  /** Everything the pipeline says about batches. */
  PIPELINE: "MOSS_PIPELINE",
  /** Terminated messages with the reason. */
  DLQ: "MOSS_DLQ",
  /** The replayers' work queue: one message per trial, gone once a replica has done it. */
  TRIALS: "MOSS_TRIALS",
  /** Successful turns the agents' SDKs sampled, for the curator's regression sets. */
  SUCCESSES: "MOSS_SUCCESSES",
} as const;
export type StreamName = (typeof Streams)[keyof typeof Streams];

/** The concrete subject a failure of `agent` is published on. */
export function failureSubject(agent: string): string {
  return `moss.failure.${agent}`;
}
/** The concrete subject a recorded success of `agent` is published on. */
export function successSubject(agent: string): string {
  return `moss.success.${agent}`;
}
/** The concrete subject a dead letter from `stream`/`consumer` is published on. */
export function deadLetterSubject(stream: string, consumer: string): string {
  return `moss.dlq.${stream}.${consumer}`;
}
const attemptId = (m: { batchId: string; attempt: number }) => `candidate-${m.batchId}-${m.attempt}`;

export const Messages = {
  /** `moss.failure.<agent>`; deduplicated by the failure's own id. */
  failure: def("failure.v1", "moss.failure.*", Streams.FAILURES, FailureEvent, (m) => m.id, (m) => failureSubject(m.agent)),
  /** `moss.success.<agent>`: a sampled successful turn; deduplicated by its id. */
  success: def("success.v1", "moss.success.*", Streams.SUCCESSES, SuccessEvent, (m) => m.id, (m) => successSubject(m.agent)),
  batchReady: def("batch.ready.v1", "moss.batch.ready.v1", Streams.PIPELINE, BatchReady, (m) => `batch-ready-${m.batchId}`),
  batchRetry: def("batch.retry.v1", "moss.batch.retry.v1", Streams.PIPELINE, BatchRetry, (m) => `batch-retry-${m.batchId}-${m.attempt}`),
  /** One id for both outcomes of an attempt (ready or failed): an attempt announces one of them, once. */
  candidateReady: def("candidate.ready.v1", "moss.candidate.ready.v1", Streams.PIPELINE, CandidateReady, (m) => attemptId(m)),
  candidateFailed: def("candidate.failed.v1", "moss.candidate.failed.v1", Streams.PIPELINE, CandidateFailed, (m) => attemptId(m)),
  /** One trial of one failure, for any replayer replica; once per candidate, failure and trial. */
  replayTrial: def("replay.trial.v1", "moss.trial.replay.v1", Streams.TRIALS, ReplayTrial, (m) => `${m.kind === "regression" ? "regression-trial" : "trial"}-${m.batchId}-${m.attempt}-${m.failureId}-${m.trial}`),
  replayCompleted: def("replay.completed.v1", "moss.replay.completed.v1", Streams.PIPELINE, ReplayCompleted, (m) => `replay-${m.batchId}-${m.attempt}`),
  batchVerdict: def("batch.verdict.v1", "moss.batch.verdict.v1", Streams.PIPELINE, BatchVerdict, (m) => `verdict-${m.batchId}-${m.attempt}-${m.verdict}`),
  approval: def("approval.v1", "moss.approval.v1", Streams.PIPELINE, Approval, (m) => `approval-${m.batchId}-${m.decision}`),
  promotion: def("promotion.outcome.v1", "moss.promotion.outcome.v1", Streams.PIPELINE, PromotionOutcome, (m) => `promotion-${m.batchId}`),
  /** An operator's rollback (`moss rollback`), through the operator API; once per request. */
  rollback: def("rollback.v1", "moss.rollback.request.v1", Streams.PIPELINE, RollbackRequest, (m) => `rollback-${m.id}`),
  /** What the promoter did with it. */
  rollbackDone: def("rollback.done.v1", "moss.rollback.done.v1", Streams.PIPELINE, RollbackDone, (m) => `rollback-done-${m.requestId}`),
  /** `moss replay`: stored turns against a version (operator API only); the rewriter finds the version and its image. */
  timeTravel: def("time-travel.request.v1", "moss.replay.request.v1", Streams.PIPELINE, TimeTravelRequest, (m) => `time-travel-${m.id}`),
  /** The version's image is on the engine: the replayer replays the cases against it. */
  timeTravelReady: def("time-travel.ready.v1", "moss.replay.version.v1", Streams.PIPELINE, TimeTravelReady, (m) => `time-travel-ready-${m.id}`),
  /** `moss bisect`: the rewriter walks the versions between two ends, one time-travel replay per step. */
  bisect: def("bisect.request.v1", "moss.replay.bisect.v1", Streams.PIPELINE, BisectRequest, (m) => `bisect-${m.id}`),
  /** `moss mark-reviewed` / `moss diff` (operator API only): the rewriter, which has the repository, answers. */
  review: def("review.request.v1", "moss.review.request.v1", Streams.PIPELINE, ReviewRequest, (m) => `review-${m.id}`),
  reviewDone: def("review.done.v1", "moss.review.done.v1", Streams.PIPELINE, ReviewDone, (m) => `review-done-${m.requestId}`),
  /** What the replays found, or why none ran. */
  timeTravelDone: def("time-travel.done.v1", "moss.replay.done.v1", Streams.PIPELINE, TimeTravelDone, (m) => `time-travel-done-${m.requestId}`),
  /** A fixed fingerprint failed again on the promoted version: the promoter's regression signal. */
  regression: def("regression.v1", "moss.regression.v1", Streams.PIPELINE, Regression, (m) => `regression-${m.failureId}`),
  /** The auditor checkpointed its chain head (kept as a git note by the rewriter). */
  auditCheckpoint: def("audit.checkpoint.v1", "moss.audit.checkpoint.v1", Streams.PIPELINE, AuditCheckpointed, (m) => `audit-checkpoint-${m.seq}`),
  /** An operator pinned, unpinned or dropped a case of an agent's regression set (`moss regressions --pin`…). */
  regressionCase: def("regression.case.v1", "moss.regression.case.v1", Streams.PIPELINE, RegressionCaseChanged, (m) => `regression-case-${m.agent}-${m.caseId}-${m.action}-${Date.parse(m.at)}`),
  /** An operator reset a fingerprint's circuit breaker (`moss reset`); one record per reset, a retried publish is dropped. */
  breakerReset: def("breaker.reset.v1", "moss.breaker.reset.v1", Streams.PIPELINE, BreakerReset, (m) => `breaker-reset-${m.breaker}-${Date.parse(m.at)}`),
  /** `moss.dlq.<stream>.<consumer>`; one copy per terminated message, whoever terminated it. */
  deadLetter: def("dlq.v1", "moss.dlq.>", Streams.DLQ, DeadLetter, (m) => `dlq-${m.stream}-${m.consumer}-${m.streamSeq}`, (m) => deadLetterSubject(m.stream, m.consumer)),
} as const;
export type MessageName = keyof typeof Messages;

/**
 * Read queries one service answers for another over core NATS request/reply (never stored in a stream: a query is
 * asked again, not redelivered). The answer is an HTTP-shaped {@link QueryAnswer}; one larger than the bus's payload
 * limit is put in the blob store and answered by reference.
 */
export const Queries = {
  /** The auditor's read model (timelines, dead letters, cassettes, verification), asked by the operator API. */
  audit: { subject: "moss.query.audit.v1", queue: "auditor" },
} as const;
export type QueryDef = (typeof Queries)[keyof typeof Queries];
export type MessageOf<K extends MessageName> = z.infer<(typeof Messages)[K]["schema"]>;


export interface StreamDef {
  readonly name: StreamName;
  readonly subjects: readonly string[];
  /** Max age of messages, ms. */
  readonly maxAgeMs: number;
  /** `workqueue`: a message is removed once acknowledged, and one consumer shares it out. Default: kept to max age. */
  readonly retention?: "limits" | "workqueue";
  /** `Nats-Msg-Id` dedup window, ms. */
  readonly duplicateWindowMs: number;
}

const DAY = 86_400_000;
export const StreamDefs: readonly StreamDef[] = Object.freeze([
  { name: Streams.FAILURES, subjects: ["moss.failure.*"], maxAgeMs: 14 * DAY, duplicateWindowMs: 10 * 60_000 },
  {
    name: Streams.PIPELINE,
    subjects: ["moss.batch.>", "moss.candidate.>", "moss.replay.>", "moss.approval.>", "moss.promotion.>", "moss.regression.>", "moss.breaker.>", "moss.rollback.>", "moss.review.>", "moss.audit.>"],
    maxAgeMs: 90 * DAY,
    duplicateWindowMs: 10 * 60_000,
  },
  { name: Streams.DLQ, subjects: ["moss.dlq.>"], maxAgeMs: 30 * DAY, duplicateWindowMs: 10 * 60_000 },
  { name: Streams.TRIALS, subjects: ["moss.trial.>"], maxAgeMs: 1 * DAY, duplicateWindowMs: 10 * 60_000, retention: "workqueue" },
  // A success matters only until the curator has kept it (or not) in the agent's regression set.
  { name: Streams.SUCCESSES, subjects: ["moss.success.*"], maxAgeMs: 2 * DAY, duplicateWindowMs: 10 * 60_000 },
]);

export interface ConsumerDef {
  readonly durable: string;
  readonly stream: StreamName;
  readonly filterSubjects: readonly string[];
  /** How long the server waits for an ack before redelivering; handlers extend it with `working()`. */
  readonly ackWaitMs: number;
  /** Deliveries before a message is given up (then dead-lettered by the bus). */
  readonly maxDeliver: number;
}

function consumer(durable: string, stream: StreamName, msgs: MessageDef[], ackWaitMs = 30_000, maxDeliver = 10): ConsumerDef {
  return Object.freeze({ durable, stream, filterSubjects: msgs.map((m) => m.subject), ackWaitMs, maxDeliver });
}

/** Every durable consumer, by the service that owns it. */
export const Consumers = {
  // Chunks take milliseconds and heartbeat while they run: a short ack wait lets a crashed curator's
  // in-flight failures come back in seconds, not half a minute.
  curator: consumer("curator", Streams.FAILURES, [Messages.failure], 5_000),
  /** Recorded successes into the agents' regression sets. */
  curatorSuccesses: consumer("curator-successes", Streams.SUCCESSES, [Messages.success]),
  rewriter: consumer("rewriter", Streams.PIPELINE, [Messages.batchReady, Messages.batchRetry]),
  replayer: consumer("replayer", Streams.PIPELINE, [Messages.candidateReady]),
  /** `moss replay`: the rewriter finds the version and makes sure its image is there (a build may take minutes). */
  rewriterVersions: consumer("rewriter-versions", Streams.PIPELINE, [Messages.timeTravel, Messages.bisect, Messages.review], 60_000, 3),
  /** The git note on every Moss commit: its candidate, replay, verdict and promotion, as each is published. */
  rewriterNotes: consumer("rewriter-notes", Streams.PIPELINE, [Messages.candidateReady, Messages.replayCompleted, Messages.batchVerdict, Messages.promotion, Messages.auditCheckpoint], 60_000, 5),
  /** `moss bisect`: each step's replay result, for the rewriter to pick the next version (or the answer). */
  rewriterBisect: consumer("rewriter-bisect", Streams.PIPELINE, [Messages.timeTravelDone], 60_000, 3),
  /** `moss replay`: the replayer replays the cases against the version's image. */
  replayerTimeTravel: consumer("replayer-time-travel", Streams.PIPELINE, [Messages.timeTravelReady], 60_000, 3),
  /** Shared by every replayer replica: each takes as many trials as it runs at once. */
  replayerTrials: consumer("replayer-trials", Streams.TRIALS, [Messages.replayTrial]),
  // A promoter that died mid-bake: its message comes back in seconds, to a replica that takes over once its lease ran out.
  promoter: consumer("promoter", Streams.PIPELINE, [Messages.replayCompleted, Messages.candidateFailed, Messages.approval, Messages.rollback, Messages.regression], 10_000),
  auditorFailures: Object.freeze({ durable: "auditor-failures", stream: Streams.FAILURES, filterSubjects: ["moss.failure.*"], ackWaitMs: 30_000, maxDeliver: 10 }),
  auditorPipeline: Object.freeze({ durable: "auditor-pipeline", stream: Streams.PIPELINE, filterSubjects: StreamDefs[1]!.subjects, ackWaitMs: 30_000, maxDeliver: 10 }),
  /** The operator's webhooks: verdicts, promotion outcomes and rollbacks, each delivered until its hooks answer. */
  auditorWebhooks: consumer("auditor-webhooks", Streams.PIPELINE, [Messages.batchVerdict, Messages.promotion, Messages.rollbackDone], 30_000, 12),
  auditorDlq: Object.freeze({ durable: "auditor-dlq", stream: Streams.DLQ, filterSubjects: ["moss.dlq.>"], ackWaitMs: 30_000, maxDeliver: 10 }),
} satisfies Record<string, ConsumerDef>;

/**
 * Durable consumers earlier versions created and nothing reads any more; provisioning deletes them, so they hold no
 * state on the server. (`curator-outcomes`: the curator counted circuit breakers; the promoter, who judges every
 * attempt, does now.)
 */
export const RetiredConsumers: ReadonlyArray<{ stream: StreamName; durable: string }> = Object.freeze([{ stream: Streams.PIPELINE, durable: "curator-outcomes" }]);

/** KV buckets. */
export const Buckets = {
  /** batchId → BatchRecord (CAS only). */
  batches: "moss_batches",
  /** `<agent>.<fingerprint-hash>` → batchId of the batch currently collecting for it. */
  openBatches: "moss_open_batches",
  /** agent → Deployment. */
  deployments: "moss_deployments",
  /** `agent.<name>` → the curator's state for that agent (open batches, applied stream sequences); CAS only. */
  curator: "moss_curator",
  /** `<agent>.<fingerprint key>` → FingerprintBreaker. */
  fingerprints: "moss_fingerprints",
  /** `<agent>.<fingerprint key>.<batch>.<attempt>` → RejectedCandidate. */
  candidates: "moss_candidates",
  /** `<service>` (a replica's `#` as `_`) → ServiceStatus, written by the `moss up` that supervises it. */
  services: "moss_services",
  /** `<batch>.<attempt>` → ReplayJoin: a candidate's trial results as replicas finish them (CAS only). */
  replays: "moss_replays",
  /** agent → RegressionSet: the recorded successes every candidate of the agent is replayed on (CAS only). */
  regressions: "moss_regressions",
  /** agent → Route: where the gateway sends the agent's traffic (written by the promoter and `moss deploy`; watched by every gateway). */
  routes: "moss_routes",
  /** `<agent>.<gateway id>` → GatewayStats: each gateway's live counters per version, rewritten every `gateway.statsIntervalMs`. */
  gatewayStats: "moss_gateway_stats",
  /** `promoter.<agent>` → Lease: the one promoter acting on an agent (CAS only). */
  leases: "moss_leases",
  /** request id → TimeTravelRecord: a `moss replay` as each stage leaves it (CAS only). */
  timeTravel: "moss_time_travel",
  /** bisect id → BisectRecord: a `moss bisect` as the rewriter leaves it after each step (CAS only). */
  bisects: "moss_bisects",
  /** agent → ReviewedBaseline: the last version a human reviewed (written by the rewriter on `moss mark-reviewed`). */
  reviewed: "moss_reviewed",
  /** request id → ReviewRecord: a `moss mark-reviewed` or `moss diff` and its answer (CAS only). */
  reviews: "moss_reviews",
  /** `checkpoint.<seq>` → a signed checkpoint of the audit log (the auditor's; kept apart from the log's own file). */
  audit: "moss_audit",
} as const;

/** Headers Moss sets on messages. */
export const Headers = {
  msgId: "Nats-Msg-Id",
  batchId: "Moss-Batch",
  /** Who published it: the process (`curator#2@host`); the auditor holds the claim to the grants before it records it. */
  from: "Moss-From",
  traceparent: "traceparent",
  tracestate: "tracestate",
} as const;

/** Every message definition, for schema export and the auditor. */
export const AllMessages: readonly MessageDef[] = Object.values(Messages);

/** The message definition a concrete subject belongs to. */
export function messageForSubject(subject: string): MessageDef | undefined {
  return AllMessages.find((m) => subjectMatches(m.subject, subject));
}

/** NATS subject matching (`*` one token, `>` the rest). */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== "*" && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}
