import { Readable } from "node:stream";
import type Docker from "dockerode";
import { BuildLog } from "./build-log";
import type { ResolvedRuntimeConfig } from "./config";
import { isConnectionError, toRuntimeError } from "./docker";
import { DockerUnavailableError, ImageBuildError, InvalidSpecError } from "./errors";
import { archiveCommit } from "./git-archive";
import type { BuildImageOptions, BuildImageResult } from "./types";

const ANSI = /\u001b\[[0-9;]*[A-Za-z]/g;

/**
 * Builds `opts.tag` from the tree of `opts.commit` (`git archive`, so only committed files count).
 *
 * BuildKit (API `version: "2"`) is the default: on this engine (20.10, API 1.41) it builds FROM the
 * local-only `moss/node-base` without trying a registry, and is about twice as fast as the legacy
 * builder. RUN steps get no network (`networkmode: "none"`): agent Dockerfiles only bundle what the
 * context holds, and candidate code is not trusted.
 */
export async function buildImage(docker: Docker, cfg: ResolvedRuntimeConfig, opts: BuildImageOptions): Promise<BuildImageResult> {
  if (!opts.tag) throw new InvalidSpecError("tag", "must not be empty");
  const { sha, tar } = await archiveCommit(opts.repoDir, opts.commit);
  const labels = { ...opts.labels, "moss.commit": sha };
  const log = new BuildLog();
  const fail = (reason: string, cause?: unknown): ImageBuildError =>
    new ImageBuildError(opts.tag, sha, log.text(), reason, cause === undefined ? undefined : { cause });

  // The deadline covers the whole build: the request, the streamed steps, and the final inspect.
  const abort = new AbortController();
  let timedOut = false;
  const deadline = setTimeout(() => {
    timedOut = true;
    log.note(`ERROR: cancelled after ${cfg.buildTimeoutMs} ms`);
    abort.abort();
  }, cfg.buildTimeoutMs);
  const timeoutReason = () =>
    `the build did not finish within ${cfg.buildTimeoutMs} ms and was cancelled (a RUN step that hangs, or a build slower than buildTimeoutMs allows: rewriter.buildTimeoutMs in the Moss config)`;
  try {
    return await build();
  } catch (err) {
    // Aborting the request surfaces as a broken connection; after the deadline, that is the timeout's doing.
    if (timedOut) throw fail(timeoutReason(), err);
    throw err;
  } finally {
    clearTimeout(deadline);
  }

  async function build(): Promise<BuildImageResult> {
    let stream: NodeJS.ReadableStream;
    try {
      stream = await docker.buildImage(Readable.from([tar]), {
        abortSignal: abort.signal,
        t: opts.tag,
        labels,
        version: cfg.builder === "buildkit" ? "2" : "1",
        rm: true,
        forcerm: true,
        networkmode: "none",
      });
    } catch (err) {
      if (isConnectionError(err)) throw new DockerUnavailableError(cfg.socketPath, { cause: err });
      // The legacy builder rejects a Dockerfile that does not parse with HTTP 400 before streaming.
      const reason = err instanceof Error ? err.message : String(err);
      log.note(`ERROR: ${reason}`);
      throw fail(reason, err);
    }

    let error: string | undefined;
    let builtId: string | undefined;
    try {
      await forEachLine(stream, (line) => {
        let msg: BuildMessage;
        try {
          msg = JSON.parse(line) as BuildMessage;
        } catch {
          log.raw(`${line}\n`);
          return;
        }
        if (msg.id === "moby.buildkit.trace" && typeof msg.aux === "string") log.add(msg.aux);
        else if (isImageId(msg.aux)) builtId = msg.aux.ID; // "moby.image.id" (BuildKit) or the legacy final aux
        else if (msg.error !== undefined || msg.errorDetail !== undefined) {
          error = msg.errorDetail?.message ?? msg.error ?? "unknown error";
          log.note(`ERROR: ${error}`);
        } else if (typeof msg.stream === "string") log.raw(msg.stream.replace(ANSI, ""));
        else if (typeof msg.status === "string") log.note(msg.status);
      });
    } catch (err) {
      if (isConnectionError(err)) throw new DockerUnavailableError(cfg.socketPath, { cause: err });
      throw fail(`the build stream broke: ${err instanceof Error ? err.message : String(err)}`, err);
    }
    if (error !== undefined) {
      // No registry is reachable: a FROM of an image that is not local fails with a DNS/pull error.
      const hint = /registry-1\.docker\.io|pull access denied|no such host|failed to resolve/i.test(error)
        ? " (no registry is reachable: every FROM image must exist locally; `npm run setup` builds moss/node-base and moss/python-base)"
        : "";
      throw fail(error + hint);
    }

    let imageId: string;
    try {
      const tagged = (await docker.getImage(opts.tag).inspect()).Id;
      // A concurrent build of the same tag may have moved it since: report what this build made.
      imageId = builtId ?? tagged;
    } catch (err) {
      if (isConnectionError(err)) throw toRuntimeError(err, "image inspect", cfg.socketPath);
      throw fail(`the build reported success but image ${opts.tag} cannot be inspected`, err);
    }
    log.note(`built ${opts.tag} (${imageId}) from commit ${sha}`);
    return { image: opts.tag, imageId, log: log.text() };
  }
}

interface BuildMessage {
  id?: string;
  aux?: unknown;
  stream?: string;
  status?: string;
  error?: string;
  errorDetail?: { message?: string };
}

function isImageId(aux: unknown): aux is { ID: string } {
  return typeof aux === "object" && aux !== null && typeof (aux as { ID?: unknown }).ID === "string";
}

/** Calls `fn` for each non-empty line of a JSON-lines stream; resolves when it ends. */
function forEachLine(stream: NodeJS.ReadableStream, fn: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = "";
    let done = false;
    const finish = (err?: unknown): void => {
      if (done) return;
      done = true;
      if (err) {
        reject(err);
        return;
      }
      if (buf.trim()) fn(buf.trim());
      resolve();
    };
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      buf += chunk;
      const lines = buf.split("\n");
      buf = lines.pop() ?? "";
      for (const l of lines) if (l.trim()) fn(l.trim());
    });
    let ended = false;
    stream.on("end", () => {
      ended = true;
      finish();
    });
    stream.on("close", () => finish(ended ? undefined : new Error("the engine closed the build stream before its end")));
    stream.on("error", (err) => finish(err));
  });
}
