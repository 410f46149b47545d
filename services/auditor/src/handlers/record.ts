import type { RawContext } from "@moss/bus";
import { Headers as H, messageForSubject, OperatorOnly, publishersOf, type DeadLetter } from "@moss/contracts";
import { traceIdOf } from "@moss/telemetry";
import type { AuditLog } from "../audit-log";

/** Nesting kept as it arrived; a payload deeper than this is recorded as its schema reads it (or as text, if invalid). */
export const MAX_DEPTH = 512;
/** Text kept of a payload too deep to record as it arrived, and not valid either. */
const MAX_TEXT = 64 * 1024;

/** Whether a JSON value nests deeper than `max` levels, walked without recursion. */
function deeperThan(v: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[v, 1]];
  while (stack.length) {
    const [x, d] = stack.pop()!;
    if (typeof x !== "object" || x === null) continue;
    if (d > max) return true;
    for (const child of Array.isArray(x) ? x : Object.values(x)) if (typeof child === "object" && child !== null) stack.push([child, d + 1]);
  }
  return false;
}

/** Records one message of any kind; a redelivered message is recorded once. */
export async function record(log: AuditLog, kind: string, stream: string, payload: unknown, ctx: Pick<RawContext, "streamSeq" | "subject" | "headers" | "valid" | "value" | "text">): Promise<void> {
  const p = (typeof payload === "object" && payload !== null ? payload : {}) as { batchId?: unknown; id?: unknown };
  // Only a valid failure event is indexed by its id: an invalid one reusing the id would replace the valid event the
  // batch views render (and they would fail on its missing fields). It is still recorded, under "(invalid)".
  const isFailure = kind === "failure.v1" && ctx.valid;
  // Any valid event is recorded, however deep: one too deep to serialize as it arrived is kept as its schema reads it.
  let data = payload;
  let note: string | undefined;
  if (deeperThan(payload, MAX_DEPTH)) {
    note = `the payload nests deeper than ${MAX_DEPTH} levels: recorded ${ctx.valid ? "as its schema reads it (unknown fields dropped)" : `as text (first ${MAX_TEXT} characters)`}`;
    data = ctx.valid ? ctx.value : ctx.text.slice(0, MAX_TEXT);
  }
  log.append({
    stream,
    streamSeq: ctx.streamSeq,
    subject: ctx.subject,
    kind: ctx.valid ? kind : `${kind} (invalid)`,
    batchId: typeof p.batchId === "string" ? p.batchId : kind === "dlq.v1" && ctx.valid ? deadLetterBatch(payload as DeadLetter) : undefined,
    failureId: isFailure && typeof p.id === "string" ? p.id : undefined,
    traceId: traceIdOf(ctx.headers),
    who: whoOf(ctx.subject, ctx.headers, payload),
    data,
    ...(note ? { note } : {}),
  });
}

/**
 * The batch a dead letter was about: its original message's batch header, else the batch its payload names (a dead
 * letter is filed under its batch, so `moss show` tells why that batch stopped).
 */
function deadLetterBatch(dl: DeadLetter): string | undefined {
  const h = Object.entries(dl.headers ?? {}).find(([k]) => k.toLowerCase() === H.batchId.toLowerCase())?.[1]?.[0];
  if (h) return h;
  try {
    const inner = JSON.parse(Buffer.from(dl.payloadBase64, "base64").toString("utf8")) as { batchId?: unknown };
    return typeof inner.batchId === "string" ? inner.batchId : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Who published a message: the process it names itself as, held to the grants — NATS let only the identities whose
 * grants cover this kind publish it, so a name outside them is a claim the auditor records as unverified. An agent's
 * SDK names no process: its failures are the agent's. An operator-only message also names the operator whose token
 * the operator API authenticated.
 */
export function whoOf(subject: string, headers: Record<string, string>, payload: unknown): string {
  const def = messageForSubject(subject);
  const claim = Object.entries(headers).find(([k]) => k.toLowerCase() === H.from.toLowerCase())?.[1];
  const publishers = def ? publishersOf(def) : [];
  const agent = subject.startsWith("moss.failure.") || subject.startsWith("moss.success.") ? `agent.${subject.split(".")[2]}` : undefined;
  let who: string;
  if (!claim) who = agent ?? (publishers.length === 1 ? publishers[0]! : publishers.length ? `one of ${publishers.join(", ")}` : "unknown");
  else {
    const identity = claim.split("@")[0]!.split("#")[0]!;
    who = publishers.includes(identity) || (agent && identity === agent) ? claim : `${claim} (unverified: only ${publishers.join(", ") || "nobody"} may publish ${def?.name ?? subject})`;
  }
  const by = (payload as { by?: unknown } | null)?.by;
  return def && OperatorOnly.includes(def) && typeof by === "string" ? `${who} for operator ${by}` : who;
}
