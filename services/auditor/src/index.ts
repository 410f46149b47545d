// The auditor's public face: the hash-chained log, its message handler, the timeline read model and the API.
export { AuditLog, hashRecord } from "./audit-log";
export type { AuditInput, AuditRecord } from "./audit-log";
export { record, whoOf } from "./handlers/record";
export { deliver, eventOf, signature, WEBHOOK_EVENTS, type Webhook, type WebhookEvent } from "./handlers/webhooks";
export { batchTimeline, listBatches } from "./timeline";
export { buildApp } from "./http";
export type { AuditorHttpDeps } from "./http";
export { Checkpointer, gitCopies, readCheckpoints, verifyLog } from "./checkpoints";
export type { Checkpoint, GitCopies, SignedCheckpoint, StreamCopies, VerifyReport } from "./checkpoints";
