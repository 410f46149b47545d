export { createBus, rawRoute, route } from "./bus";
export type { Bus, BusOptions, ChunkHandler, ChunkItem, ChunkOptions, ConsumeOptions, Consumption, Handler, HandlerContext, PublishOptions, Route } from "./bus";
export { provision } from "./provision";
export { isCasConflict, kvGet, kvKeys, kvUpdate, kvValues } from "./kv";
export type { Versioned } from "./kv";
export { BusUnavailableError, CasConflictError, InvalidMessageError, UnroutableMessageError } from "./errors";
export type { KV } from "@nats-io/kv";
