import { compiled } from "@moss/contracts";
import { JetStreamApiCodes } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import type { z } from "zod";
import { CasConflictError } from "./errors";

export interface Versioned<T> {
  value: T;
  revision: number;
}

const CAS_CODES: ReadonlySet<number> = new Set([JetStreamApiCodes.StreamWrongLastSequence, JetStreamApiCodes.StreamWrongLastSequenceUnknown]);

/**
 * Whether a KV create/update failed because the entry changed (or appeared) since it was read: retry from a fresh
 * read. Recognised by JetStream's API error code (10071 "wrong last sequence", 10164 its "unknown" variant), as
 * nats.js's own KV does, never by the wording of the message.
 */
export function isCasConflict(err: unknown): boolean {
  if (typeof err !== "object" || err === null || (err as Error).name !== "JetStreamApiError") return false;
  const code = (err as { code?: unknown }).code;
  return typeof code === "number" && CAS_CODES.has(code);
}

/** Reads and validates a JSON KV entry; undefined when the key is absent or deleted. */
export async function kvGet<S extends z.ZodType>(kv: KV, key: string, schema: S): Promise<Versioned<z.infer<S>> | undefined> {
  const e = await kv.get(key);
  if (!e || e.operation !== "PUT" || e.length === 0) return undefined;
  return { value: compiled(schema).parse(e.json()), revision: e.revision };
}

/**
 * Moves a JSON KV entry by compare-and-set only: reads, applies `change`, writes with the read revision, and
 * retries on a lost race (up to `attempts`). `change` returns undefined to leave the entry as it is.
 * Creates the key when absent (`create` is CAS against "no key").
 */
export async function kvUpdate<S extends z.ZodType>(
  kv: KV,
  key: string,
  schema: S,
  change: (current: z.infer<S> | undefined) => z.infer<S> | undefined,
  bucketName = "kv",
  attempts = 20,
): Promise<Versioned<z.infer<S>> | undefined> {
  let lastErr: unknown;
  for (let i = 0; i < attempts; i++) {
    const cur = await kvGet(kv, key, schema);
    const next = change(cur?.value);
    if (next === undefined) return cur;
    const data = JSON.stringify(compiled(schema).parse(next));
    try {
      const revision = cur ? await kv.update(key, data, cur.revision) : await kv.create(key, data);
      return { value: next, revision };
    } catch (err) {
      if (!isCasConflict(err)) throw err;
      lastErr = err;
    }
  }
  throw new CasConflictError(bucketName, key, lastErr);
}

/**
 * The keys of a bucket (optionally under a filter), each once, sorted. `kv.keys()` alone walks the bucket until
 * nothing is pending, so a key written during the walk comes back again: callers that count or list keys would
 * see it twice.
 */
export async function kvKeys(kv: KV, filter = ">"): Promise<string[]> {
  const keys = new Set<string>();
  for await (const k of await kv.keys(filter)) keys.add(k);
  return [...keys].sort();
}

/**
 * Every JSON entry of a bucket (optionally under a filter), parsed, by key order: list the keys once each, get each,
 * keep the values (not deletions), validate. An entry that does not parse throws, naming its key — unless `onInvalid`
 * is given, which is told about it while the rest are returned.
 */
export async function kvValues<S extends z.ZodType>(
  kv: KV,
  schema: S,
  filter = ">",
  onInvalid?: (key: string, err: Error) => void,
): Promise<Array<Versioned<z.infer<S>> & { key: string }>> {
  const out: Array<Versioned<z.infer<S>> & { key: string }> = [];
  for (const key of await kvKeys(kv, filter)) {
    try {
      const v = await kvGet(kv, key, schema);
      if (v) out.push({ key, ...v });
    } catch (err) {
      const e = new Error(`KV entry ${key} is not valid: ${(err as Error).message}`, { cause: err });
      if (!onInvalid) throw e;
      onInvalid(key, e);
    }
  }
  return out;
}
