export * from "./schemas";
export * from "./topology";
export { toJsonSchemas } from "./json-schema";
export { compiled } from "./compiled";
