// The operator API's public face: its routes and the operators it authenticates.
export { buildApp } from "./http";
export type { OperatorApiDeps } from "./http";
export { addOperator, authenticate, ensureOperator, OperatorsFileError, readOperators } from "./operators";
