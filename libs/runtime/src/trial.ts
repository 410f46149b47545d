import { randomBytes, randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { rmSync } from "node:fs";
import path from "node:path";
import type Docker from "dockerode";
import tar from "tar-stream";
import type { ResolvedRuntimeConfig } from "./config";
import { constants } from "node:os";
import { demuxFrames } from "./demux";
import { engineMessage, isConnectionError, isNotFound, isRetryableDockerError, statusCodeOf } from "./docker";
import { BaseImageMissingError, DockerUnavailableError, ImageNotFoundError, InvalidSpecError, RuntimeError, TrialError } from "./errors";
import { egressProxyCode, socketDir, startNodeHelper, watchLines } from "./helper";
import { numericOwner, TRIAL_OWNER, trialNetwork, trialUser } from "./isolation";
import { createSidecar, POOLED_ROLE, sidecarConfig, type PodPool, type Sidecar, type SidecarPool, type WarmPod } from "./pool";
import { cleanSnapshot } from "./snapshot";
import { packTar } from "./tar";
import { BASE_IMAGE, type TrialCall, type TrialResponse, type TrialResult, type TrialSpec } from "./types";

/** Where Moss's files live inside a trial's agent container. */
const MOSS_DIR = "/moss";
const FAILURE_FILE = "/moss/out/failures.jsonl";
const MARKER = "MOSS_TRIAL_RESULT ";
/** Where the driver's replay proxy listens in the pod (the next port when the agent itself listens there). */
const REPLAY_PROXY_PORT = 15001;
/** Most failure reports read from one trial. */
const MAX_FAILURES = 1000;
/**
 * How long the runtime waits after the response for the agent to flush failure reports. The SDKs write a report
 * before the turn answers (captureFailure resolves once it is in the replay file), so this only covers an agent that
 * reports after answering; every millisecond of it is paid by every trial.
 */
const SETTLE_MS = 25;

let driverSource: Promise<Buffer> | undefined;
/** The driver script, read once from disk next to this file (src/driver/driver.mjs). */
export function loadDriver(): Promise<Buffer> {
  driverSource ??= readFile(new URL("./driver/driver.mjs", import.meta.url));
  return driverSource;
}

function validate(spec: TrialSpec): void {
  if (!spec.image) throw new InvalidSpecError("TrialSpec.image", "must not be empty");
  if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535) {
    throw new InvalidSpecError("TrialSpec.port", `${spec.port} must be an integer in 1..65535`);
  }
  if (!Number.isFinite(spec.timeoutMs) || spec.timeoutMs <= 0) {
    throw new InvalidSpecError("TrialSpec.timeoutMs", `${spec.timeoutMs} must be a positive number of milliseconds`);
  }
  if (Boolean(spec.request) === Boolean(spec.invocation)) throw new InvalidSpecError("TrialSpec", "needs exactly one of request (an HTTP agent) or invocation (a command agent)");
  if (spec.request && (!spec.request.method || !spec.request.path?.startsWith("/"))) {
    throw new InvalidSpecError("TrialSpec.request", "needs a method and a path starting with /");
  }
  if (spec.invocation && (!Array.isArray(spec.invocation.args) || spec.invocation.args.some((a) => typeof a !== "string"))) {
    throw new InvalidSpecError("TrialSpec.invocation.args", "must be an array of strings");
  }
  for (const [i, b] of (spec.forward ?? []).entries()) {
    let u: URL | undefined;
    try {
      u = new URL(b);
    } catch {
      u = undefined;
    }
    if (!u || (u.protocol !== "http:" && u.protocol !== "https:")) throw new InvalidSpecError(`TrialSpec.forward[${i}]`, `"${b}" must be an http(s) base URL`);
  }
  for (const [field, p] of [["TrialSpec.stateDir", spec.stateDir], ["TrialSpec.snapshot.path", spec.snapshot?.path]] as const) {
    if (p === undefined) continue;
    if (!path.posix.isAbsolute(p) || path.posix.normalize(p) !== p.replace(/(.)\/+$/, "$1") || p === "/") {
      throw new InvalidSpecError(field, `"${p}" must be an absolute, normalized path below /`);
    }
    if (p === MOSS_DIR || p.startsWith(`${MOSS_DIR}/`) || p === "/tmp" || p.startsWith("/tmp/")) {
      throw new InvalidSpecError(field, `"${p}" is reserved for the trial (${MOSS_DIR} for the driver, /tmp for its tmpfs)`);
    }
  }
  if (spec.stateDir && spec.snapshot && spec.stateDir.replace(/\/+$/, "") !== spec.snapshot.path.replace(/\/+$/, "")) {
    throw new InvalidSpecError("TrialSpec.snapshot.path", `"${spec.snapshot.path}" must be the state directory ${spec.stateDir}`);
  }
}

/** What a runtime keeps ahead for its trials, and where a trial's teardown goes when it is not awaited. */
export interface TrialPools {
  sidecars: SidecarPool;
  pods: PodPool;
  /** Given, a trial hands back its result as soon as it has it, and its pod is removed behind it. */
  defer?: (teardown: Promise<void>) => void;
}

/**
 * A trial's pod as its image and spec make it: the agent's user, its state directory, and which warm pods it can use
 * (`key`: of the same image by id, run as the same user, with the same state directory, a snapshot to come or not).
 */
export function podShape(imageInfo: Docker.ImageInspectInfo, spec: TrialSpec): { user: string; stateDir?: string; key: string } {
  const user = trialUser(imageInfo.Config.User);
  const stateDir = (spec.stateDir ?? spec.snapshot?.path)?.replace(/(.)\/+$/, "$1");
  return { user, ...(stateDir ? { stateDir } : {}), key: JSON.stringify([imageInfo.Id, user, stateDir ?? null, Boolean(spec.snapshot)]) };
}

/** A warm pod's volumes: its out volume, and its state volume when it has one. */
function podVolumes(pod: Pick<WarmPod, "outVolume" | "stateVolume">): string[] {
  return [pod.outVolume, ...(pod.stateVolume ? [pod.stateVolume] : [])];
}

/** Whether a trial could use a warm pod at all: offline, with no egress proxy (those need a sidecar made for them). */
export function podEligible(spec: TrialSpec): boolean {
  return !spec.network && !spec.forward?.length;
}

async function createVolumes(docker: Docker, names: string[], labels: Record<string, string>, made: string[]): Promise<void> {
  await Promise.all(
    names.map(async (Name) => {
      await docker.createVolume({ Name, Labels: labels });
      made.push(Name);
    }),
  );
}

/** The pod's volumes as mounts: Moss's out directory, and the state directory when the agent has one. */
function podMounts(outVolume: string, state: { volume: string; dir: string; noCopy: boolean } | undefined, labels: Record<string, string>): Docker.MountSettings[] {
  const volume = (Source: string, Target: string, NoCopy: boolean): Docker.MountSettings => ({
    Type: "volume",
    Source,
    Target,
    VolumeOptions: { NoCopy, Labels: labels, DriverConfig: { Name: "local", Options: {} } },
  });
  // With a snapshot, the state is the snapshot exactly; without, what the image holds there (copied in once).
  return [volume(outVolume, `${MOSS_DIR}/out`, true), ...(state ? [volume(state.volume, state.dir, state.noCopy)] : [])];
}

/**
 * A container of the candidate image that never runs: the engine lets files into a volume through it (its root is
 * writable, so a directory's own owner and mode can be set from its parent), and reads the image's users.
 */
function createStage(docker: Docker, cfg: ResolvedRuntimeConfig, id: string, imageId: string, mounts: Docker.MountSettings[], labels: Record<string, string>): Promise<Docker.Container> {
  return docker.createContainer({
    name: `${cfg.namePrefix}-trial-${id}-stage`,
    Image: imageId,
    Entrypoint: ["/moss-stage-never-runs"],
    Cmd: [],
    Labels: { ...labels, "moss.trial.stage": "1" },
    NetworkDisabled: true,
    HostConfig: { NetworkMode: "none", Mounts: mounts },
  });
}

/**
 * Fills the pod's volumes through its stage, in one upload (each costs the engine a mount of the container): with
 * `withDirs`, Moss's out directory, world-writable and sticky (the agent appends failure reports there), and the state
 * directory owned by the agent's user; and the snapshot, if any, as that directory's content.
 */
async function fillStage(stager: Docker.Container, cfg: ResolvedRuntimeConfig, image: string, user: string, stateDir: string | undefined, snapshot: Buffer | undefined, opts: { withDirs: boolean }): Promise<void> {
  let owner: { uid: number; gid: number };
  try {
    owner = await numericOwner(stager, user);
  } catch (err) {
    throw new TrialError(image, `the agent's user: ${(err as Error).message}; set USER to a uid, or a user the image's /etc/passwd holds`, false, { cause: err });
  }
  const outDir = { type: "directory" as const, name: "moss/out", mode: 0o1777, ...owner };
  const under = stateDir?.slice(1);
  const tarball =
    under && snapshot
      ? await cleanSnapshot(snapshot, { maxBytes: cfg.snapshotMaxBytes, maxEntries: cfg.snapshotMaxEntries }, image, { owner, under, first: opts.withDirs ? [outDir] : [] })
      : await packTar([outDir, ...(under ? [{ type: "directory" as const, name: under, mode: 0o755, ...owner }] : [])].map((d) => ({ ...d, name: `${d.name}/` })));
  try {
    await stager.putArchive(tarball, { path: "/" });
  } catch (err) {
    // A corrupt snapshot is a bad input, not a flaky engine.
    if (snapshot && (statusCodeOf(err) === 400 || statusCodeOf(err) === 500)) {
      throw new TrialError(image, `snapshot upload to ${stateDir}: is the snapshot a valid tar?`, false, { cause: err });
    }
    if (isConnectionError(err)) throw new DockerUnavailableError(cfg.socketPath, { cause: err });
    throw new TrialError(image, snapshot ? "snapshot upload" : "trial directories upload", isRetryableDockerError(err), { cause: err });
  }
}

/**
 * Makes a warm pod for trials like `spec` (see WarmPod): a started sidecar from the sidecar pool, the volumes, and the
 * staged directories; the stage stays when a snapshot is to come. Whatever fails on the way is removed.
 */
export async function makeWarmPod(docker: Docker, cfg: ResolvedRuntimeConfig, imageInfo: Docker.ImageInspectInfo, spec: TrialSpec, sidecars: SidecarPool): Promise<WarmPod> {
  const { user, stateDir, key } = podShape(imageInfo, spec);
  const id = randomBytes(6).toString("hex");
  const labels = { "moss.role": POOLED_ROLE, "moss.prefix": cfg.namePrefix, "moss.image": spec.image, "moss.trial": id, "moss.owner": TRIAL_OWNER, "moss.trial.pooled": "1" };
  const volumes: string[] = [];
  let stage: Docker.Container | undefined;
  let sidecar: Sidecar | undefined;
  try {
    const outVolume = `${cfg.namePrefix}-trial-${id}-out`;
    const stateVolume = stateDir ? `${cfg.namePrefix}-trial-${id}-state` : undefined;
    const made = sidecars.takeOrMake();
    await createVolumes(docker, [outVolume, ...(stateVolume ? [stateVolume] : [])], labels, volumes);
    stage = await createStage(docker, cfg, id, imageInfo.Id, podMounts(outVolume, stateVolume && stateDir ? { volume: stateVolume, dir: stateDir, noCopy: Boolean(spec.snapshot) } : undefined, labels), labels);
    const [filled, side] = await Promise.allSettled([fillStage(stage, cfg, spec.image, user, stateDir, undefined, { withDirs: true }), made]);
    if (side.status === "fulfilled") sidecar = side.value;
    if (filled.status === "rejected") throw filled.reason;
    if (side.status === "rejected") throw side.reason;
    if (!spec.snapshot) {
      await stage.remove({ force: true }).catch(() => undefined);
      stage = undefined;
    }
    return { key, id, sidecar: sidecar!, outVolume, ...(stateVolume ? { stateVolume } : {}), ...(stage ? { stage } : {}) };
  } catch (err) {
    await removePodParts(docker, { sidecar, stage, volumes });
    throw err;
  }
}

/** Removes a warm pod no trial will take. */
export function discardWarmPod(docker: Docker, pod: WarmPod): Promise<void> {
  return removePodParts(docker, { sidecar: pod.sidecar, stage: pod.stage, volumes: podVolumes(pod) });
}

/** Removes a pod's sidecar, stage and volumes (what a failed make left, or a warm pod no trial took). */
async function removePodParts(docker: Docker, parts: { sidecar?: Sidecar; stage?: Docker.Container; volumes: string[] }): Promise<void> {
  await Promise.all([parts.sidecar?.container, parts.stage].map((c) => c?.remove({ force: true, v: true }).catch(() => undefined)));
  await Promise.all(parts.volumes.map((v) => docker.getVolume(v).remove().catch(() => undefined)));
}

/**
 * One ephemeral, isolated trial, as a pod: the agent's container from the candidate image with its own entrypoint
 * (the image needs nothing from Moss: any language, any base), and the driver in a sidecar container from Moss's node
 * base image that joins the agent's network namespace — a shared loopback, nothing else. Time budget: the driver gives
 * the agent `timeoutMs` from its own start (listen + answer), then reports; the runtime kills the pod if it has not
 * finished `timeoutMs + trialStartAllowanceMs` after the agent's start request (the allowance covers the sidecar's
 * start, ~0.3 s here). The runtime watches the agent itself: a crash or an out-of-memory kill ends the trial at once.
 * Both containers are removed in every case.
 */
export async function runTrial(docker: Docker, cfg: ResolvedRuntimeConfig, spec: TrialSpec, pools?: TrialPools): Promise<TrialResult> {
  validate(spec);
  const startedAt = performance.now();
  const wrap = (stage: string, err: unknown): RuntimeError => {
    if (err instanceof RuntimeError) return err;
    if (isConnectionError(err)) return new DockerUnavailableError(cfg.socketPath, { cause: err });
    return new TrialError(spec.image, stage, isRetryableDockerError(err), { cause: err });
  };

  let imageInfo: Docker.ImageInspectInfo;
  try {
    imageInfo = await docker.getImage(spec.image).inspect();
  } catch (err) {
    if (isNotFound(err)) throw new ImageNotFoundError(spec.image, { cause: err });
    throw wrap("image inspect", err);
  }
  if (![...(imageInfo.Config.Entrypoint ?? []), ...(imageInfo.Config.Cmd ?? [])].length) {
    throw new TrialError(spec.image, "the image has no ENTRYPOINT or CMD: there is no agent command to start", false);
  }
  const nonce = randomUUID();
  // Offline, the driver's replay proxy is all the agent can reach; on a port the agent does not use.
  const proxyPort = spec.network ? undefined : spec.port === REPLAY_PROXY_PORT ? REPLAY_PROXY_PORT + 1 : REPLAY_PROXY_PORT;
  const forward = proxyPort && spec.forward?.length ? [...spec.forward] : undefined;
  const trialJson = {
    nonce,
    port: spec.port,
    request: spec.request,
    mode: spec.invocation ? "command" : "http",
    timeoutMs: spec.timeoutMs,
    readyTimeoutMs: spec.timeoutMs,
    proxyPort,
    cassette: spec.cassette,
    ...(forward ? { forward, egressSocket: "/egress/proxy.sock" } : {}),
  };
  const proxyEnv: Record<string, string> = proxyPort
    ? Object.fromEntries([
        ["MOSS_REPLAY_PROXY", `http://127.0.0.1:${proxyPort}`],
        ...["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"].map((k) => [k, `http://127.0.0.1:${proxyPort}`]),
        ["NO_PROXY", ""],
        ["no_proxy", ""],
      ])
    : {};
  const { user, stateDir, key } = podShape(imageInfo, spec);
  // A pod made ahead for this image, if the runtime keeps some and the trial can use one (offline, no egress).
  const warm = podEligible(spec) ? pools?.pods.take(key) : undefined;
  const id = warm?.id ?? randomBytes(6).toString("hex");
  const roleLabels = { "moss.role": "trial", "moss.prefix": cfg.namePrefix, "moss.image": spec.image, "moss.trial": id, "moss.owner": TRIAL_OWNER };

  let sidecar: Docker.Container | undefined = warm?.sidecar.container;
  let agent: Docker.Container | undefined;
  let stage: Docker.Container | undefined = warm?.stage;
  let stageRemoved: Promise<unknown> | undefined;
  let egress: { container?: Docker.Container; dir: string } | undefined;
  const volumes: string[] = warm ? podVolumes(warm) : [];
  let driverSettled: Promise<unknown> = Promise.resolve(undefined);
  // What the trial leaves goes once the trial is over: before its result, or behind it when the runtime says so.
  const teardown = async () => {
    await driverSettled;
    await stageRemoved;
    await Promise.all([agent, stage, sidecar, egress?.container].map((c) => c?.remove({ force: true, v: true }).catch(() => undefined)));
    if (egress) rmSync(egress.dir, { recursive: true, force: true });
    await Promise.all(volumes.map((v) => docker.getVolume(v).remove().catch(() => undefined)));
  };

  try {
    if (forward) {
      // The sidecar's only way out, for the allow-listed hosts only: an egress proxy on the bridge, reached through a
      // unix socket in a directory only the two share (the agent shares the sidecar's network, not its files).
      const dir = socketDir("moss-trial-egress-");
      egress = { dir };
      try {
        egress.container = await startNodeHelper(docker, {
          name: `${cfg.namePrefix}-trial-${id}-egress`,
          code: egressProxyCode(),
          env: [`MOSS_EGRESS_ALLOW=${forward.map(hostPortOf).join(",")}`, "MOSS_EGRESS_LISTEN=/egress/proxy.sock"],
          networkMode: await trialNetwork(docker, cfg.namePrefix),
          binds: [`${dir}:/egress`],
          labels: { ...roleLabels, "moss.trial.egress": "1" },
        });
      } catch (err) {
        if (isNotFound(err)) throw new BaseImageMissingError(BASE_IMAGE, { cause: err });
        throw wrap("trial egress start", err);
      }
    }

    // The sidecar first: it owns the pod's network namespace, and its replay proxy listens before the agent starts,
    // so an agent that calls out while it starts is answered too. An offline trial takes a started one from the warm
    // pool when there is one; it gets ready while the agent's files are staged.
    const pooled = !warm && !spec.network && !egress ? pools?.sidecars.take() : undefined;
    let driverIn: Sidecar;
    try {
      driverIn =
        warm?.sidecar ??
        pooled ??
        (await createSidecar(docker, sidecarConfig(cfg, id, (await loadDriver()).toString("utf8"), spec.network ? await trialNetwork(docker, cfg.namePrefix) : "none", egress ? [`${egress.dir}:/egress`] : [], roleLabels)));
    } catch (err) {
      if (isNotFound(err)) throw new BaseImageMissingError(BASE_IMAGE, { cause: err });
      throw wrap("trial driver create", err);
    }
    sidecar = driverIn.container;
    const driverReady = (async (d: Sidecar) => {
      try {
        const { seen } = await watchLines(docker, d.container, (l) => l.includes("[moss-driver]") && l.includes("ready"), { ms: 10_000 });
        if (!pooled && !warm) await d.container.start();
        d.stdin.end(JSON.stringify(trialJson));
        if (!(await seen)) throw new Error("the trial driver did not get ready within 10 s");
      } catch (err) {
        if (isNotFound(err)) throw new BaseImageMissingError(BASE_IMAGE, { cause: err });
        throw wrap("trial driver start", err);
      }
    })(driverIn);
    // Settled either way before the pod goes on (or is cleaned up): no start races the removal.
    driverSettled = driverReady.then(
      () => undefined,
      (err: unknown) => err,
    );
    const sidecarId = sidecar.id;

    // The agent's only writable places, besides a tmpfs /tmp: Moss's out directory and its state directory, as volumes
    // of this trial's own, filled and owned by the agent's user before the agent exists (its root is read-only). A warm
    // pod has them made and staged already; only its snapshot, if any, is still to go in.
    const outVolume = warm?.outVolume ?? `${cfg.namePrefix}-trial-${id}-out`;
    const stateVolume = warm ? warm.stateVolume : stateDir ? `${cfg.namePrefix}-trial-${id}-state` : undefined;
    if (!warm) {
      try {
        await createVolumes(docker, [outVolume, ...(stateVolume ? [stateVolume] : [])], roleLabels, volumes);
      } catch (err) {
        throw wrap("trial volume create", err);
      }
    }
    const mounts = (forStage: boolean) => podMounts(outVolume, stateVolume && stateDir ? { volume: stateVolume, dir: stateDir, noCopy: forStage ? Boolean(spec.snapshot) : true } : undefined, roleLabels);
    if (!warm) {
      try {
        stage = await createStage(docker, cfg, id, imageInfo.Id, mounts(true), roleLabels);
      } catch (err) {
        if (isNotFound(err)) throw new ImageNotFoundError(spec.image, { cause: err });
        throw wrap("trial staging create", err);
      }
    }
    // Staging (the agent's user, then one upload) and creating the agent's container go at once: the container only
    // names the volumes, and it is started only once they are filled.
    const stager = stage;
    // (A warm pod keeps its stage only when a snapshot is to come: its directories are in already.)
    const staged = stager ? fillStage(stager, cfg, spec.image, user, stateDir, spec.snapshot?.tar, { withDirs: !warm }) : Promise.resolve();
    const created = (async () => {
      try {
        agent = await docker.createContainer({
          name: `${cfg.namePrefix}-trial-${id}`,
          // The image id, not the tag: the tag may move while the trial runs. Its own entrypoint and command.
          Image: imageInfo.Id,
          // The image's user, never root.
          User: user,
          Env: Object.entries({ ...spec.env, ...proxyEnv, PORT: String(spec.port), MOSS_REPLAY: "1", MOSS_REPLAY_FAILURE_FILE: FAILURE_FILE }).map(([k, v]) => `${k}=${v}`),
          Labels: { ...spec.labels, ...roleLabels },
          Tty: false,
          // A command agent: its recorded arguments after the image's ENTRYPOINT, and its stdin.
          ...(spec.invocation ? { Cmd: [...spec.invocation.args], OpenStdin: true, StdinOnce: true, AttachStdin: true } : {}),
          HostConfig: {
            // The sidecar's network: a loopback they share (and the trial bridge, if the agent's config says so).
            NetworkMode: `container:${sidecarId}`,
            Memory: cfg.trialMemoryBytes,
            MemorySwap: cfg.trialMemoryBytes,
            PidsLimit: cfg.trialPidsLimit,
            NanoCpus: Math.round(cfg.trialCpus * 1e9),
            CapDrop: ["ALL"],
            SecurityOpt: ["no-new-privileges"],
            ReadonlyRootfs: true,
            // Counted against the memory limit, like any tmpfs.
            Tmpfs: { "/tmp": `rw,nosuid,nodev,size=${Math.max(1, Math.floor(cfg.trialMemoryBytes / 4 / 2 ** 20))}m,mode=1777` },
            Binds: [],
            Mounts: mounts(false),
            Privileged: false,
            RestartPolicy: { Name: "no" },
          },
        });
      } catch (err) {
        if (isNotFound(err)) throw new ImageNotFoundError(spec.image, { cause: err });
        throw wrap("container create", err);
      }
    })();
    const [st, cr] = await Promise.allSettled([staged, created]);
    // The stage is done with; it goes while the agent starts (the teardown waits for it).
    if (stager) stageRemoved = stager.remove({ force: true }).catch(() => undefined);
    stage = undefined;
    if (st.status === "rejected") throw st.reason;
    if (cr.status === "rejected") throw cr.reason;
    const pod = agent!;
    const driverFailed = await driverSettled;
    if (driverFailed) throw driverFailed;

    // The hard limit counts from the agent's start request; the driver's own budget starts when it is told the agent
    // started, so with no allowance the runtime always acts first.
    const hardDeadline = performance.now() + spec.timeoutMs + cfg.trialStartAllowanceMs;
    const stdin = spec.invocation ? ((await pod.attach({ stream: true, stdin: true, hijack: true })) as NodeJS.ReadWriteStream) : undefined;
    try {
      await pod.start();
    } catch (err) {
      // The engine says why: "exec: \"python3\": executable file not found in $PATH", …
      const why = `the agent could not be started: ${engineMessage(err)}`;
      return { timedOut: false, reportedFailures: [], calls: [], logs: "", durationMs: Math.round(performance.now() - startedAt), error: why, notStarted: why };
    }
    const agentExited = (pod.wait() as Promise<{ StatusCode: number }>).then((w) => w.StatusCode).catch(() => undefined);
    const driver = sidecar;
    const driverExited = (driver.wait() as Promise<{ StatusCode: number }>).then((w) => w.StatusCode).catch(() => undefined);
    // Go: the driver's budget starts now.
    await driver.kill({ signal: "SIGUSR1" }).catch(() => undefined);
    if (stdin) stdin.end(spec.invocation!.stdin ?? "");

    let timer: NodeJS.Timeout | undefined;
    const first = await Promise.race([
      driverExited.then(() => "driver" as const),
      agentExited.then(() => "agent" as const),
      new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), Math.max(0, hardDeadline - performance.now())))),
    ]);
    clearTimeout(timer);
    let agentCode: number | undefined;
    if (first === "agent" && spec.invocation) {
      agentCode = await agentExited;
      // A command agent's turn ends with it: the driver reports the calls it answered.
      await driver.kill({ signal: "SIGUSR2" }).catch(() => undefined);
      await Promise.race([driverExited, sleep(2_000)]);
    } else if (first === "agent") {
      agentCode = await agentExited;
      // The driver may be reading the agent's last answer: a moment, then it goes.
      await Promise.race([driverExited, sleep(AGENT_EXIT_GRACE_MS)]);
    } else if (first === "driver") {
      // Let the agent flush failure reports it writes after answering (or die of what it just did).
      const late = await Promise.race([agentExited, sleep(SETTLE_MS).then(() => "running" as const)]);
      if (late !== "running") agentCode = late;
    }
    await driver.kill().catch(() => undefined);
    // What the trial left, read at once: the driver's and the agent's logs, the failures it reported, an OOM kill.
    const [driverLogs, agentLogs, reportedFailures, oom] = await Promise.all([
      logLines(driver),
      logLines(pod),
      readFailuresFromContainer(pod),
      agentCode !== undefined && pod.inspect().then((i) => i.State.OOMKilled === true, () => false),
    ]);
    const { marker } = extractResult(driverLogs.filter((l) => l.stream === "stdout").map((l) => l.text).join("\n"), nonce);
    const logs = [...agentLogs, ...driverLogs.filter((l) => l.stream === "stderr")]
      .map((l, i) => ({ ...l, i }))
      .sort((a, b) => a.at - b.at || a.i - b.i)
      .map((l) => l.text)
      .join("\n");
    const result: TrialResult = {
      timedOut: first === "timeout" || marker?.timedOut === true,
      reportedFailures,
      calls: marker?.calls ?? [],
      logs: truncateHead(logs, cfg.trialLogLimitBytes),
      durationMs: 0,
    };
    if (agentCode !== undefined) result.exitCode = agentCode;
    if (marker?.diverged) result.diverged = marker.diverged;
    const exit = agentCode !== undefined ? describeExit(agentCode) : undefined;
    const oomNote = oom ? ` (out of memory: the trial's limit is ${cfg.trialMemoryBytes} bytes)` : "";
    if (spec.invocation) result.stdout = truncateHead(agentLogs.filter((l) => l.stream === "stdout").map((l) => l.text).join("\n"), cfg.trialLogLimitBytes);
    if (first === "timeout") {
      result.error = `the trial did not finish within ${spec.timeoutMs} ms (+${cfg.trialStartAllowanceMs} ms start allowance) and was killed`;
      result.exitCode = 137;
    } else if (spec.invocation) {
      // A command's answer is its exit code and stdout; only a kill is an error of the trial's.
      if (oom) result.error = `${exit}${oomNote}`;
      else if (!marker) result.error = "the trial driver exited without reporting the calls it answered";
    } else if (marker?.response && !(exit && marker.requestFailed)) {
      result.response = marker.response;
      if (marker.error) result.error = marker.error;
    } else if (exit) {
      const sent = driverLogs.some((l) => l.text.includes("agent listening on"));
      result.error = `${exit} ${sent ? "while handling the request" : `before listening on port ${spec.port}`}${oomNote}`;
    } else if (marker) {
      if (marker.error) result.error = marker.error;
    } else {
      result.error = "the trial driver exited without reporting a result";
    }
    result.durationMs = Math.round(performance.now() - startedAt);
    return result;
  } finally {
    if (pools?.defer) pools.defer(teardown());
    else await teardown();
  }
}

/** `host:port` of a base URL, as the egress proxy's allow-list takes it. */
function hostPortOf(base: string): string {
  const u = new URL(base);
  return `${u.hostname}:${u.port || (u.protocol === "https:" ? 443 : 80)}`;
}

/** How long the driver may still finish after the agent exited (it may be reading the agent's last answer). */
const AGENT_EXIT_GRACE_MS = 300;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** An exit status as a shell reports it: 128 + n is a process killed by signal n. */
function describeExit(code: number): string {
  const sig = code > 128 ? Object.entries(constants.signals).find(([, n]) => n === code - 128)?.[0] : undefined;
  return sig ? `the agent was killed by ${sig}` : `the agent exited with code ${code}`;
}



/** A container's log, line by line, with the engine's timestamps (for merging two containers' logs in order). */
async function logLines(c: Docker.Container): Promise<{ at: number; stream: "stdout" | "stderr"; text: string }[]> {
  let raw: Buffer;
  try {
    raw = (await c.logs({ stdout: true, stderr: true, follow: false, timestamps: true })) as unknown as Buffer;
  } catch {
    return [];
  }
  const out: { at: number; stream: "stdout" | "stderr"; text: string }[] = [];
  for (const f of demuxFrames(raw)) {
    for (const line of f.payload.toString("utf8").split("\n")) {
      if (!line) continue;
      const sp = line.indexOf(" ");
      const at = Date.parse(line.slice(0, sp));
      out.push(Number.isNaN(at) ? { at: 0, stream: f.stream, text: line } : { at, stream: f.stream, text: line.slice(sp + 1) });
    }
  }
  return out;
}

interface MarkerResult {
  nonce?: string;
  response?: TrialResponse;
  timedOut?: boolean;
  error?: string;
  /** The request was sent and failed (the connection closed under it). */
  requestFailed?: boolean;
  calls?: TrialCall[];
  diverged?: string;
}

/** Finds the driver's result line (the last one carrying our nonce) and removes it from the logs. */
export function extractResult(text: string, nonce: string): { logs: string; marker?: MarkerResult } {
  const lines = text.split("\n");
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i] ?? "";
    if (!line.startsWith(MARKER)) continue;
    let parsed: MarkerResult;
    try {
      parsed = JSON.parse(line.slice(MARKER.length)) as MarkerResult;
    } catch {
      continue;
    }
    if (parsed.nonce !== nonce) continue;
    lines.splice(i, 1);
    const marker: MarkerResult = { ...parsed };
    delete marker.nonce;
    return { logs: lines.join("\n"), marker };
  }
  return { logs: text };
}

function truncateHead(text: string, limit: number): string {
  const buf = Buffer.from(text, "utf8");
  if (buf.length <= limit) return text;
  const cut = buf.length - limit;
  return `[... ${cut} bytes of earlier logs dropped ...]\n${buf.subarray(cut).toString("utf8")}`;
}

/** Reads /moss/out/failures.jsonl from the agent's container (running or stopped), at most MAX_FAILURES of them. */
async function readFailuresFromContainer(container: Docker.Container): Promise<unknown[]> {
  let archive: NodeJS.ReadableStream;
  try {
    archive = await container.getArchive({ path: FAILURE_FILE });
  } catch {
    return [];
  }
  const text = await new Promise<string>((resolve) => {
    const chunks: Buffer[] = [];
    const extract = tar.extract();
    extract.on("entry", (_header, stream, next) => {
      stream.on("data", (c: unknown) => chunks.push(c as Buffer));
      stream.on("end", () => next());
      stream.resume();
    });
    extract.on("finish", () => resolve(Buffer.concat(chunks).toString("utf8")));
    extract.on("error", () => resolve(Buffer.concat(chunks).toString("utf8")));
    archive.pipe(extract as unknown as NodeJS.WritableStream);
  });
  return text
    .split("\n")
    .filter((l) => l.trim())
    .slice(0, MAX_FAILURES)
    .map((l) => {
      try {
        return JSON.parse(l) as unknown;
      } catch {
        return { unparsable: l };
      }
    });
}
