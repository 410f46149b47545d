/** Public types of @moss/runtime. */

/** How to reach the engine and how to bound trials. Every field is optional. */
export interface RuntimeConfig {
  /** Docker engine socket. Default `/var/run/docker.sock`. */
  socketPath?: string;
  /** Memory limit of a trial container (swap disabled). Default 256 MiB. */
  trialMemoryBytes?: number;
  /** Max processes/threads in a trial container. Default 128. */
  trialPidsLimit?: number;
  /** CPU limit of a trial container, in CPUs (fractions allowed). Default 1. */
  trialCpus?: number;
  /**
   * Extra time a trial container gets beyond `TrialSpec.timeoutMs`, counted from the start
   * request, before the runtime kills it: covers container start (~0.2 s here) and the driver's
   * boot. The driver enforces `timeoutMs` itself and reports; this is the backstop. Default 3000 ms.
   */
  trialStartAllowanceMs?: number;
  /** Most bytes of files a state snapshot may hold (unpacked). Default 256 MiB. */
  snapshotMaxBytes?: number;
  /** Most entries a state snapshot may hold. Default 20 000. */
  snapshotMaxEntries?: number;
  /** Max bytes of logs kept in a `TrialResult` (the tail is kept). Default 1 MiB. */
  trialLogLimitBytes?: number;
  /**
   * Size of the warm pool (call `close()` when done). Trial sidecars (Moss's driver, image-independent) kept created
   * and started ahead, so an offline trial pays neither their create nor their start; and, once `warmTrials(spec)`
   * names the trials to come, as many warm pods for them (sidecar, volumes, staging: all but the agent's container,
   * which carries each trial's own environment). With a pool, a trial's pod is removed behind its result (`idle()`
   * waits). Default 0: no pool, every trial removed before its result.
   */
  trialPoolSize?: number;
  /** Seconds a live container gets to exit after SIGTERM before SIGKILL. Default 5. */
  liveStopTimeoutSeconds?: number;
  /**
   * Prefix of every container name this runtime creates (`<prefix>-live-<agent>`,
   * `<prefix>-trial-<id>`...), also set as label `moss.prefix`. Default "moss"; tests use a random one.
   */
  namePrefix?: string;
  /** Image builder: "buildkit" (default; works with a FROM of a local-only image here) or "legacy". */
  builder?: "buildkit" | "legacy";
  /**
   * A build that has not finished after this long is cancelled (the engine stops it when the request goes away)
   * and fails with ImageBuildError: a candidate's Dockerfile can hang, and must not hold the rewriter. Default 10 min.
   */
  buildTimeoutMs?: number;
}

/** The base image agent Dockerfiles start FROM; built by deploy/build-base-image.sh. */
export const BASE_IMAGE = "moss/node-base:latest";

export interface BuildImageOptions {
  /** A git repository with a Dockerfile at its root. */
  repoDir: string;
  /** Any commit-ish; it is resolved to a full sha (label `moss.commit`). */
  commit: string;
  /** Image tag to produce, e.g. `moss/agent-echo:3f2a9c1`. */
  tag: string;
  /** Extra image labels. */
  labels?: Record<string, string>;
}

export interface BuildImageResult {
  /** The tag that was built. */
  image: string;
  /** `sha256:...` image id. */
  imageId: string;
  /** The whole build log, as plain text. */
  log: string;
}

export interface LiveSpec {
  /** Agent name: letters, digits, `_`, `.`, `-`. */
  agent: string;
  image: string;
  /** Version label (`moss.version`), e.g. the commit. */
  version: string;
  /**
   * The id (`sha256:...`) the image must have: the container is created from exactly that image, and one whose id
   * differs, or whose `moss.commit` label is not `version`, is refused (ImageMismatchError) before anything changes.
   */
  imageId?: string;
  /** Environment of the live container (pass PORT here). */
  env: Record<string, string>;
  /**
   * Absolute path of the agent's state directory. When set, a named volume (`<prefix>-state-<agent>`) is mounted
   * there, so state survives a swap and a rollback, as it would on a real deployment's persistent volume.
   */
  stateDir?: string;
}

export interface DeployLiveResult {
  /** Name of the new live container. */
  container: string;
  /** The container that was live before, now stopped and kept as `<prefix>-prev-<agent>`. */
  previous?: { container: string; image: string };
}

/** A version served behind the gateway: its container on the live network and where the gateway reaches it. */
export interface ServedVersion {
  container: string;
  image: string;
  version: string;
  running: boolean;
  /** The container's address on the live network (empty when it is stopped). */
  ip: string;
  /** `http://<ip>:<port>` (empty when it is stopped). */
  upstream: string;
  /** When the container was created. */
  created: string;
}

/** The Docker network live versions served behind the gateway run on: no port of theirs is published on the host. */
export interface LiveNetwork {
  name: string;
  /** The host's address on that network: what `moss-host` resolves to inside a live container. */
  hostIp: string;
}

export interface LiveStatus {
  container: string;
  image: string;
  running: boolean;
  /** The `moss.version` label of the container. */
  version?: string;
}

export interface TrialRequest {
  method: string;
  /** Path with query, e.g. `/orders?id=3`. */
  path: string;
  headers: Record<string, string>;
  body?: string;
}

/** A command agent's turn: the arguments after the image's ENTRYPOINT (its whole command when it has none), and stdin. */
export interface TrialInvocation {
  args: readonly string[];
  stdin?: string;
}

export interface TrialSpec {
  image: string;
  /** The HTTP request to send to the agent inside the container (an HTTP agent); or else `invocation`. */
  request?: TrialRequest;
  /** A command agent: run with these arguments and this stdin; its answer is its exit code and stdout. */
  invocation?: TrialInvocation;
  /** TCP port the agent listens on inside the container (it is also given env PORT). */
  port: number;
  env: Record<string, string>;
  /**
   * Budget for the agent inside the container: start, listen, answer. The container itself gets
   * `trialStartAllowanceMs` more before it is killed.
   */
  timeoutMs: number;
  /**
   * The agent's state directory (absolute): the one place besides /tmp (a tmpfs) it may write, for the root
   * filesystem is read-only. A volume of the trial's own, owned by the agent's user: the snapshot's files exactly
   * when there is one, else what the image holds there.
   */
  stateDir?: string;
  /** The agent's state snapshot, a tar restored at `path` (absolute: the state directory) before start. */
  snapshot?: { path: string; tar: Buffer };
  /**
   * Default false: NetworkMode none, and the driver's replay proxy is the only thing the agent can reach
   * (MOSS_REPLAY_PROXY, HTTP_PROXY and HTTPS_PROXY name it): it answers from `cassette`, and a call the cassette does
   * not hold diverges the trial. True: Moss's own trial bridge (`<prefix>-trials`, trials cannot reach each other; never the engine's
   * default), real outbound calls, no proxy.
   */
  network?: boolean;
  /** The failure's recorded outbound calls (a `moss.cassette.v1`'s `calls`), served by the replay proxy. */
  cassette?: { calls: readonly unknown[] };
  /**
   * Base URLs an offline trial forwards calls the cassette does not hold to (a staging model), through an egress
   * proxy container that lets through only their hosts; such calls are `forwarded`, not diverged.
   */
  forward?: readonly string[];
  labels?: Record<string, string>;
}

export interface TrialResponse {
  status: number;
  body: string;
  headers: Record<string, string>;
}

/** One outbound call the agent made in a trial, and whether the cassette answered it. */
export interface TrialCall {
  method: string;
  url: string;
  outcome: "matched" | "forwarded" | "unmatched";
  /** The cassette's call that answered it. */
  index?: number;
}

export interface TrialResult {
  /** Response from the agent, if it answered. */
  response?: TrialResponse;
  /** Every outbound call the agent made, in order (none when the trial had the network). */
  calls: TrialCall[];
  /** The first call the cassette did not hold (`unrecorded call POST https://…`): the trial diverged from the failure. */
  diverged?: string;
  /** The budget ran out (the driver gave up waiting, or the runtime killed the container). */
  timedOut: boolean;
  /**
   * The pod could not start the agent at all (the engine refused: no such executable, a bad user, …): the trial says
   * nothing about the candidate's behaviour. Also in `error`.
   */
  notStarted?: string;
  /** Driver-level error (agent never listened, crashed, connection refused...), in words. */
  error?: string;
  /** Failures the agent reported itself (JSON lines of the file at env MOSS_REPLAY_FAILURE_FILE). */
  reportedFailures: unknown[];
  /** Combined agent stdout/stderr and driver messages (`[moss-driver] ...` lines). */
  logs: string;
  /** A command agent's stdout (its answer), capped like `logs`. */
  stdout?: string;
  /** Wall time of the whole trial, container create to remove. */
  durationMs: number;
  /**
   * Exit code of the agent process if it exited by itself during the trial (a crash); undefined
   * when it was still running at the end. 137 when the container was killed (timeout, OOM).
   */
  exitCode?: number;
}

export interface Runtime {
  /**
   * Checks the engine answers and moss/node-base (the trial driver's image) exists; throws a clear error saying to run
   * `npm run setup` otherwise. `baseImage: false` checks the engine only (deploying needs no Moss image).
   */
  ping(opts?: { baseImage?: boolean }): Promise<void>;
  /**
   * `git archive`s the commit of the repo at repoDir and builds it as image `tag` (labels
   * `moss.commit` + the given ones). Returns the full build log; on failure throws
   * ImageBuildError with the log attached (`.log`).
   */
  buildImage(opts: BuildImageOptions): Promise<BuildImageResult>;
  imageExists(tag: string): Promise<boolean>;
  /** Ephemeral isolated trial. The container is always removed (success, failure, timeout, crash). */
  runTrial(spec: TrialSpec): Promise<TrialResult>;
  /**
   * Fills the warm pool now (it fills itself on the first trial otherwise); resolves with how many are ready once
   * those being made are done. Without `like`, trial sidecars (image-independent). With `like`, warm pods for trials
   * like it — a started sidecar and the agent's volumes created and staged from its image (see `trialPoolSize`) — so
   * such a trial pays only its agent's create and start, and its request; an online trial, or one with an egress
   * proxy, takes none (0).
   */
  warmTrials(like?: TrialSpec): Promise<number>;
  /** Resolves once the pods of finished trials are removed (with a pool, they go behind the trials' results). */
  idle(): Promise<void>;
  /** Removes the warm pool and waits for the removals behind finished trials: call it when the process stops taking trials. */
  close(): Promise<void>;
  /**
   * Makes `image` the live container `<prefix>-live-<agent>` (host network, no restart). The
   * current live container, if any, is stopped and kept as `<prefix>-prev-<agent>` before the new
   * one starts. If the new one cannot start, the previous one is put back (LiveDeployError).
   */
  deployLive(spec: LiveSpec): Promise<DeployLiveResult>;
  /** Removes the live container and puts the previous one back live. NoPreviousVersionError if there is none. */
  rollbackLive(agent: string): Promise<{ container: string; image: string }>;
  liveStatus(agent: string): Promise<LiveStatus | undefined>;
  /** The live network (`<prefix>-live`), created when missing. */
  liveNetwork(): Promise<LiveNetwork>;
  /**
   * Starts a version of the agent on the live network, for the gateway to send traffic to: container
   * `<prefix>-serve-<agent>-<version12>`, listening on `port`, the agent's state volume mounted. A kept (stopped)
   * container of the same image is started again rather than made anew; one of another image under that name is
   * replaced. Other versions keep running.
   */
  serveVersion(spec: LiveSpec & { port: number }): Promise<ServedVersion>;
  /** Starts a kept served version again (a rollback to it); resolves with where it now listens. */
  resumeVersion(container: string): Promise<ServedVersion>;
  /** Stops a served version's container and keeps it, to start again on a rollback. */
  stopVersion(container: string): Promise<void>;
  /** A served version's container, or undefined when there is none. */
  versionStatus(container: string): Promise<ServedVersion | undefined>;
  /** The agent's state directory as a tar, read from one of its containers (running or stopped). */
  saveState(container: string, stateDir: string): Promise<Buffer>;
  /** Replaces the content of the agent's state volume with a tar `saveState` made (owners and modes kept). */
  restoreState(agent: string, stateDir: string, tar: Buffer): Promise<void>;
  /** The agent's served versions, newest first. */
  servedVersions(agent: string): Promise<ServedVersion[]>;
  /** Removes the agent's stopped served versions beyond the newest `keep`, never one named in `spare`. */
  pruneVersions(agent: string, keep: number, spare: readonly string[]): Promise<string[]>;
  /** Removes the agent's containers; with `state: true` also its state volume. */
  removeAgent(agent: string, opts?: { state?: boolean }): Promise<void>;
  /**
   * Removes what trials of this prefix left behind when their replayer died mid-trial (`kill -9`, a crash): their
   * containers and volumes, at once when the owner (label `moss.owner`: host, pid, start) was a process of this host
   * that is gone, else once older than `olderThanMs` (another host's owner cannot be asked). Trials of live replicas
   * are never touched. Returns how many containers.
   */
  removeStaleTrials(olderThanMs: number): Promise<number>;
}
