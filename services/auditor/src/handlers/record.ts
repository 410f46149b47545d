import type { HandlerContext } from "@moss/bus";
import { traceIdOf } from "@moss/telemetry";
import type { AuditLog } from "../audit-log";

/** Records one message of any kind; a redelivered message is recorded once. */
export async function record(log: AuditLog, kind: string, stream: string, payload: unknown, ctx: HandlerContext & { valid: boolean }): Promise<void> {
  const p = (typeof payload === "object" && payload !== null ? payload : {}) as { batchId?: unknown; id?: unknown };
  // Only a valid failure event is indexed by its id: an invalid one reusing the id would replace the valid event the
  // batch views render (and they would fail on its missing fields). It is still recorded, under "(invalid)".
  const isFailure = kind === "failure.v1" && ctx.valid;
  log.append({
    stream,
    streamSeq: ctx.streamSeq,
    subject: ctx.subject,
    kind: ctx.valid ? kind : `${kind} (invalid)`,
    batchId: typeof p.batchId === "string" ? p.batchId : undefined,
    failureId: isFailure && typeof p.id === "string" ? p.id : undefined,
    traceId: traceIdOf(ctx.headers),
    data: payload,
  });
}
