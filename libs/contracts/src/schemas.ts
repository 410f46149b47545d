import { z } from "zod";

/** Names: agents, batches and attempts appear in subjects and KV keys, so they are restricted to NATS-token-safe characters. */
export const AgentName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, "agent name: lowercase letters, digits, '-' or '_' (max 63), starting with a letter or digit");
export const Id = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, "id: letters, digits, '-' or '_' (max 128)");
export const Sha256 = z.string().regex(/^[a-f0-9]{64}$/, "sha256: 64 lowercase hex digits");
export const GitSha = z.string().regex(/^[a-f0-9]{7,64}$/, "git commit: hex sha");

/** A reference to a content-addressed blob (see @moss/blob). */
export const BlobRef = z.object({
  sha256: Sha256,
  size: z.number().int().nonnegative(),
  contentType: z.string().optional(),
});
export type BlobRef = z.infer<typeof BlobRef>;

/** The request that made the agent fail; replayed verbatim against candidates. */
export const HttpRequest = z.object({
  method: z.string().min(1).max(16).default("POST"),
  /** Path and query, e.g. `/v1/chat`. */
  path: z.string().startsWith("/"),
  headers: z.record(z.string(), z.string()).default({}),
  /** Body as UTF-8 text (JSON bodies are serialized). */
  body: z.string().max(1_000_000).optional(),
});
export type HttpRequest = z.infer<typeof HttpRequest>;

/**
 * What made a command (non-HTTP) agent fail: the arguments after its image's ENTRYPOINT (or its whole command, when
 * the image has none) and its stdin; replayed verbatim. Its answer is its exit code and stdout.
 */
export const Invocation = z.object({
  args: z.array(z.string().max(8_000)).max(256).default([]),
  stdin: z.string().max(1_000_000).optional(),
});
export type Invocation = z.infer<typeof Invocation>;

export const StackFrame = z.object({
  file: z.string().optional(),
  function: z.string().optional(),
  line: z.number().int().optional(),
});

export const ErrorInfo = z.object({
  type: z.string().min(1).max(200),
  message: z.string().max(10_000),
  stack: z.string().max(50_000).optional(),
  /** Parsed frames, top first; computed from `stack` when absent. */
  frames: z.array(StackFrame).max(200).optional(),
});
export type ErrorInfo = z.infer<typeof ErrorInfo>;

/** A path into a JSON value: `$` then `.key`, `[n]` or `["odd key"]` steps. */
export const JsonPath = z
  .string()
  .min(1)
  .max(500)
  .regex(/^\$(\.[A-Za-z_$][\w$-]*|\[\d+\]|\["(?:[^"\\]|\\.)*"\])*$/, 'a JSON path: $ then .key, [n] or ["key"] steps');

/**
 * One check of a JSON response: the value at `path` (`$.answer.total`, `$.items[0].id`, `$["odd key"]`) equals a JSON
 * value, matches a regular expression (strings; other values as their JSON text), exists, or is absent.
 */
export const JsonAssertion = z
  .object({
    path: JsonPath,
    equals: z.unknown().optional(),
    matches: z
      .string()
      .max(1_000)
      .refine((r) => {
        try {
          new RegExp(r);
          return true;
        } catch {
          return false;
        }
      }, "a JavaScript regular expression")
      .optional(),
    exists: z.literal(true).optional(),
    absent: z.literal(true).optional(),
  })
  .refine((a) => ["equals", "matches", "exists", "absent"].filter((k) => k in a && (a as Record<string, unknown>)[k] !== undefined).length === 1, "a JSON assertion needs exactly one of equals, matches, exists or absent");
export type JsonAssertion = z.infer<typeof JsonAssertion>;

/**
 * What a replay must answer to pass, as an event or a config states it; unset fields fall back (failure → agent config
 * → default: 2xx, no JSON checks). The grader command exists only in the Moss config, never on an event.
 */
export const Expectation = z.object({
  /** Acceptable status range, inclusive (a command agent: exit codes). Default 200-299. */
  statusMin: z.number().int().min(0).max(599).optional(),
  statusMax: z.number().int().min(0).max(599).optional(),
  /** Checks of the JSON response body, all of which must hold. */
  json: z.array(JsonAssertion).max(50).optional(),
});
export type Expectation = z.infer<typeof Expectation>;

/** A body as recorded: UTF-8 text, or base64 when it was not valid UTF-8. */
export const RecordedBody = z.object({ text: z.string(), base64: z.boolean().default(false), truncated: z.boolean().default(false) });
export type RecordedBody = z.infer<typeof RecordedBody>;

/** One outbound HTTP call a turn made (a model API, a tool), recorded by the SDK; served back in its replays. */
export const RecordedCall = z.object({
  method: z.string().min(1).max(16),
  url: z.string().max(8_000).regex(/^https?:\/\/\S+$/, "an absolute http(s) URL"),
  /** Request headers, secrets (`authorization`, `x-api-key`, cookies, …) replaced by `[redacted]`. */
  headers: z.record(z.string(), z.string()).default({}),
  body: RecordedBody.optional(),
  /** What came back; absent when the call failed without an answer (`error`). */
  response: z
    .object({
      status: z.number().int().min(100).max(599),
      headers: z.record(z.string(), z.string()).default({}),
      /** The whole body; a streamed (SSE) answer is the stream's text, served back as one. */
      body: RecordedBody,
    })
    .optional(),
  error: z.string().max(2_000).optional(),
});
export type RecordedCall = z.infer<typeof RecordedCall>;

/**
 * The outbound calls of one turn, in the order they were made. Stored with the failure or recorded success
 * (content-addressed in the blob store); `failureId` (the turn's id, a success's too) ties it to its turn, so a
 * cassette of another turn is refused at replay.
 */
export const Cassette = z.object({
  schema: z.literal("moss.cassette.v1").default("moss.cassette.v1"),
  failureId: Id,
  calls: z.array(RecordedCall).max(1_000),
  /** Calls past the SDK's limits were not recorded; their replays will diverge there. */
  truncated: z.boolean().default(false),
});
export type Cassette = z.infer<typeof Cassette>;

/** The turn a failure happened in, as `reporter.turn()` recorded it: its start and its random seed. */
export const TurnInfo = z.object({
  startedAt: z.string().datetime(),
  seed: z.number().int().min(0).max(2 ** 32 - 1),
});
export type TurnInfo = z.infer<typeof TurnInfo>;

/** A state directory snapshot (tar), by reference to the blob store or inline (base64, at most 1 MiB). */
const SnapshotField = (name: string) =>
  z
    .object({
      /**
       * The agent's state directory the tar was taken from (evidence only: a replay restores the snapshot into the
       * directory the agent's config names, `agents.<name>.stateDir`, never where an event says).
       */
      path: z.string().startsWith("/"),
      blob: BlobRef.optional(),
      inlineBase64: z.string().max(1_400_000).optional(),
    })
    .refine((s) => Boolean(s.blob) !== Boolean(s.inlineBase64), `${name} needs exactly one of \`blob\` or \`inlineBase64\``);

/** What an agent records of one turn, failed or not: what it was asked, how it ran, the state it started from. */
const TurnFields = {
  /** Unique per turn; also the JetStream dedup id. */
  id: Id,
  agent: AgentName,
  /** Git commit of the agent's source that ran the turn. */
  version: GitSha,
  occurredAt: z.string().datetime(),
  /** Route / intent the agent was serving; part of a failure's fingerprint, and what a regression set spreads over. */
  route: z.string().max(200).optional(),
  /** The HTTP request (an HTTP agent), or else `invocation` (a command agent): exactly one of the two. */
  request: HttpRequest.optional(),
  invocation: Invocation.optional(),
  /** The answer the agent gave, if any: an HTTP status and body, or a command's exit code (`status`) and stdout. */
  response: z.object({ status: z.number().int(), body: z.string().max(100_000).optional() }).optional(),
  logs: z.array(z.string().max(4_000)).max(200).default([]),
  /** Allow-listed environment the agent ran with; a replay takes only what `agents.<name>.replay.envAllow` names. */
  env: z.record(z.string(), z.string()).default({}),
  /** How long the request was allowed to take; replay timeout is 1.5x this. */
  timeoutMs: z.number().int().positive().max(600_000).default(10_000),
  /** State directory snapshot (tar), either by reference to the blob store or inline (base64, at most 1 MiB). */
  snapshot: SnapshotField("snapshot").optional(),
  /**
   * The turn's outbound calls: by reference to the blob store, or inline (the curator moves an inline one to the blob
   * store before the turn is batched or kept). Absent: the turn made none the SDK could see, or was not recorded.
   */
  cassette: z
    .object({ blob: BlobRef.optional(), inline: Cassette.optional() })
    .refine((c) => Boolean(c.blob) !== Boolean(c.inline), "cassette needs exactly one of `blob` or `inline`")
    .optional(),
  /** When the turn started and its seed (replays get them as MOSS_REPLAY_TIME and MOSS_REPLAY_SEED). */
  turn: TurnInfo.optional(),
  tags: z.record(z.string(), z.string()).default({}),
};
const oneInput = (what: string) => ({ message: `${what} needs exactly one of \`request\` (an HTTP agent) or \`invocation\` (a command agent)`, path: ["request"] });

/**
 * A failure event, published by an agent on `moss.failure.<agent>`.
 * JSON Schema: `npm run schemas` writes `libs/contracts/schemas/failure.v1.json`.
 */
export const FailureEvent = z
  .object({
    schema: z.literal("moss.failure.v1").default("moss.failure.v1"),
    ...TurnFields,
    error: ErrorInfo,
    /**
     * With `turn`, `snapshot` is the state before the turn (what a replay starts from) and this one the state the
     * failure left behind: evidence only, never restored.
     */
    afterSnapshot: SnapshotField("afterSnapshot").optional(),
    expect: Expectation.optional(),
    /** The agent's own fingerprint for this failure wins over Moss's. */
    fingerprint: z.string().max(200).optional(),
  })
  .refine((e) => Boolean(e.request) !== Boolean(e.invocation), oneInput("a failure"));
export type FailureEvent = z.infer<typeof FailureEvent>;

/** What a failure was asked, in one line: `POST /v1/chat` for an HTTP agent, `run summarize notes.txt` for a command. */
export function describeInput(ev: { request?: { method?: string; path: string }; invocation?: { args?: readonly string[] } }): string {
  if (ev.request) return `${ev.request.method ?? "POST"} ${ev.request.path}`;
  return `run ${(ev.invocation?.args ?? []).map((a) => (/^[\w./:=@,+-]+$/.test(a) ? a : JSON.stringify(a))).join(" ")}`.trimEnd();
}
export type FailureEventInput = z.input<typeof FailureEvent>;

/**
 * A turn that went well, sampled by an agent's SDK (`sampleRate`, a cap per route) on `moss.success.<agent>`: its
 * request, its answer, its before-turn state and its cassette. The curator keeps a bounded, diverse set of them per
 * agent, and every candidate replays some: one that changes a recorded success's outcome is rejected.
 */
export const SuccessEvent = z
  .object({
    schema: z.literal("moss.success.v1").default("moss.success.v1"),
    ...TurnFields,
    /** What the turn answered: the outcome a candidate must keep. */
    response: z.object({ status: z.number().int(), body: z.string().max(100_000).optional() }),
  })
  .refine((e) => Boolean(e.request) !== Boolean(e.invocation), oneInput("a success"));
export type SuccessEvent = z.infer<typeof SuccessEvent>;
export type SuccessEventInput = z.input<typeof SuccessEvent>;

/**
 * One recorded success in an agent's regression set: where its event is, what it was asked and answered, and whether
 * an operator pinned it (a pinned case is never evicted and always replayed).
 */
export const RegressionCase = z.object({
  id: Id,
  /** The route / intent it served (the event's `route`, else its method and path, or its command's first argument). */
  route: z.string().max(200),
  /** What it was asked, in one line: `POST /v1/chat {"message":"what is 2 + 3"}` (the body cut short). */
  input: z.string().max(300),
  /** Identifies the same question asked again (route and request): a newer recording replaces the older one. */
  key: z.string().max(64),
  status: z.number().int(),
  version: GitSha,
  occurredAt: z.string().datetime(),
  event: BlobRef,
  pinned: z.object({ by: z.string().min(1).max(200), at: z.string().datetime() }).optional(),
});
export type RegressionCase = z.infer<typeof RegressionCase>;

/** An agent's regression set, in the `moss_regressions` KV bucket (key: the agent); changed by compare-and-set only. */
export const RegressionSet = z.object({
  agent: AgentName,
  cases: z.array(RegressionCase).max(1_000),
  /** Recorded successes seen, kept or not. */
  seen: z.number().int().nonnegative().default(0),
  updatedAt: z.string().datetime(),
});
export type RegressionSet = z.infer<typeof RegressionSet>;

/** A failure as a batch holds it: its id and where its full event is stored. */
export const FailureRef = z.object({ id: Id, event: BlobRef });
export type FailureRef = z.infer<typeof FailureRef>;

/** W3C trace context carried by records that outlive a single message (the batch's root span). */
export const TraceCarrier = z.record(z.string(), z.string());

/** How a trial answered one outbound call of the agent: from the cassette, or not at all. */
export const ReplayedCall = z.object({
  method: z.string(),
  url: z.string(),
  /**
   * `matched`: answered from the cassette (its call `index`); `forwarded`: not recorded, sent to an allow-listed
   * sandbox URL (`agents.<name>.replay.forward`) and answered by it; `unmatched`: not recorded, answered with an error.
   */
  outcome: z.enum(["matched", "forwarded", "unmatched"]),
  index: z.number().int().nonnegative().optional(),
});
export type ReplayedCall = z.infer<typeof ReplayedCall>;

/** What a replay of one failure came to: `flaky` is some of its trials passing and some not, never a pass. */
export const ReplayVerdict = z.enum(["pass", "fail", "flaky", "diverged", "timeout", "error"]);
export type ReplayVerdict = z.infer<typeof ReplayVerdict>;

/** The check that decided a verdict that is not a pass, with what it expected and what the trial gave. */
export const FailedCheck = z.object({
  /** `status`, `json`, `grader`, `reported`, `exit`, `answer`, `timeout`, `diverged`, `trial`. */
  check: z.string(),
  /** For a JSON assertion: its path. */
  path: z.string().optional(),
  expected: z.string(),
  actual: z.string(),
});
export type FailedCheck = z.infer<typeof FailedCheck>;

export const ReplayResult = z.object({
  failureId: Id,
  passed: z.boolean(),
  /** What the replay came to (absent on results of replayers before verdicts had names: then `passed` tells). */
  verdict: ReplayVerdict.optional(),
  /** Which check failed, when one did. */
  failed: FailedCheck.optional(),
  /** Of several trials of the failure, how many passed. */
  trials: z.object({ passed: z.number().int().nonnegative(), of: z.number().int().positive() }).optional(),
  /** The candidate made a call the failure's cassette does not hold: `unrecorded call POST https://…`. Never a pass. */
  diverged: z.string().optional(),
  /** Every outbound call the agent made in the trial, in order. */
  calls: z.array(ReplayedCall).optional(),
  /** Why it passed or failed, in words. */
  reason: z.string(),
  status: z.number().int().optional(),
  body: z.string().optional(),
  durationMs: z.number().nonnegative(),
  timedOut: z.boolean().default(false),
  logs: BlobRef.optional(),
});
export type ReplayResult = z.infer<typeof ReplayResult>;

/** What a candidate changed of a recorded success's outcome: its status class, or its answer at a meaningful path. */
export const RegressionChange = z.object({
  /** `status` (class), `json` (the value at `path`), `answer` (none, or not JSON where JSON was recorded), `reported` (the agent reported a failure). */
  check: z.enum(["status", "json", "answer", "reported"]),
  path: z.string().optional(),
  before: z.string(),
  after: z.string(),
});
export type RegressionChange = z.infer<typeof RegressionChange>;

/**
 * A recorded success replayed against a candidate (`failureId` is the success's id): `pass` when its outcome is
 * unchanged, `fail` with the changes when not; `diverged`, `timeout` and `error` as for failures.
 */
export const RegressionResult = ReplayResult.extend({
  route: z.string(),
  input: z.string(),
  /** What the recorded turn answered. */
  recorded: z.object({ status: z.number().int(), body: z.string().optional() }),
  changes: z.array(RegressionChange).default([]),
});
export type RegressionResult = z.infer<typeof RegressionResult>;

/** Recorded successes whose outcome the candidate changed (an `error` case says nothing about the candidate). */
export function regressed(regressions: readonly RegressionResult[] | undefined): RegressionResult[] {
  return (regressions ?? []).filter((r) => !r.passed && r.verdict !== "error");
}

/** A regression, in one line: `POST /v1/chat (calculator): $.tool "calculator" → "echo"`. */
export function describeRegression(r: RegressionResult): string {
  const what = r.changes.length
    ? r.changes.map((c) => `${c.check === "json" ? c.path : c.check} ${c.before} → ${c.after}`).join(", ")
    : r.reason;
  return `${r.input} (${r.route}): ${what}`;
}

/**
 * A replay that did not pass, in one verdict: `replay-error` when a trial could not run at all (it says nothing about
 * the candidate; the reason says what to do), `replay-flaky` when some trials of a failure passed and some did not,
 * `replay-regressed` when every failure passes but a recorded success changed, else `replay-failed`.
 */
export function replayVerdict(msg: { results: readonly ReplayResult[]; regressions?: readonly RegressionResult[] }): { verdict: string; reason: string } {
  const failed = msg.results.filter((r) => !r.passed);
  const error = failed.find((r) => r.verdict === "error");
  if (error) return { verdict: "replay-error", reason: `the replay could not run for ${failed.filter((r) => r.verdict === "error").length} of ${msg.results.length} failure(s): ${error.reason}` };
  const flaky = failed.filter((r) => r.verdict === "flaky");
  const first = failed[0];
  if (!first) {
    const changed = regressed(msg.regressions);
    if (changed.length) {
      return { verdict: "replay-regressed", reason: `all ${msg.results.length} failure(s) pass, but the candidate changes ${changed.length} of ${msg.regressions!.length} recorded success(es): ${describeRegression(changed[0]!)}` };
    }
    return { verdict: "replay-passed", reason: `all ${msg.results.length} failure(s) pass in replay${msg.regressions?.length ? `, and ${msg.regressions.length} recorded success(es) are unchanged` : ""}` };
  }
  if (flaky.length === failed.length) return { verdict: "replay-flaky", reason: `${flaky.length} of ${msg.results.length} failure(s) are flaky in replay (a fix must pass every trial): ${first.reason}` };
  return { verdict: "replay-failed", reason: `${failed.length} of ${msg.results.length} failure(s) still fail in replay: ${first.reason}` };
}

/** What one earlier attempt did and how its replay went; fed to the next attempt. */
export const AttemptEvidence = z.object({
  attempt: z.number().int().positive(),
  commit: GitSha.optional(),
  diff: BlobRef.optional(),
  verdict: z.string(),
  reason: z.string(),
  results: z.array(ReplayResult).default([]),
  /** The recorded successes it was replayed on, changed or not (absent: none were, or an older promoter wrote it). */
  regressions: z.array(RegressionResult).optional(),
});
export type AttemptEvidence = z.infer<typeof AttemptEvidence>;

/** Short hash of a fingerprint (20 hex digits, or `overflow`): the key of its circuit breaker and rejected candidates. */
export const FingerprintKey = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "fingerprint key: letters, digits, '-' or '_' (max 64)");

const BatchBase = {
  batchId: Id,
  agent: AgentName,
  fingerprint: z.string(),
  /** The fingerprint's key, so that every stage of the batch addresses its breaker and candidates without a lookup. */
  fingerprintKey: FingerprintKey,
  /** Agent version (git commit) the batch's failures happened on; rewrites start from it. */
  baseVersion: GitSha,
  failures: z.array(FailureRef).min(1),
  /** Total failures seen for this fingerprint while the batch collected (samples are `failures`). */
  count: z.number().int().positive(),
};

export const BatchReady = z.object({ ...BatchBase, attempt: z.literal(1).default(1) });
export type BatchReady = z.infer<typeof BatchReady>;

export const BatchRetry = z.object({ ...BatchBase, attempt: z.number().int().min(2), previous: z.array(AttemptEvidence).min(1) });
export type BatchRetry = z.infer<typeof BatchRetry>;

/** The rewriter's stages, in the order an attempt runs them. Only `implement` may change files. */
export const StageName = z.enum(["locate", "plan", "plan-review", "implement", "code-review"]);
export type StageName = z.infer<typeof StageName>;

/** One stage of an attempt (locate, plan, plan review, implement, code review): what it said and how it ended. */
export const StageRecord = z.object({
  stage: StageName,
  /** 1 for the first round of a stage that can repeat (plan / review rounds). */
  round: z.number().int().positive(),
  /** success | failure | no-change | timeout | approve | reject | skipped */
  verdict: z.string(),
  reason: z.string(),
  /** The stage's answer text (diagnosis, plan, review) and the tool's captured output. */
  output: BlobRef.optional(),
  log: BlobRef.optional(),
  durationMs: z.number().nonnegative(),
});
export type StageRecord = z.infer<typeof StageRecord>;

const AttemptBase = {
  ...BatchBase,
  attempt: z.number().int().positive(),
  previous: z.array(AttemptEvidence).default([]),
  /** The stages this attempt ran, in order. */
  stages: z.array(StageRecord).default([]),
  /** Replays per failure the depth tier asks for (a flaky pass does not count). */
  trialsPerFailure: z.number().int().min(1).max(10).default(1),
};

export const CandidateReady = z.object({
  ...AttemptBase,
  commit: GitSha,
  branch: z.string(),
  image: z.string(),
  /** The image's id (`sha256:...`): the tag may move, the id may not. */
  imageId: z.string().optional(),
  diff: BlobRef,
  agentOutput: BlobRef.optional(),
  buildLog: BlobRef.optional(),
  filesChanged: z.array(z.string()),
  /** Coding agent and its version, as recorded in the commit trailers. */
  codingAgent: z.string().default("command"),
  /** Whether the commit is signed (the promoter verifies it against the allowed signers). */
  signed: z.boolean().default(false),
});
export type CandidateReady = z.infer<typeof CandidateReady>;

export const CandidateFailed = z.object({
  ...AttemptBase,
  /** Why there is no candidate: the coding agent failed / timed out / changed nothing, a guardrail refused its change, a plan or code review never approved, or the image did not build. */
  verdict: z.enum(["no-change", "agent-failed", "agent-timeout", "guardrail", "plan-rejected", "review-rejected", "build-failed", "error"]),
  reason: z.string(),
  commit: GitSha.optional(),
  diff: BlobRef.optional(),
  agentOutput: BlobRef.optional(),
  buildLog: BlobRef.optional(),
});
export type CandidateFailed = z.infer<typeof CandidateFailed>;

export const ReplayCompleted = z.object({
  ...AttemptBase,
  commit: GitSha,
  image: z.string(),
  diff: BlobRef,
  /** Every failure passes and no recorded success changed. */
  passed: z.boolean(),
  results: z.array(ReplayResult).min(1),
  /** The agent's recorded successes replayed against the candidate (its regression set, or K of it). */
  regressions: z.array(RegressionResult).default([]),
});
export type ReplayCompleted = z.infer<typeof ReplayCompleted>;

/**
 * One trial of one failure of a candidate, on the replayers' work queue: whichever replica is free takes it, so
 * replicas split a batch's trials. The candidate (with the failures' events) is in the blob store, not copied in.
 */
export const ReplayTrial = z.object({
  batchId: Id,
  agent: AgentName,
  attempt: z.number().int().positive(),
  /** The `candidate.ready` message, as JSON in the blob store. */
  candidate: BlobRef,
  /** The failure (or, for a `regression` trial, the recorded success) to replay. */
  failureId: Id,
  /** A failure of the batch, or a recorded success of the agent's regression set (listed in the join record). */
  kind: z.enum(["failure", "regression"]).default("failure"),
  /** Which trial of this failure (1-based), of how many. */
  trial: z.number().int().min(1),
  of: z.number().int().min(1).max(10),
});
export type ReplayTrial = z.infer<typeof ReplayTrial>;

/** A candidate's replay as its trials finish: results joined by `<failure>.<trial>`, complete at `expected`. */
export const ReplayJoin = z.object({
  batchId: Id,
  attempt: z.number().int().positive(),
  expected: z.number().int().positive(),
  results: z.record(z.string(), ReplayResult),
  /** The recorded successes this candidate is replayed on, chosen when its replay was queued. */
  cases: z.array(RegressionCase).default([]),
  /** Their results, by case id. */
  regressions: z.record(z.string(), RegressionResult).default({}),
  /** Set by the replica whose result completed the join: it publishes `replay.completed`. */
  completedAt: z.string().optional(),
});
export type ReplayJoin = z.infer<typeof ReplayJoin>;

export const BatchVerdict = z.object({
  batchId: Id,
  agent: AgentName,
  attempt: z.number().int().positive(),
  commit: GitSha.optional(),
  image: z.string().optional(),
  /** awaiting-approval | exhausted | rejected */
  verdict: z.enum(["awaiting-approval", "exhausted", "rejected", "needs-human", "queued"]),
  reason: z.string(),
});
export type BatchVerdict = z.infer<typeof BatchVerdict>;

export const Approval = z.object({
  batchId: Id,
  decision: z.enum(["approve", "reject"]),
  by: z.string().min(1).max(200),
  reason: z.string().max(2_000).default(""),
});
export type Approval = z.infer<typeof Approval>;

/** An operator asks to put an agent back on an earlier version (`moss rollback`); it needs no consent. */
export const RollbackRequest = z.object({
  id: Id,
  agent: AgentName,
  /** A version (a commit, or a prefix of one) the agent served before; default: the one before the live one. */
  to: z.string().regex(/^[a-f0-9]{7,64}$/, "a commit sha or a prefix of one (7+ hex digits)").optional(),
  by: z.string().min(1).max(200),
  reason: z.string().max(2_000).default(""),
  /** When it was asked: a request older than the agent's last deployment is stale and does nothing. */
  at: z.string().datetime(),
});
export type RollbackRequest = z.infer<typeof RollbackRequest>;

/** What the promoter did with a rollback request. */
export const RollbackDone = z.object({
  requestId: Id,
  agent: AgentName,
  outcome: z.enum(["rolled-back", "refused"]),
  from: z.object({ version: GitSha, image: z.string() }).optional(),
  to: z.object({ version: GitSha, image: z.string() }).optional(),
  by: z.string(),
  reason: z.string(),
});
export type RollbackDone = z.infer<typeof RollbackDone>;

/**
 * A version of an agent as an operator names it: a commit (or a prefix of one), a tag or a branch of its repository
 * (`moss/<batch>/<attempt>` is each attempt's), `live`, or `last-good` (the newest last-known-good version).
 */
export const VersionRef = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._/@^~-]*$/, "a commit, tag or branch (letters, digits, . _ / @ ^ ~ -), `live` or `last-good`");

/** One stored turn to replay against a version: a failure (judged like a candidate's) or a recorded success (compared with its recording). */
export const TimeTravelCase = z.object({
  kind: z.enum(["failure", "regression"]),
  id: Id,
  event: BlobRef,
  /** The batch the failure was batched in. */
  batchId: Id.optional(),
});
export type TimeTravelCase = z.infer<typeof TimeTravelCase>;

/** `moss replay`: stored turns to replay against a version of an agent (operator API only). */
export const TimeTravelRequest = z.object({
  id: Id,
  agent: AgentName,
  version: VersionRef,
  cases: z.array(TimeTravelCase).min(1).max(200),
  by: z.string().min(1).max(200),
  at: z.string().datetime(),
});
export type TimeTravelRequest = z.infer<typeof TimeTravelRequest>;

/** The version found and its image ready (the rewriter: built, or reused from the engine's cache). */
export const TimeTravelReady = TimeTravelRequest.extend({
  commit: GitSha,
  image: z.string(),
  /** false: the image of that commit was on the engine already. */
  built: z.boolean(),
  buildMs: z.number().int().nonnegative(),
});
export type TimeTravelReady = z.infer<typeof TimeTravelReady>;

/** What a time-travel replay found: every case's result, or why it could not run. */
export const TimeTravelDone = z.object({
  requestId: Id,
  agent: AgentName,
  version: VersionRef,
  commit: GitSha.optional(),
  image: z.string().optional(),
  built: z.boolean().optional(),
  /** Why nothing was replayed (an unknown version, a build that failed), with what to do. */
  error: z.string().max(4_000).optional(),
  results: z.array(ReplayResult).default([]),
  regressions: z.array(RegressionResult).default([]),
  at: z.string().datetime(),
});
export type TimeTravelDone = z.infer<typeof TimeTravelDone>;

/** A time-travel replay as the operator API shows it (`moss_time_travel`, key: the request id), written by each stage. */
export const TimeTravelRecord = TimeTravelRequest.extend({
  state: z.enum(["requested", "building", "replaying", "done", "failed"]),
  commit: GitSha.optional(),
  image: z.string().optional(),
  built: z.boolean().optional(),
  buildMs: z.number().int().nonnegative().optional(),
  error: z.string().optional(),
  results: z.array(ReplayResult).default([]),
  regressions: z.array(RegressionResult).default([]),
  updatedAt: z.string().datetime(),
});
export type TimeTravelRecord = z.infer<typeof TimeTravelRecord>;

/** `moss bisect`: one stored failure, and the two ends of a line of versions (operator API only). */
export const BisectRequest = z.object({
  id: Id,
  agent: AgentName,
  failure: TimeTravelCase,
  /** The older end: the failure does not happen there (with `fixed`: it does). */
  good: VersionRef,
  /** The newer end: the failure happens there (with `fixed`: it does not). */
  bad: VersionRef,
  /** Find where the failure stops happening instead of where it starts. */
  fixed: z.boolean().default(false),
  by: z.string().min(1).max(200),
  at: z.string().datetime(),
});
export type BisectRequest = z.infer<typeof BisectRequest>;

/** One replay of a bisect: a version tried, and what the failure did there. */
export const BisectStep = z.object({
  n: z.number().int().positive(),
  commit: GitSha,
  subject: z.string().max(500),
  /** The time-travel request of this step (`moss replay --id`). */
  replay: Id,
  /** Whether the failure happened there; absent while the step runs. */
  failed: z.boolean().optional(),
  verdict: ReplayVerdict.optional(),
  reason: z.string().max(2_000).optional(),
  built: z.boolean().optional(),
});
export type BisectStep = z.infer<typeof BisectStep>;

/** A bisect as the operator API shows it (`moss_bisects`, key: its id), written by the rewriter, which runs it. */
export const BisectRecord = BisectRequest.extend({
  fixed: z.boolean(),
  state: z.enum(["requested", "bisecting", "done", "failed"]),
  goodCommit: GitSha.optional(),
  badCommit: GitSha.optional(),
  /** The versions after `good` up to `bad`, oldest first (first-parent line). */
  commits: z.array(GitSha).max(5_000).default([]),
  /** Index of the newest version known to behave like `good` (-1: good itself) and of the oldest known to behave like `bad`. */
  lo: z.number().int().default(-1),
  hi: z.number().int().default(0),
  steps: z.array(BisectStep).default([]),
  /** The answer: the first version that behaves like `bad`. */
  first: z.object({ commit: GitSha, subject: z.string(), author: z.string(), date: z.string() }).optional(),
  error: z.string().optional(),
  updatedAt: z.string().datetime(),
});
export type BisectRecord = z.infer<typeof BisectRecord>;

/** Asks for the repository's view of an agent (operator API only): record a reviewed baseline, or diff a version against it. */
export const ReviewKind = z.enum(["mark-reviewed", "diff", "reconcile"]);
export const ReviewRequest = z.object({
  id: Id,
  kind: ReviewKind,
  agent: AgentName,
  /** mark-reviewed: the version a human reviewed; diff: the version to compare with the baseline (default `live`); reconcile: the Moss line to bring into main (default `live`). */
  version: VersionRef,
  by: z.string().min(1).max(200),
  at: z.string().datetime(),
});
export type ReviewRequest = z.infer<typeof ReviewRequest>;

/** The last version of an agent a human reviewed (`moss_reviewed`, key: the agent), tagged `moss/reviewed/<agent>` in its repository. */
export const ReviewedBaseline = z.object({ agent: AgentName, commit: GitSha, by: z.string(), at: z.string().datetime(), tag: z.string() });
export type ReviewedBaseline = z.infer<typeof ReviewedBaseline>;

const SymbolChange = z.object({ name: z.string().max(500), kind: z.enum(["function", "class", "method", "value"]), change: z.enum(["added", "removed", "changed"]), areas: z.array(z.string()) });

/** A commit as a review lists it: a Moss one with its batch, attempt and the batch's state now; a human one without. */
const CommitRow = z.object({ commit: GitSha, subject: z.string(), author: z.string(), date: z.string(), batchId: Id.optional(), attempt: z.number().int().positive().optional(), verdict: z.string().optional() });

/** `moss diff`: a version against the reviewed baseline — the commits in between, the files, the units by name, the flagged areas. */
export const ReviewDiff = z.object({
  baseline: ReviewedBaseline,
  version: VersionRef,
  commit: GitSha,
  /** Whether the baseline is an ancestor of the version (else the commits are those of the version since their merge base). */
  descends: z.boolean(),
  /** A Moss commit has its batch and attempt (its trailers) and the batch's state now; a human one has none. */
  commits: z.array(CommitRow),
  files: z.array(
    z.object({
      path: z.string(),
      status: z.enum(["added", "removed", "changed"]),
      areas: z.array(z.string()),
      symbols: z.array(SymbolChange).optional(),
      note: z.string().optional(),
    }),
  ),
  /** Changes per flagged area (a file in an area counts once, plus each unit in one). */
  flagged: z.record(z.string(), z.number().int()),
  /** Files or units left out to keep the answer whole (at most 300 files, 200 units a file). */
  truncated: z.boolean().default(false),
});
export type ReviewDiff = z.infer<typeof ReviewDiff>;

/** `moss reconcile`: the agent's live Moss line against its human-maintained main branch. */
export const ReviewReconcile = z.object({
  main: z.object({ branch: z.string(), commit: GitSha }),
  live: GitSha,
  /** The commits of the live line that main does not have (Moss's have their batch). */
  commits: z.array(CommitRow),
  /** Whether main takes them without a conflict (nothing to bring in counts as clean). */
  clean: z.boolean(),
  /** Clean: the branch prepared off main that brings them in (a merge of the live line), for a person to merge. */
  branch: z.string().optional(),
  branchCommit: GitSha.optional(),
  /** Clean: the text of the merge request. */
  mergeRequest: z.string().optional(),
  /** Not clean: each conflicting file with the live-line and main commits that touch it. Nothing was changed. */
  conflicts: z.array(z.object({ path: z.string(), live: z.array(GitSha), main: z.array(GitSha) })).default([]),
  /** Human commits on main since the reviewed baseline that touch a file Moss changed since then. */
  flagged: z.array(z.object({ commit: GitSha, subject: z.string(), author: z.string(), files: z.array(z.string()) })).default([]),
});
export type ReviewReconcile = z.infer<typeof ReviewReconcile>;

/** A review request as each stage leaves it (`moss_reviews`, key: its id), written by the rewriter, which has the repository. */
export const ReviewRecord = ReviewRequest.extend({
  state: z.enum(["requested", "done", "failed"]),
  reviewed: ReviewedBaseline.optional(),
  diff: ReviewDiff.optional(),
  reconcile: ReviewReconcile.optional(),
  error: z.string().optional(),
  updatedAt: z.string().datetime(),
});
export type ReviewRecord = z.infer<typeof ReviewRecord>;

/** What a review request came to, for the audit trail. */
export const ReviewDone = z.object({
  requestId: Id,
  kind: ReviewKind,
  agent: AgentName,
  version: VersionRef,
  commit: GitSha.optional(),
  by: z.string(),
  error: z.string().optional(),
  summary: z.string().max(2_000),
  at: z.string().datetime(),
});
export type ReviewDone = z.infer<typeof ReviewDone>;

export const PromotionOutcome = z.object({
  batchId: Id,
  agent: AgentName,
  attempt: z.number().int().positive(),
  commit: GitSha,
  image: z.string(),
  previousImage: z.string().optional(),
  outcome: z.enum(["promoted", "rolled-back", "failed"]),
  reason: z.string(),
  probes: z.object({ ok: z.number().int(), failed: z.number().int() }),
  approvedBy: z.string(),
  /** Behind the gateway: the live traffic the decision saw — the candidate's during the bake, the previous version's before the swap. */
  live: z
    .object({
      candidate: z.object({ requests: z.number().int().nonnegative(), errorRate: z.number().min(0).max(1), p95Ms: z.number().nonnegative().optional() }),
      previous: z.object({ requests: z.number().int().nonnegative(), errorRate: z.number().min(0).max(1), p95Ms: z.number().nonnegative().optional() }).optional(),
      /** The check that decided a rollback, in words with its numbers. */
      check: z.string().optional(),
    })
    .optional(),
});
export type PromotionOutcome = z.infer<typeof PromotionOutcome>;

/**
 * The promoter's journal of a promotion, on the batch record: who approved it (the first approval's, also when a
 * later delivery resumes it), then the decision it took after the bake, written before anything acts on it, so a
 * delivery that resumes after a crash finishes that decision — the same outcome, no second bake that could decide
 * otherwise, no second swap, no second rollback.
 */
export const PromotionJournal = z.object({
  approvedBy: z.string().min(1),
  /** The agent's state directory as it was before the swap (`agents.<name>.rollbackState: "restore"`), put back on a rollback. */
  stateBefore: BlobRef.optional(),
  /** The batch's fingerprint failed again on the candidate while it baked (the curator's `moss.regression.v1`). */
  recurrence: z.object({ failureId: Id, at: z.string().datetime() }).optional(),
  /** An operator rejected the batch while its candidate baked: the bake ends at its next probe, in a rollback. */
  rejected: z.object({ by: z.string().min(1).max(200), reason: z.string().max(2_000), at: z.string().datetime() }).optional(),
  decision: z
    .object({
      /** The outcome to publish; for a rollback, what the rollback restored is prefixed to its reason. */
      outcome: PromotionOutcome,
      /** The live container after the swap, and the kept previous one, for the deployment record. */
      container: z.string(),
      previousContainer: z.string().optional(),
      /** Behind the gateway: the version the route goes back to on a rollback. */
      previousVersion: GitSha.optional(),
    })
    .optional(),
});
export type PromotionJournal = z.infer<typeof PromotionJournal>;

/** Copy of a message that was terminated: what it was, where it came from, and why. */
export const DeadLetter = z.object({
  subject: z.string(),
  stream: z.string(),
  consumer: z.string(),
  streamSeq: z.number().int(),
  reason: z.string(),
  code: z.string(),
  /**
   * The original payload, base64 (it may not be valid UTF-8 or JSON); only its first DEAD_LETTER_MAX_COPY bytes when it
   * is larger (`truncated`): the whole message stays in its stream, at `streamSeq`.
   */
  payloadBase64: z.string(),
  /** Size of the original payload, bytes. */
  size: z.number().int().nonnegative().optional(),
  /** The copy holds only a prefix of the payload (see `size`). */
  truncated: z.boolean().default(false),
  headers: z.record(z.string(), z.array(z.string())).default({}),
  at: z.string().datetime(),
});
export type DeadLetter = z.infer<typeof DeadLetter>;

/**
 * Most payload bytes a dead letter copies: a message near the NATS max payload, base64-encoded inside an envelope,
 * would not fit in one message, and could then never be dead-lettered.
 */
export const DEAD_LETTER_MAX_COPY = 256 * 1024;

/**
 * Where a batch stands, in the `moss_batches` KV bucket. The state machine (which state may follow which, which ones
 * are final) is @moss/batch's; the record moves only by compare-and-set.
 */
export const BatchState = z.enum([
  "collecting",
  /** Closed, waiting for the agent's rewrite rate limit. */
  "queued",
  /** Its fingerprint's circuit breaker is open: an operator must look first (`moss reset`); failures of it attach here. */
  "needs-human",
  "ready",
  "rewriting",
  "candidate",
  "replaying",
  "awaiting-approval",
  "promoting",
  "promoted",
  "rolled-back",
  "rejected",
  "exhausted",
  /** An operator reset the breaker of a batch that needed a human: it ends, and the next failure opens a new batch. */
  "released",
]);
export type BatchState = z.infer<typeof BatchState>;

export const BatchRecord = z.object({
  batchId: Id,
  agent: AgentName,
  fingerprint: z.string(),
  baseVersion: GitSha,
  state: BatchState,
  failures: z.array(FailureRef),
  count: z.number().int().nonnegative(),
  /** Failures of the same fingerprint that arrived while this batch was already in the pipeline. */
  attached: z.number().int().nonnegative().default(0),
  /** Grouping algorithm (and rules) that produced the fingerprint. */
  fingerprintVersion: z.string().default("fp1"),
  /** Short hash of the fingerprint: the key of its circuit breaker (absent on records of curators that had none). */
  fingerprintKey: FingerprintKey.optional(),
  openedAt: z.string().datetime(),
  deadline: z.string().datetime(),
  closedAt: z.string().datetime().optional(),
  /** The batch root span's context; late stages join the same trace through it. */
  trace: TraceCarrier.default({}),
  attempt: z.number().int().nonnegative().default(0),
  /** The candidate that passed replay, once there is one; what `moss approve` promotes. */
  candidate: z.object({ attempt: z.number().int().positive(), commit: GitSha, image: z.string(), imageId: z.string().optional(), diff: BlobRef }).optional(),
  /**
   * What the rewriter built for the current attempt: the signed commit and the image (its id, `sha256:...`), written by
   * the rewriter itself. The promoter promotes only this, whatever a message names.
   */
  built: z.object({ attempt: z.number().int().positive(), commit: GitSha, image: z.string(), imageId: z.string(), diff: BlobRef }).optional(),
  /** Why the batch ended where it did. */
  reason: z.string().optional(),
  /**
   * The rewriter's journal of an attempt that produced no candidate: its candidate.failed message (a JSON blob),
   * written before it is published, so a redelivery republishes the verdict instead of running the coding agent again.
   */
  failedAttempt: z.object({ attempt: z.number().int().positive(), message: BlobRef }).optional(),
  /** The promotion of the candidate, once consent was given: who gave it, and the promoter's journal. */
  promotion: PromotionJournal.optional(),
  updatedAt: z.string().datetime(),
});
export type BatchRecord = z.infer<typeof BatchRecord>;

/** A failure whose fingerprint a promoted batch fixed came back on the promoted version. */
export const Regression = z.object({
  agent: AgentName,
  fingerprint: z.string(),
  /** The promoted batch that was supposed to fix it. */
  batchId: Id,
  /** The promoted commit the failure happened on. */
  version: GitSha,
  failureId: Id,
  at: z.string().datetime(),
});
export type Regression = z.infer<typeof Regression>;

/** Circuit breaker of one fingerprint, in the `moss_fingerprints` KV bucket (key `<agent>.<fingerprint key>`). */
export const FingerprintBreaker = z.object({
  agent: AgentName,
  fingerprint: z.string(),
  /** Rejected candidates in a row (replay failed, no candidate, operator reject, rollback). */
  consecutiveRejections: z.number().int().nonnegative(),
  needsHuman: z.boolean(),
  /** `<batch>:<attempt>:<kind>` already counted: outcome messages may be redelivered. */
  counted: z.array(z.string()).max(100).default([]),
  updatedAt: z.string().datetime(),
  resetBy: z.string().optional(),
});
export type FingerprintBreaker = z.infer<typeof FingerprintBreaker>;

/**
 * The auditor checkpointed its log's chain head (`data`: the checkpoint's JSON exactly as signed; `signature`: its SSH
 * signature, absent without a signing key). The rewriter keeps it as a git note (`refs/notes/moss-audit`) in every
 * agent repository: one more copy outside the log, in a history a mirror would show rewritten.
 */
export const AuditCheckpointed = z.object({
  seq: z.number().int().positive(),
  data: z.string().min(2).max(4_000),
  signature: z.string().max(4_000).optional(),
});
export type AuditCheckpointed = z.infer<typeof AuditCheckpointed>;

/** An operator pinned, unpinned or dropped a recorded success of an agent's regression set: for the audit log. */
export const RegressionCaseChanged = z.object({
  agent: AgentName,
  caseId: Id,
  action: z.enum(["pinned", "unpinned", "dropped"]),
  by: z.string().min(1).max(200),
  at: z.string().datetime(),
});
export type RegressionCaseChanged = z.infer<typeof RegressionCaseChanged>;

/** An operator closed a fingerprint's circuit breaker (`moss reset`): the decision goes to the audit log. */
export const BreakerReset = z.object({
  agent: AgentName,
  fingerprint: z.string(),
  /** The breaker's key in `moss_fingerprints`: `<agent>.<fingerprint key>`. */
  breaker: z.string().min(1),
  /** The batch the operator named, when reset by batch; the audit log files the reset under it. */
  batchId: Id.optional(),
  by: z.string().min(1).max(200),
  /** The breaker as it was before the reset. */
  was: z.object({ consecutiveRejections: z.number().int().nonnegative(), needsHuman: z.boolean() }),
  /** The batches of this fingerprint that waited for a human and ended with the reset (`released`). */
  released: z.array(Id).default([]),
  at: z.string().datetime(),
});
export type BreakerReset = z.infer<typeof BreakerReset>;

/**
 * A candidate that was not promoted, kept (its branch stays in the agent repo) and listed, so later batches of the
 * same fingerprint can learn from it. In the `moss_candidates` KV bucket, key `<agent>.<fingerprint key>.<batch>.<attempt>`.
 */
export const RejectedCandidate = z.object({
  agent: AgentName,
  fingerprint: z.string(),
  batchId: Id,
  attempt: z.number().int().positive(),
  commit: GitSha.optional(),
  branch: z.string().optional(),
  diff: BlobRef.optional(),
  verdict: z.string(),
  reason: z.string(),
  at: z.string().datetime(),
});
export type RejectedCandidate = z.infer<typeof RejectedCandidate>;

/** A service process as the `moss up` that supervises it sees it, in the `moss_services` KV bucket. */
export const ServiceStatus = z.object({
  /** `curator`, `curator#2`... */
  name: z.string().min(1),
  host: z.string(),
  pid: z.number().int().optional(),
  state: z.enum(["running", "restarting", "stopped"]),
  /** Times it was started again after it died. */
  restarts: z.number().int().nonnegative(),
  lastExit: z.object({ code: z.number().int().nullable(), signal: z.string().nullable(), at: z.string().datetime() }).optional(),
  since: z.string().datetime(),
});
export type ServiceStatus = z.infer<typeof ServiceStatus>;

/** The live deployment of an agent, in the `moss_deployments` KV bucket. */
export const Deployment = z.object({
  agent: AgentName,
  image: z.string(),
  version: GitSha,
  container: z.string(),
  previous: z.object({ image: z.string(), version: GitSha, container: z.string() }).optional(),
  batchId: Id.optional(),
  updatedAt: z.string().datetime(),
  /**
   * Last-known-good versions, newest first: each written only once its bake succeeded (or an operator deployed it
   * with `moss deploy`), `promoter.keepVersions` deep. What a rollback goes back to; their containers are never pruned.
   */
  lastGood: z.array(z.object({ version: GitSha, image: z.string(), container: z.string(), at: z.string().datetime(), batchId: Id.optional() })).max(50).default([]),
});
export type Deployment = z.infer<typeof Deployment>;

/** A lease (`moss_leases`): who holds a piece of work until `renewedAt + ttlMs`. */
export const Lease = z.object({
  holder: z.string().min(1),
  /** What the holder is doing, for whoever waits (e.g. `batch b1`). */
  work: z.string(),
  renewedAt: z.string().datetime(),
  ttlMs: z.number().int().positive(),
  /** The holder it was taken from, when it was taken over after that one stopped renewing it. */
  takenFrom: z.string().optional(),
});
export type Lease = z.infer<typeof Lease>;

/** One version the gateway may send an agent's traffic to. */
export const RouteTarget = z.object({
  version: GitSha,
  image: z.string(),
  /** The container that serves it (on the live network). */
  container: z.string(),
  /** Base URL of the container, e.g. `http://172.18.0.5:8080`: reachable from the gateway, not published on the host. */
  upstream: z.string().url(),
  /** Share of new sessions, 0–100; the targets' weights sum to 100. */
  weight: z.number().int().min(0).max(100),
});
export type RouteTarget = z.infer<typeof RouteTarget>;

/**
 * Where the gateway sends an agent's traffic (`moss_routes`, key = agent). A swap or a rollback is one write of this
 * record; every gateway watches it and sends each new request by the record it holds when the request arrives.
 */
export const Route = z.object({
  agent: AgentName,
  targets: z.array(RouteTarget).min(1).max(2),
  /** A request with this header goes to the version its value hashes to, so one conversation stays on one version. */
  stickyHeader: z.string().min(1).optional(),
  /** Why the route changed (a swap, a rollback, a canary step), for whoever reads the KV history. */
  reason: z.string(),
  updatedAt: z.string().datetime(),
}).refine((r) => r.targets.reduce((n, t) => n + t.weight, 0) === 100, { message: "the targets' weights must sum to 100" });
export type Route = z.infer<typeof Route>;

/** Upper bounds (ms) of the gateway's latency histogram buckets; one more bucket counts everything slower. */
export const LATENCY_BOUNDS_MS = [1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 10_000, 30_000] as const;

/** One version's counters at one gateway, cumulative since that gateway started. */
export const VersionStats = z.object({
  requests: z.number().int().nonnegative(),
  /** Answers of 5xx. */
  errors5xx: z.number().int().nonnegative(),
  /** Requests the upstream never answered (refused, reset, timed out). */
  connErrors: z.number().int().nonnegative(),
  /** Requests on their way now. */
  inflight: z.number().int().nonnegative(),
  /** Counts per latency bucket (LATENCY_BOUNDS_MS, then one for slower). */
  latency: z.array(z.number().int().nonnegative()).length(LATENCY_BOUNDS_MS.length + 1),
});
export type VersionStats = z.infer<typeof VersionStats>;

/** A gateway's live counters for one agent (`moss_gateway_stats`, key `<agent>.<gateway id>`). */
export const GatewayStats = z.object({
  agent: AgentName,
  gateway: z.string().min(1),
  /** When the gateway wrote it; a promoter ignores a gateway whose record is older than a few intervals. */
  at: z.string().datetime(),
  /** Since when the counters count (the gateway's start): counters of a restarted gateway start again at zero. */
  since: z.string().datetime(),
  versions: z.record(z.string(), VersionStats),
});
export type GatewayStats = z.infer<typeof GatewayStats>;
