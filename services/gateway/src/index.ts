// The gateway's public face: the operator API and the operators it authenticates.
export { buildApp } from "./http";
export type { GatewayHttpDeps } from "./http";
export { addOperator, authenticate, ensureOperator, OperatorsFileError, readOperators } from "./operators";
