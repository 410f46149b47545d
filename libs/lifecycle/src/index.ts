export { busCredential, liveEnv, runService } from "./run";
export type { ServiceDeps, ServiceParts, RunServiceOptions } from "./run";
export { replyError } from "./http";
export { MOSS_HOST, onLiveNetwork, relayedPorts, startHostRelay } from "./live-net";
export { createOps, opsPort } from "./ops";
export type { Ops } from "./ops";
