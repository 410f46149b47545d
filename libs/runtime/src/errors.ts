/**
 * Errors thrown by @moss/runtime. Each has a stable `code` and says whether retrying can help
 * (`retryable`): the bus maps retryable errors to `nak(delay)` and the rest to `term` + dead-letter.
 * The shape (`code`, `retryable`, `cause`) matches `MossError` of @moss/contracts, so its
 * `isTerminal()` / `errorCode()` helpers work on these too.
 *
 * Note: a trial whose *agent* misbehaves (crash, hang, 500, never listens) is not an error here:
 * `runTrial` resolves with a `TrialResult` describing it. Errors are for the engine or the inputs.
 */

/** Stable error codes of this package. */
export const RuntimeErrorCode = {
  DockerUnavailable: "MOSS_E_DOCKER_UNAVAILABLE",
  Docker: "MOSS_E_DOCKER",
  BaseImageMissing: "MOSS_E_BASE_IMAGE_MISSING",
  GitArchive: "MOSS_E_GIT_ARCHIVE_FAILED",
  ImageBuild: "MOSS_E_IMAGE_BUILD_FAILED",
  ImageNotFound: "MOSS_E_IMAGE_NOT_FOUND",
  InvalidSpec: "MOSS_E_RUNTIME_INVALID_SPEC",
  Trial: "MOSS_E_TRIAL_FAILED",
  LiveDeploy: "MOSS_E_LIVE_DEPLOY_FAILED",
  NoPreviousVersion: "MOSS_E_NO_PREVIOUS_VERSION",
} as const;
export type RuntimeErrorCode = (typeof RuntimeErrorCode)[keyof typeof RuntimeErrorCode];

/** Base class: `instanceof RuntimeError` catches every error this package throws on purpose. */
export abstract class RuntimeError extends Error {
  abstract readonly code: RuntimeErrorCode;
  abstract readonly retryable: boolean;
}

/** The Docker engine did not answer (socket missing, refused, permission denied...). Retryable. */
export class DockerUnavailableError extends RuntimeError {
  override readonly name = "DockerUnavailableError";
  readonly code = RuntimeErrorCode.DockerUnavailable;
  readonly retryable = true;
  constructor(
    readonly socketPath: string,
    options?: ErrorOptions,
  ) {
    super(
      `the Docker engine is not reachable at ${socketPath} (${causeText(options?.cause)}): start dockerd ` +
        `(or set RuntimeConfig.socketPath to its socket), then run \`npm run setup\``,
      options,
    );
  }
}

/** The engine answered with an unexpected error. Retryable when the engine says it failed (5xx). */
export class DockerError extends RuntimeError {
  override readonly name = "DockerError";
  readonly code = RuntimeErrorCode.Docker;
  readonly retryable: boolean;
  constructor(
    readonly operation: string,
    readonly statusCode: number | undefined,
    options?: ErrorOptions,
  ) {
    super(`docker ${operation} failed${statusCode ? ` (HTTP ${statusCode})` : ""}: ${causeText(options?.cause)}`, options);
    this.retryable = statusCode === undefined || statusCode >= 500;
  }
}

/** `moss/node-base` is not in the engine's image store (terminal until someone builds it). */
export class BaseImageMissingError extends RuntimeError {
  override readonly name = "BaseImageMissingError";
  readonly code = RuntimeErrorCode.BaseImageMissing;
  readonly retryable = false;
  constructor(
    readonly image: string,
    options?: ErrorOptions,
  ) {
    super(
      `the base image ${image} does not exist in the Docker engine: run \`npm run setup\` ` +
        `(it runs deploy/build-base-image.sh) and try again`,
      options,
    );
  }
}

/** `git archive` of the requested commit failed: no such repo or commit (terminal). */
export class GitArchiveError extends RuntimeError {
  override readonly name = "GitArchiveError";
  readonly code = RuntimeErrorCode.GitArchive;
  readonly retryable = false;
  constructor(
    readonly repoDir: string,
    readonly commit: string,
    stderr: string,
    options?: ErrorOptions,
  ) {
    super(
      `cannot archive commit ${commit} of the git repo at ${repoDir}: ${stderr.trim() || causeText(options?.cause)}` +
        ` (check that the directory is a git repo and the commit exists in it)`,
      options,
    );
  }
}

/** The image build failed; `log` holds the whole build log (terminal: the same commit fails again). */
export class ImageBuildError extends RuntimeError {
  override readonly name = "ImageBuildError";
  readonly code = RuntimeErrorCode.ImageBuild;
  readonly retryable = false;
  constructor(
    readonly tag: string,
    readonly commit: string,
    readonly log: string,
    reason: string,
    options?: ErrorOptions,
  ) {
    super(`building image ${tag} from commit ${commit} failed: ${reason} (the full build log is in .log)`, options);
  }
}

/** The image to run is not in the engine's image store (terminal). */
export class ImageNotFoundError extends RuntimeError {
  override readonly name = "ImageNotFoundError";
  readonly code = RuntimeErrorCode.ImageNotFound;
  readonly retryable = false;
  constructor(
    readonly image: string,
    options?: ErrorOptions,
  ) {
    super(`image ${image} does not exist in the Docker engine: build it first (Runtime.buildImage)`, options);
  }
}

/** A spec that cannot work: bad agent name, relative snapshot path, port out of range... (terminal). */
export class InvalidSpecError extends RuntimeError {
  override readonly name = "InvalidSpecError";
  readonly code = RuntimeErrorCode.InvalidSpec;
  readonly retryable = false;
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`invalid ${field}: ${problem}`);
  }
}

/**
 * The trial could not be run at all (container create / archive upload / start failed). Not used
 * for agent misbehaviour, which is reported in the TrialResult. Retryable unless the engine
 * rejected the request (4xx).
 */
export class TrialError extends RuntimeError {
  override readonly name = "TrialError";
  readonly code = RuntimeErrorCode.Trial;
  readonly retryable: boolean;
  constructor(
    readonly image: string,
    stage: string,
    retryable: boolean,
    options?: ErrorOptions,
  ) {
    super(`trial of image ${image} could not run (${stage}): ${causeText(options?.cause)}`, options);
    this.retryable = retryable;
  }
}

/** What became of the version that was live when a swap failed. */
export type PreviousVersionOutcome = "untouched" | "restored" | "not-restored" | "none";

/**
 * Swapping (or rolling back) the live container failed. `previous` says what became of the
 * version that was live: still live (`untouched`), put back live (`restored`), not live
 * (`not-restored`: the agent is down; check `liveStatus`), or there was none (`none`). Retryable unless the engine rejected
 * the request (4xx).
 */
export class LiveDeployError extends RuntimeError {
  override readonly name = "LiveDeployError";
  readonly code = RuntimeErrorCode.LiveDeploy;
  readonly retryable: boolean;
  constructor(
    readonly agent: string,
    readonly image: string,
    readonly previous: PreviousVersionOutcome,
    retryable: boolean,
    options?: ErrorOptions,
  ) {
    super(
      `making image ${image} the live container of agent ${agent} failed: ${causeText(options?.cause)}; ` +
        {
          untouched: "the version that was live is still live",
          restored: "the previous version was put back and is live again",
          "not-restored": "the previous version could not be put back: the agent has no running live container",
          none: "there was no live version before",
        }[previous],
      options,
    );
    this.retryable = retryable;
  }
}

/** Rollback asked for, but the agent has no previous container to go back to (terminal). */
export class NoPreviousVersionError extends RuntimeError {
  override readonly name = "NoPreviousVersionError";
  readonly code = RuntimeErrorCode.NoPreviousVersion;
  readonly retryable = false;
  constructor(
    readonly agent: string,
    readonly container: string,
  ) {
    super(
      `agent ${agent} has no previous version to roll back to (no container named ${container}): ` +
        `only one rollback per deploy is possible`,
    );
  }
}

function causeText(cause: unknown): string {
  if (cause instanceof Error) return cause.message.trim();
  if (cause === undefined) return "unknown cause";
  return String(cause);
}
