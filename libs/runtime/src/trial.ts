import { randomBytes, randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import type Docker from "dockerode";
import tar from "tar-stream";
import type { ResolvedRuntimeConfig } from "./config";
import { demuxDockerStream } from "./demux";
import { isConnectionError, isNotFound, isRetryableDockerError, statusCodeOf } from "./docker";
import { DockerUnavailableError, ImageNotFoundError, InvalidSpecError, RuntimeError, TrialError } from "./errors";
import { cleanSnapshot } from "./snapshot";
import { packTar, type TarEntry } from "./tar";
import type { TrialResponse, TrialResult, TrialSpec } from "./types";

/** Where the driver and its files live inside a trial container. */
const MOSS_DIR = "/moss";
const FAILURE_FILE = "/moss/out/failures.jsonl";
const MARKER = "MOSS_TRIAL_RESULT ";
/** How long the driver waits after the response for the agent to flush failure reports. */
const SETTLE_MS = 100;

let driverSource: Promise<Buffer> | undefined;
/** The driver script, read once from disk next to this file (src/driver/driver.mjs). */
function loadDriver(): Promise<Buffer> {
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
  if (!spec.request?.method || !spec.request.path?.startsWith("/")) {
    throw new InvalidSpecError("TrialSpec.request", "needs a method and a path starting with /");
  }
  if (spec.snapshot) {
    const p = spec.snapshot.path;
    if (!path.posix.isAbsolute(p) || path.posix.normalize(p) !== p.replace(/(.)\/+$/, "$1")) {
      throw new InvalidSpecError("TrialSpec.snapshot.path", `"${p}" must be an absolute, normalized path`);
    }
    if (p === MOSS_DIR || p.startsWith(`${MOSS_DIR}/`)) {
      throw new InvalidSpecError("TrialSpec.snapshot.path", `"${p}" is reserved for the trial driver`);
    }
  }
}

/**
 * One ephemeral, isolated trial. Time budget: the driver inside gives the agent `timeoutMs` from
 * its own start (agent start + listen + answer), then reports; the runtime kills the container if
 * it has not exited `timeoutMs + trialStartAllowanceMs` after the start request (the allowance
 * covers container start, ~0.2 s here, and the driver's boot). The container is removed in every case.
 */
export async function runTrial(docker: Docker, cfg: ResolvedRuntimeConfig, spec: TrialSpec): Promise<TrialResult> {
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
  const cfgImg = imageInfo.Config;
  const command = [...(cfgImg.Entrypoint ?? []), ...(cfgImg.Cmd ?? [])];
  const nonce = randomUUID();
  const trialJson = {
    nonce,
    command,
    cwd: cfgImg.WorkingDir || "/",
    port: spec.port,
    env: { ...spec.env, PORT: String(spec.port), MOSS_REPLAY: "1", MOSS_REPLAY_FAILURE_FILE: FAILURE_FILE },
    request: spec.request,
    timeoutMs: spec.timeoutMs,
    readyTimeoutMs: spec.timeoutMs,
    settleMs: SETTLE_MS,
  };

  let container: Docker.Container;
  try {
    container = await docker.createContainer({
      name: `${cfg.namePrefix}-trial-${randomBytes(6).toString("hex")}`,
      // The image id, not the tag: the tag may move while the trial runs.
      Image: imageInfo.Id,
      Entrypoint: ["/usr/bin/node"],
      Cmd: [`${MOSS_DIR}/driver.mjs`],
      Labels: { ...spec.labels, "moss.role": "trial", "moss.prefix": cfg.namePrefix, "moss.image": spec.image },
      Tty: false,
      HostConfig: {
        NetworkMode: spec.network ? "bridge" : "none",
        Memory: cfg.trialMemoryBytes,
        MemorySwap: cfg.trialMemoryBytes,
        PidsLimit: cfg.trialPidsLimit,
        NanoCpus: Math.round(cfg.trialCpus * 1e9),
        CapDrop: ["ALL"],
        SecurityOpt: ["no-new-privileges"],
        Binds: [],
        Mounts: [],
        Privileged: false,
        RestartPolicy: { Name: "no" },
      },
    });
  } catch (err) {
    if (isNotFound(err)) throw new ImageNotFoundError(spec.image, { cause: err });
    throw wrap("container create", err);
  }

  try {
    const entries: TarEntry[] = [
      { type: "directory", name: "moss/", mode: 0o755 },
      { type: "file", name: "moss/driver.mjs", content: await loadDriver(), mode: 0o644 },
      { type: "file", name: "moss/trial.json", content: JSON.stringify(trialJson), mode: 0o644 },
      // World-writable: the agent may run as a non-root USER and must append failure reports.
      { type: "directory", name: "moss/out/", mode: 0o1777 },
    ];
    if (spec.snapshot) {
      // putArchive needs its target directory; the engine creates missing parents (0755), and an
      // existing directory keeps its owner and mode because it is not in any tar we send.
      let exists = true;
      try {
        await container.infoArchive({ path: spec.snapshot.path });
      } catch (err) {
        if (!isNotFound(err)) throw wrap("snapshot path check", err);
        exists = false;
      }
      if (!exists) entries.push({ type: "directory", name: `${spec.snapshot.path.slice(1).replace(/\/+$/, "")}/`, mode: 0o755 });
    }
    try {
      await container.putArchive(await packTar(entries), { path: "/" });
    } catch (err) {
      throw wrap("driver upload", err);
    }
    if (spec.snapshot) {
      const clean = await cleanSnapshot(spec.snapshot.tar, { maxBytes: cfg.snapshotMaxBytes, maxEntries: cfg.snapshotMaxEntries }, spec.image);
      try {
        await container.putArchive(clean, { path: spec.snapshot.path });
      } catch (err) {
        // A corrupt snapshot is a bad input, not a flaky engine.
        if (statusCodeOf(err) === 400 || statusCodeOf(err) === 500) {
          throw new TrialError(spec.image, `snapshot upload to ${spec.snapshot.path}: is the snapshot a valid tar?`, false, { cause: err });
        }
        throw wrap("snapshot upload", err);
      }
    }

    // The hard limit counts from the start request: the driver's own budget starts later (after
    // the engine started it and node booted), so with no allowance the runtime always acts first.
    const hardDeadline = performance.now() + spec.timeoutMs + cfg.trialStartAllowanceMs;
    try {
      await container.start();
    } catch (err) {
      throw wrap("container start", err);
    }
    const waited = container.wait() as Promise<{ StatusCode: number }>;
    let killed = false;
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      waited.then((w) => ({ exit: w.StatusCode })),
      new Promise<"timeout">((r) => {
        timer = setTimeout(() => r("timeout"), Math.max(0, hardDeadline - performance.now()));
      }),
    ]).catch((err: unknown) => {
      throw wrap("container wait", err);
    });
    clearTimeout(timer);
    let statusCode: number | undefined;
    if (outcome === "timeout") {
      killed = true;
      await container.kill().catch(() => undefined); // 409 when it exited meanwhile
      statusCode = (await waited.catch(() => ({ StatusCode: 137 }))).StatusCode;
    } else statusCode = outcome.exit;

    let raw: Buffer;
    try {
      raw = (await container.logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer;
    } catch (err) {
      throw wrap("logs", err);
    }
    const { logs, marker } = extractResult(demuxDockerStream(raw).combined.toString("utf8"), nonce);
    const result: TrialResult = {
      timedOut: killed || marker?.timedOut === true,
      reportedFailures: marker?.reportedFailures ?? [],
      logs: truncateHead(logs, cfg.trialLogLimitBytes),
      durationMs: 0,
    };
    if (marker?.response) result.response = marker.response;
    if (marker?.error) result.error = marker.error;
    if (marker?.exitCode !== undefined) result.exitCode = marker.exitCode;

    if (!marker) {
      // The driver did not get to report: collect what we can from the stopped container.
      result.reportedFailures = await readFailuresFromContainer(container);
      if (killed) {
        result.error = `the trial did not finish within ${spec.timeoutMs} ms (+${cfg.trialStartAllowanceMs} ms start allowance) and was killed`;
        result.exitCode = 137;
      } else {
        const oom = await container
          .inspect()
          .then((i) => i.State.OOMKilled)
          .catch(() => false);
        result.error = oom
          ? `the trial container ran out of memory (limit ${cfg.trialMemoryBytes} bytes) and was killed`
          : `the trial driver exited with code ${statusCode} without reporting a result`;
        result.exitCode = statusCode;
      }
    }
    result.durationMs = Math.round(performance.now() - startedAt);
    return result;
  } finally {
    await container.remove({ force: true, v: true }).catch(() => undefined);
  }
}

interface MarkerResult {
  nonce?: string;
  response?: TrialResponse;
  timedOut?: boolean;
  error?: string;
  reportedFailures?: unknown[];
  exitCode?: number;
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
    const marker: MarkerResult = { ...parsed, reportedFailures: Array.isArray(parsed.reportedFailures) ? parsed.reportedFailures : [] };
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

/** Reads /moss/out/failures.jsonl from a stopped container (used when the driver was killed). */
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
    .map((l) => {
      try {
        return JSON.parse(l) as unknown;
      } catch {
        return { unparsable: l };
      }
    });
}
