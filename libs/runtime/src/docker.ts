import Docker from "dockerode";
import { DockerError, DockerUnavailableError, type RuntimeError } from "./errors";

/** The engine this package was verified against speaks API 1.41 (Docker 20.10). */
export function createDockerClient(socketPath: string): Docker {
  return new Docker({ socketPath });
}

/** HTTP status of a dockerode error, if the engine answered. */
export function statusCodeOf(err: unknown): number | undefined {
  const s = typeof err === "object" && err !== null ? (err as { statusCode?: unknown }).statusCode : undefined;
  return typeof s === "number" ? s : undefined;
}

/** What the engine said, in its own words (the JSON message of its answer), else the error's message. */
export function engineMessage(err: unknown): string {
  const j = (err as { json?: { message?: string } }).json;
  return (j?.message ?? (err as Error).message ?? String(err)).trim();
}

export function isNotFound(err: unknown): boolean {
  return statusCodeOf(err) === 404;
}

const CONNECTION_CODES = new Set(["ECONNREFUSED", "ENOENT", "EACCES", "EPERM", "ECONNRESET", "EPIPE", "ENOTSOCK", "ETIMEDOUT"]);

/** The socket could not be reached at all (as opposed to the engine answering with an error). */
export function isConnectionError(err: unknown): boolean {
  if (statusCodeOf(err) !== undefined) return false;
  const code = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === "string" && CONNECTION_CODES.has(code);
}

/** Whether retrying an engine call can help: connection trouble or a 5xx. */
export function isRetryableDockerError(err: unknown): boolean {
  const s = statusCodeOf(err);
  return s === undefined ? true : s >= 500;
}

/** Turns an unexpected dockerode error into one of ours (keeping it as `cause`). */
export function toRuntimeError(err: unknown, operation: string, socketPath: string): RuntimeError {
  if (isConnectionError(err)) return new DockerUnavailableError(socketPath, { cause: err });
  return new DockerError(operation, statusCodeOf(err), { cause: err });
}
