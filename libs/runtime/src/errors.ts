/**
 * Errors thrown by @moss/runtime: one class per code of the registry in @moss/errors, each saying whether retrying
 * can help (`retryable`): the bus maps retryable errors to `nak(delay)` and the rest to `term` + dead-letter.
 *
 * Note: a trial whose *agent* misbehaves (crash, hang, 500, never listens) is not an error here:
 * `runTrial` resolves with a `TrialResult` describing it. Errors are for the engine or the inputs.
 */

import { Codes, MossError, causeText } from "@moss/errors";

/** Base class: `instanceof RuntimeError` catches every error this package throws on purpose. */
export abstract class RuntimeError extends MossError {}

/** The Docker engine did not answer (socket missing, refused, permission denied...). Retryable. */
export class DockerUnavailableError extends RuntimeError {
  override readonly name = "DockerUnavailableError";
  constructor(
    readonly socketPath: string,
    options?: ErrorOptions,
  ) {
    super(
      Codes.DOCKER_UNAVAILABLE,
      `the Docker engine is not reachable at ${socketPath} (${causeText(options?.cause)}): start dockerd ` +
        `(or set RuntimeConfig.socketPath to its socket), then run \`npm run setup\``,
      options,
    );
  }
}

/** The engine answered with an unexpected error. Retryable when the engine says it failed (5xx). */
export class DockerError extends RuntimeError {
  override readonly name = "DockerError";
  constructor(
    readonly operation: string,
    readonly statusCode: number | undefined,
    options?: ErrorOptions,
  ) {
    super(Codes.DOCKER, `docker ${operation} failed${statusCode ? ` (HTTP ${statusCode})` : ""}: ${causeText(options?.cause)}`, {
      ...options,
      retryable: statusCode === undefined || statusCode >= 500,
    });
  }
}

/** `moss/node-base` is not in the engine's image store (terminal until someone builds it). */
export class BaseImageMissingError extends RuntimeError {
  override readonly name = "BaseImageMissingError";
  constructor(
    readonly image: string,
    options?: ErrorOptions,
  ) {
    super(
      Codes.BASE_IMAGE_MISSING,
      `the base image ${image} does not exist in the Docker engine: run \`npm run setup\` ` +
        `(it runs deploy/build-base-image.sh) and try again`,
      options,
    );
  }
}

/** `git archive` of the requested commit failed: no such repo or commit (terminal). */
export class GitArchiveError extends RuntimeError {
  override readonly name = "GitArchiveError";
  constructor(
    readonly repoDir: string,
    readonly commit: string,
    stderr: string,
    options?: ErrorOptions,
  ) {
    super(
      Codes.GIT_ARCHIVE_FAILED,
      `cannot archive commit ${commit} of the git repo at ${repoDir}: ${stderr.trim() || causeText(options?.cause)}` +
        ` (check that the directory is a git repo and the commit exists in it)`,
      options,
    );
  }
}

/** The image build failed; `log` holds the whole build log (terminal: the same commit fails again). */
export class ImageBuildError extends RuntimeError {
  override readonly name = "ImageBuildError";
  constructor(
    readonly tag: string,
    readonly commit: string,
    readonly log: string,
    reason: string,
    options?: ErrorOptions,
  ) {
    super(Codes.IMAGE_BUILD_FAILED, `building image ${tag} from commit ${commit} failed: ${reason} (the full build log is in .log)`, options);
  }
}

/** The image to run is not in the engine's image store (terminal). */
export class ImageNotFoundError extends RuntimeError {
  override readonly name = "ImageNotFoundError";
  constructor(
    readonly image: string,
    options?: ErrorOptions,
  ) {
    super(Codes.IMAGE_NOT_FOUND, `image ${image} does not exist in the Docker engine: build it first (Runtime.buildImage)`, options);
  }
}

/** A spec that cannot work: bad agent name, relative snapshot path, port out of range... (terminal). */
export class InvalidSpecError extends RuntimeError {
  override readonly name = "InvalidSpecError";
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(Codes.RUNTIME_INVALID_SPEC, `invalid ${field}: ${problem}`);
  }
}

/**
 * The trial could not be run at all (container create / archive upload / start failed). Not used
 * for agent misbehaviour, which is reported in the TrialResult. Retryable unless the engine
 * rejected the request (4xx).
 */
export class TrialError extends RuntimeError {
  override readonly name = "TrialError";
  constructor(
    readonly image: string,
    stage: string,
    retryable: boolean,
    options?: ErrorOptions,
  ) {
    super(Codes.TRIAL_FAILED, `trial of image ${image} could not run (${stage}): ${causeText(options?.cause)}`, { ...options, retryable });
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
  constructor(
    readonly agent: string,
    readonly image: string,
    readonly previous: PreviousVersionOutcome,
    retryable: boolean,
    options?: ErrorOptions,
  ) {
    super(
      Codes.LIVE_DEPLOY_FAILED,
      `making image ${image} the live container of agent ${agent} failed: ${causeText(options?.cause)}; ` +
        {
          untouched: "the version that was live is still live",
          restored: "the previous version was put back and is live again",
          "not-restored": "the previous version could not be put back: the agent has no running live container",
          none: "there was no live version before",
        }[previous],
      { ...options, retryable },
    );
  }
}

/**
 * A failure's state snapshot breaks the unpacking policy (absolute path, `..`, a link leaving the state directory,
 * a special file, too big): it is not extracted, and that failure's replay fails with the reason (terminal).
 */
export class SnapshotRejectedError extends RuntimeError {
  override readonly name = "SnapshotRejectedError";
  constructor(readonly why: string) {
    super(Codes.SNAPSHOT_REJECTED, `the state snapshot was not restored: ${why}`);
  }
}

/** The image to deploy is not the one that was built (id or commit label): nothing is deployed (terminal). */
export class ImageMismatchError extends RuntimeError {
  override readonly name = "ImageMismatchError";
  constructor(image: string, why: string) {
    super(Codes.IMAGE_MISMATCH, `image ${image} is not the image that was built: ${why}; nothing was deployed`);
  }
}

/** Rollback asked for, but the agent has no previous container to go back to (terminal). */
export class NoPreviousVersionError extends RuntimeError {
  override readonly name = "NoPreviousVersionError";
  constructor(
    readonly agent: string,
    readonly container: string,
  ) {
    super(
      Codes.NO_PREVIOUS_VERSION,
      `agent ${agent} has no previous version to roll back to (no container named ${container}): ` +
        `only one rollback per deploy is possible`,
    );
  }
}
