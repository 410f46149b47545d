/** What the operator API's requests carry: the zod schemas that validate each body (and that its OpenAPI document shows). */
import { MIN_FAILURE_PREFIX } from "@moss/batch";
import { AgentName, Id, VersionRef } from "@moss/contracts";
import { z } from "zod";

export const Reason = z.object({ reason: z.string().max(2_000).optional() }).strict();
export const Reset = z.object({ target: z.string().min(1).max(300) }).strict();
export const Pin = z.object({ unpin: z.boolean().optional() }).strict();
const FailureRef = z.string().regex(/^[A-Za-z0-9_-]{8,128}$/, `a failure id, or a prefix of one (${MIN_FAILURE_PREFIX}+ characters)`);
/** Most stored turns one `moss replay` replays (its record must fit one KV entry). */
export const MAX_TIME_TRAVEL_CASES = 50;
export const Replay = z
  .object({
    version: VersionRef,
    /** A failure's id, or a prefix of one (8+ characters) that names one failure. */
    failure: FailureRef.optional(),
    /** Every stored failure of this batch. */
    allFailuresOf: Id.optional(),
    /** Every recorded success of this agent's regression set. */
    regressions: AgentName.optional(),
  })
  .strict()
  .refine((b) => [b.failure, b.allFailuresOf, b.regressions].filter((x) => x !== undefined).length === 1, "name exactly one of failure, allFailuresOf, regressions");
export const Bisect = z.object({ failure: FailureRef, good: VersionRef, bad: VersionRef, fixed: z.boolean().default(false) }).strict();
export const MarkReviewed = z.object({ version: VersionRef }).strict();
export const Rollback = z
  .object({
    to: z.string().regex(/^[a-f0-9]{7,64}$/, "a commit sha or a prefix of one (7+ hex digits)").optional(),
    reason: z.string().max(2_000).optional(),
    /** How long to wait for the promoter's outcome before answering 202 (default 60 s; 0: do not wait). */
    waitMs: z.number().int().min(0).max(300_000).optional(),
  })
  .strict();
