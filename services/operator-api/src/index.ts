// The operator API's public face: its routes and the operators it authenticates.
export { buildApp, MAX_TIME_TRAVEL_CASES, routesOf } from "./http";
export type { OperatorApiDeps } from "./http";
export { addOperator, authenticate, ensureOperator, OperatorRole, OperatorsFileError, readOperators } from "./operators";
