import { createHash } from "node:crypto";
import { InvalidBlobIdError, InvalidContentTypeError } from "./errors";

const SHA256_HEX = /^[0-9a-f]{64}$/;
// Printable ASCII only: the type travels as an HTTP header (S3) and must not smuggle CR/LF.
const CONTENT_TYPE = /^[\x20-\x7e]{1,255}$/;

/** Lowercase hex sha256 of the bytes: the blob's address. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Throws InvalidBlobIdError unless `id` is 64 lowercase hex digits; the guard against path traversal. */
export function assertBlobId(id: unknown): asserts id is string {
  if (typeof id !== "string" || !SHA256_HEX.test(id)) throw new InvalidBlobIdError(id);
}

export function isBlobId(id: unknown): id is string {
  return typeof id === "string" && SHA256_HEX.test(id);
}

export function assertContentType(value: unknown): asserts value is string | undefined {
  if (value === undefined) return;
  if (typeof value !== "string" || !CONTENT_TYPE.test(value)) throw new InvalidContentTypeError(value);
}

/** The bytes to store, as a Buffer view (no copy for Uint8Array input). */
export function toBuffer(data: Uint8Array | string): Buffer {
  if (typeof data === "string") return Buffer.from(data, "utf8");
  if (Buffer.isBuffer(data)) return data;
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError(`blob data must be a Uint8Array or a string, got ${typeof data}`);
}
