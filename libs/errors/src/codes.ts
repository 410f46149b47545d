/**
 * Every error code Moss has, in one place (fastify's lib/errors.js is the model): the code a user sees in a log, a
 * dead letter or an API answer, the HTTP status the APIs answer it with, whether retrying can help by default, the
 * package that raises it, and what it means and what to do. `libs/errors/README.md` lists them all; a test checks
 * that every code is unique, documented there, and that no code is spelled anywhere else.
 */
export interface ErrorCode {
  readonly code: `MOSS_E_${string}`;
  /** HTTP status an API answers this error with. */
  readonly status: number;
  /** Whether retrying the same work can succeed (the bus naks it with backoff) or not (term + dead letter). */
  readonly retryable: boolean;
  /** The package that raises it. */
  readonly raisedBy: string;
  /** What happened, and what to do about it. */
  readonly doc: string;
}

const all: ErrorCode[] = [];

function code(code: ErrorCode["code"], raisedBy: string, status: number, retryable: boolean, doc: string): ErrorCode {
  const c = Object.freeze({ code, status, retryable, raisedBy, doc });
  all.push(c);
  return c;
}

export const Codes = {
  // Anything that is not a Moss error.
  INTERNAL: code("MOSS_E_INTERNAL", "any", 500, true, "An unexpected error (a bug, or a failure nobody named). It is retried; its stack is in the service log."),

  // @moss/bus
  INVALID_MESSAGE: code("MOSS_E_INVALID_MESSAGE", "@moss/bus", 400, false, "A message is not JSON or does not match its schema. It is dead-lettered with every schema problem; fix the publisher."),
  UNROUTABLE: code("MOSS_E_UNROUTABLE", "@moss/bus", 500, false, "A message arrived on a subject its consumer has no handler for (a topology bug). It is dead-lettered."),
  BUS_UNAVAILABLE: code("MOSS_E_BUS_UNAVAILABLE", "@moss/bus", 503, true, "NATS could not be reached at start. Start nats-server (>= 2.10, with -js), run `moss up`, or set MOSS_NATS_URL."),
  CAS_CONFLICT: code("MOSS_E_CAS_CONFLICT", "@moss/bus", 409, true, "A KV compare-and-set kept losing to concurrent writers. Retried from a fresh read."),
  NATS_CREDENTIAL: code("MOSS_E_NATS_CREDENTIAL", "@moss/bus", 500, false, "A process has no usable NATS credential (nats.credentialsDir/<identity>.nk missing, unreadable, too open or not an nkey seed). `moss up` writes them for the embedded stack; `moss credentials` for your own nats-server."),
  QUERY_UNANSWERED: code("MOSS_E_QUERY_UNANSWERED", "@moss/bus", 503, true, "A read query over the bus (e.g. the operator API asking the auditor for a timeline) got no answer in time: the service that answers it is not running or not connected. `moss status` shows which; the query can simply be asked again."),
  NATS_DENIED: code("MOSS_E_NATS_DENIED", "@moss/bus", 403, false, "NATS refused an identity a subject, stream or bucket its grant does not cover (libs/contracts/src/grants.ts). A bug if a Moss service hits it; an attack if anything else does. nats-server logs who."),

  // @moss/batch
  BATCH_NOT_FOUND: code("MOSS_E_BATCH_NOT_FOUND", "@moss/batch", 404, false, "No batch record has this id. List batches with `moss batches`."),
  BATCH_TRANSITION: code("MOSS_E_BATCH_TRANSITION", "@moss/batch", 409, false, "A batch was asked to move along an edge its state machine does not have (e.g. promote a rejected batch)."),
  BATCH_ENDED: code("MOSS_E_BATCH_ENDED", "@moss/batch", 409, false, "A stage's work on a batch came after the batch ended (an operator rejected it, or another replica finished it): the message is dropped, not dead-lettered; nothing is left to do."),
  NO_CANDIDATE: code("MOSS_E_NO_CANDIDATE", "@moss/batch", 409, false, "A promotion was asked for a batch that has no candidate that passed replay."),

  // @moss/config
  CONFIG: code("MOSS_E_CONFIG", "@moss/config", 400, false, "The Moss config is invalid or unreadable. The message names every problem: field, value, why."),
  UNKNOWN_AGENT: code("MOSS_E_UNKNOWN_AGENT", "@moss/config", 404, false, "A message or command names an agent that is not in the Moss config. Add agents.<name>.repo, or fix the agent name it publishes."),

  // @moss/blob
  BLOB_NOT_FOUND: code("MOSS_E_BLOB_NOT_FOUND", "@moss/blob", 404, false, "No blob with this address is in the store: never stored there, or the writer used another store (blob dir, bucket, prefix)."),
  BLOB_CORRUPT: code("MOSS_E_BLOB_CORRUPT", "@moss/blob", 500, false, "A stored blob no longer hashes to its address. Delete the stored copy and put the original bytes again."),
  BLOB_INVALID_ID: code("MOSS_E_BLOB_INVALID_ID", "@moss/blob", 400, false, "A blob address that is not a sha256 (64 lowercase hex digits)."),
  BLOB_INVALID_CONTENT_TYPE: code("MOSS_E_BLOB_INVALID_CONTENT_TYPE", "@moss/blob", 400, false, "A content type that cannot be stored as an HTTP header value (1-255 printable ASCII characters)."),
  BLOB_UNAVAILABLE: code("MOSS_E_BLOB_UNAVAILABLE", "@moss/blob", 503, true, "The blob store could not be reached or failed transiently (network, 5xx, throttling, I/O). Retried."),
  BLOB_BACKEND: code("MOSS_E_BLOB_BACKEND", "@moss/blob", 500, false, "The blob store refused the request (access denied, missing bucket, bad credentials, permissions). Fix its configuration."),

  // @moss/git
  UNSIGNED_COMMIT: code("MOSS_E_UNSIGNED_COMMIT", "@moss/git", 422, false, "A candidate commit carries no signature, so it cannot be promoted. Configure rewriter.signing.key (`moss keys init`)."),
  BAD_SIGNATURE: code("MOSS_E_BAD_SIGNATURE", "@moss/git", 422, false, "A candidate commit's signature is not good for an allowed signer (unknown key, bad, expired or revoked). Do not promote it."),
  SIGNING_KEY: code("MOSS_E_SIGNING_KEY", "@moss/git", 500, false, "rewriter.signing.key cannot sign: missing, unreadable, too-open permissions, encrypted, or a public key."),
  ALLOWED_SIGNERS_MISSING: code("MOSS_E_ALLOWED_SIGNERS_MISSING", "@moss/git", 500, false, "rewriter.signing.allowedSigners cannot be read, so no signature can be verified. `moss keys init` writes one."),
  INVALID_COMMIT_INPUT: code("MOSS_E_INVALID_COMMIT_INPUT", "@moss/git", 400, false, "A commit message, trailer or identity git cannot carry as given (empty, multi-line trailer value...)."),
  NOTHING_TO_COMMIT: code("MOSS_E_NOTHING_TO_COMMIT", "@moss/git", 422, false, "Nothing is staged in the worktree: the patch changed no file."),
  COMMIT_NOT_FOUND: code("MOSS_E_COMMIT_NOT_FOUND", "@moss/git", 404, false, "A revision names no commit in the repository. Check the sha, or fetch the branch into this repository."),
  SIGNING_KEY_SETUP: code("MOSS_E_SIGNING_KEY_SETUP", "@moss/git", 500, false, "Creating or reading the signing key pair or its allowed signers file failed (`moss keys init`)."),
  GIT_COMMAND: code("MOSS_E_GIT_COMMAND", "@moss/git", 500, false, "A git command failed. Retryable only when another git process holds a lock."),
  GIT_UNSAFE_REPO: code("MOSS_E_GIT_UNSAFE_REPO", "@moss/git", 500, false, "The agent repository's config sets something Moss will not run git under (e.g. core.worktree). Remove it from the repository's config."),

  // @moss/runtime
  DOCKER_UNAVAILABLE: code("MOSS_E_DOCKER_UNAVAILABLE", "@moss/runtime", 503, true, "The Docker engine did not answer (socket missing, refused, permission denied). Start dockerd, then `npm run setup`."),
  DOCKER: code("MOSS_E_DOCKER", "@moss/runtime", 502, true, "The Docker engine answered with an unexpected error. Retryable when the engine says it failed (5xx)."),
  BASE_IMAGE_MISSING: code("MOSS_E_BASE_IMAGE_MISSING", "@moss/runtime", 500, false, "moss/node-base is not in the engine's image store. Run `npm run setup`."),
  GIT_ARCHIVE_FAILED: code("MOSS_E_GIT_ARCHIVE_FAILED", "@moss/runtime", 500, false, "The build context could not be taken from the repository (no such repository or commit)."),
  IMAGE_BUILD_FAILED: code("MOSS_E_IMAGE_BUILD_FAILED", "@moss/runtime", 422, false, "A candidate's image did not build, or not within rewriter.buildTimeoutMs. A build-failed verdict; the log is stored."),
  IMAGE_NOT_FOUND: code("MOSS_E_IMAGE_NOT_FOUND", "@moss/runtime", 404, false, "The image to run is not in the engine's image store. Build it first."),
  RUNTIME_INVALID_SPEC: code("MOSS_E_RUNTIME_INVALID_SPEC", "@moss/runtime", 400, false, "A runtime spec that cannot work (bad agent name, relative snapshot path, port out of range...)."),
  TRIAL_FAILED: code("MOSS_E_TRIAL_FAILED", "@moss/runtime", 500, true, "A trial container could not be run at all (create, upload or start failed). Not the agent's misbehaviour, which is a verdict."),
  LIVE_DEPLOY_FAILED: code("MOSS_E_LIVE_DEPLOY_FAILED", "@moss/runtime", 500, true, "Swapping or rolling back the live container failed; the message says what became of the version that was live."),
  SNAPSHOT_REJECTED: code("MOSS_E_SNAPSHOT_REJECTED", "@moss/runtime", 422, false, "A failure's state snapshot breaks the unpacking policy (absolute path, .., a link leaving the state directory, a special file, too big). That failure's replay fails with the reason."),
  IMAGE_MISMATCH: code("MOSS_E_IMAGE_MISMATCH", "@moss/runtime", 409, false, "The image to deploy is not the one that was built: another image id behind the tag, or a moss.commit label naming another commit. Nothing was deployed."),
  NO_PREVIOUS_VERSION: code("MOSS_E_NO_PREVIOUS_VERSION", "@moss/runtime", 409, false, "A rollback was asked for, but the agent has no previous container to go back to."),

  // @moss/agent-sdk
  SDK_CONFIG: code("MOSS_E_SDK_CONFIG", "@moss/agent-sdk", 400, false, "The reporter's options are unusable (bad agent name, version...); thrown by createReporter at start-up."),
  SNAPSHOT_TOO_LARGE: code("MOSS_E_SNAPSHOT_TOO_LARGE", "@moss/agent-sdk", 413, false, "The state directory cannot be archived within the inline limit. Upload it to the blob store instead."),
  INVALID_EVENT: code("MOSS_E_INVALID_EVENT", "@moss/agent-sdk", 400, false, "A failure event does not satisfy the moss.failure.v1 schema."),

  // @moss/curator
  CURATOR_STATE_CONTENDED: code("MOSS_E_CURATOR_STATE_CONTENDED", "@moss/curator", 503, true, "An agent's curator state kept changing under every compare-and-set of a chunk. The chunk is retried."),
  CURATOR_STATE_TOO_LARGE: code("MOSS_E_CURATOR_STATE_TOO_LARGE", "@moss/curator", 500, true, "An agent's curator state would outgrow one KV entry. Lower curator.maxOpenFingerprints or maxSamples, or raise max_payload."),
  UNAUTHORIZED: code("MOSS_E_UNAUTHORIZED", "@moss/curator", 401, false, "Missing or wrong bearer token. Send `Authorization: Bearer <curator.http.token>`."),
  TOO_LARGE: code("MOSS_E_TOO_LARGE", "@moss/curator", 413, false, "An event larger than curator.http.bodyLimitBytes. Trim logs, or send the state snapshot by blob reference."),
  BAD_REQUEST: code("MOSS_E_BAD_REQUEST", "@moss/curator", 400, false, "An HTTP request the API cannot read (not JSON, wrong content type)."),
  UNAVAILABLE: code("MOSS_E_UNAVAILABLE", "@moss/curator", 503, true, "The event could not be stored in JetStream. Retry with the same id (it is deduplicated)."),
  INVALID_FAILURE: code("MOSS_E_INVALID_FAILURE", "@moss/curator", 400, false, "A posted failure event does not match failure.v1; the answer lists every problem."),
  INVALID_FLAG: code("MOSS_E_INVALID_FLAG", "@moss/curator", 400, false, "A posted flag does not match its schema; the answer lists every problem."),
  INVALID_SUCCESS: code("MOSS_E_INVALID_SUCCESS", "@moss/curator", 400, false, "A posted recorded success does not match success.v1; the answer lists every problem."),

  // @moss/replayer
  UNREPLAYABLE: code("MOSS_E_UNREPLAYABLE", "@moss/replayer", 422, false, "A failure cannot be replayed as recorded (its stored event is invalid, or it has a state snapshot and agents.<name>.stateDir is not set). That failure's replay fails with the reason."),

  // @moss/rewriter
  ADAPTER_CONFIG: code("MOSS_E_ADAPTER_CONFIG", "@moss/rewriter", 500, false, "The coding-agent adapter configuration cannot work (unknown preset, empty command...). Fix rewriter.adapter."),
  NO_CODING_AGENT: code("MOSS_E_NO_CODING_AGENT", "@moss/rewriter", 500, false, "No coding agent is configured. Set rewriter.adapter (a preset or a command) or rewriter.command."),
  RULE_SET: code("MOSS_E_RULE_SET", "@moss/rewriter", 500, false, "The symbolic patcher's rules directory, or a rule in it, is unusable; every problem is listed."),
  GUARDRAIL_CONFIG: code("MOSS_E_GUARDRAIL_CONFIG", "@moss/rewriter", 500, false, "rewriter.guardrails is invalid (a glob or a secret pattern that does not compile, a bad limit)."),
  GUARDRAIL_GIT: code("MOSS_E_GUARDRAIL_GIT", "@moss/rewriter", 500, false, "The guardrail check could not read the change from git (not a worktree, unknown base)."),

  // @moss/auditor
  FAILURE_NOT_FOUND: code("MOSS_E_FAILURE_NOT_FOUND", "@moss/auditor", 404, false, "No failure with this id is in the audit log. Failure ids are in `moss show BATCH`."),
  NO_CASSETTE: code("MOSS_E_NO_CASSETTE", "@moss/auditor", 404, false, "The failure was reported without a cassette: its turn made no outbound call the SDK saw, or did not run in `reporter.turn()`."),
  AUDIT_LOG_DAMAGED: code("MOSS_E_AUDIT_LOG_DAMAGED", "@moss/auditor", 500, false, "The audit log has a line that is not a record. The auditor will not append to it: restore it from a backup or move it aside."),

  WEBHOOK_FAILED: code("MOSS_E_WEBHOOK_FAILED", "@moss/auditor", 502, true, "A configured webhook did not answer 2xx; the message comes back with backoff until it does (or runs out of deliveries and is dead-lettered with this reason)."),

  // @moss/operator-api
  NOT_AN_OPERATOR: code("MOSS_E_NOT_AN_OPERATOR", "@moss/operator-api", 401, false, "The operator API was called without a token of a known operator. Send `Authorization: Bearer <token>` (`moss operator add NAME` makes one; the CLI reads MOSS_OPERATOR_TOKEN or the token `moss up` left)."),
  READ_ONLY_TOKEN: code("MOSS_E_READ_ONLY_TOKEN", "@moss/operator-api", 403, false, "The operator API was asked to change something with a token whose role is `read`: nothing was changed. An operator with the `operate` role can (`moss operator add NAME`)."),
  OPERATORS_FILE: code("MOSS_E_OPERATORS_FILE", "@moss/operator-api", 500, false, "operatorApi.operatorsFile cannot be read or is not `{ operators: [{ name, tokenSha256 }] }`; the message says where. `moss operator add NAME` writes a good one."),
  NOT_AWAITING_APPROVAL: code("MOSS_E_NOT_AWAITING_APPROVAL", "@moss/operator-api", 409, false, "Only a batch whose candidate passed replay (awaiting-approval) can be approved; the message says which state it is in."),
  NOTHING_TO_RESET: code("MOSS_E_NOTHING_TO_RESET", "@moss/operator-api", 404, false, "The fingerprint named has no circuit breaker (it never had a rejected candidate): nothing was changed."),
  NO_REGRESSION_CASE: code("MOSS_E_NO_REGRESSION_CASE", "@moss/operator-api", 404, false, "The agent's regression set has no case with this id: nothing was changed. List the set with `moss regressions AGENT`."),
  NO_STORED_FAILURE: code("MOSS_E_NO_STORED_FAILURE", "@moss/operator-api", 404, false, "No stored failure has this id (or starts with it): only failures kept as a batch's evidence are stored. `moss show BATCH` lists them."),
  NO_SUCH_REPLAY: code("MOSS_E_NO_SUCH_REPLAY", "@moss/operator-api", 404, false, "No `moss replay` or `moss bisect` request has this id, or it has no result for that case yet."),

  // @moss/batch (leases)
  LEASE_HELD: code("MOSS_E_LEASE_HELD", "@moss/batch", 409, true, "Another replica holds the lease on this work (e.g. the promoter of this agent); the message is tried again once that lease is released or runs out."),

  // @moss/gateway
  NO_ROUTE: code("MOSS_E_NO_ROUTE", "@moss/gateway", 503, true, "The gateway has no version of this agent to send the request to: none was deployed yet (`moss deploy AGENT`), or its route was removed."),
  UPSTREAM: code("MOSS_E_UPSTREAM", "@moss/gateway", 502, true, "The agent's version behind the gateway did not answer (refused, reset, or no answer within gateway.upstreamTimeoutMs); the message names the version. It counts as a failed request in the promoter's analysis."),
} as const satisfies Record<string, ErrorCode>;

/** Every code, in registry order. */
export const AllCodes: readonly ErrorCode[] = Object.freeze([...all]);
