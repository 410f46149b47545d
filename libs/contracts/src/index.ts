export * from "./schemas";
export * from "./topology";
export { toJsonSchemas } from "./json-schema";
export { MossError, isTerminal, errorCode } from "./errors";
export { compiled } from "./compiled";
