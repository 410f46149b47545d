export * from "./schemas";
export * from "./topology";
export * from "./api";
export { toJsonSchemas } from "./json-schema";
export { compiled } from "./compiled";
export * from "./grants";
