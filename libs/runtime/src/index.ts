export { createRuntime } from "./runtime";
export { RUNTIME_DEFAULTS } from "./config";
export { createDockerClient, engineMessage } from "./docker";
export { httpProbe, type ProbeResult } from "./probe";
export { egressProxyCode, NOBODY, socketDir, startNodeHelper, watchLines, type HelperOptions } from "./helper";
export { pidIsGone } from "./isolation";
export { BASE_IMAGE } from "./types";
export type {
  BuildImageOptions,
  BuildImageResult,
  DeployLiveResult,
  LiveSpec,
  LiveNetwork,
  LiveStatus,
  ServedVersion,
  Runtime,
  RuntimeConfig,
  TrialCall,
  TrialInvocation,
  TrialRequest,
  TrialResponse,
  TrialResult,
  TrialSpec,
} from "./types";
export {
  BaseImageMissingError,
  DockerError,
  DockerUnavailableError,
  GitArchiveError,
  ImageBuildError,
  ImageMismatchError,
  ImageNotFoundError,
  InvalidSpecError,
  LiveDeployError,
  NoPreviousVersionError,
  SnapshotRejectedError,
  RuntimeError,
  TrialError,
  type PreviousVersionOutcome,
} from "./errors";
