// The curator's public face: the filing engine, its pure core and the fingerprint, for tests, benches and tools.
export { ingestChunk } from "./handlers/failures";
export { tick, tickAll } from "./timer";
export { drain } from "./outbox";
export type { CuratorDeps } from "./deps";
export { OVERFLOW_KEY, applyFailures, closeExpired, decide, overflowFingerprint, requestSig, storeForm } from "./state/apply";
export type { ApplyResult, BatchLookup, Policy, PreparedFailure, StoredFailure } from "./state/apply";
export { CuratorState, emptyState, stateKey } from "./state/state";
export { FINGERPRINT_VERSION, createFingerprinter, normalizeMessage, normalizeRoute, parseStack } from "./fingerprint";
export type { Fingerprint, FingerprintResult, Fingerprinter, Frame } from "./fingerprint";
export { buildApp, flagToFailure } from "./http";
export type { IngestDeps } from "./http";
