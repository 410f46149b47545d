// The operator API's public face: its routes and the operators it authenticates.
export { buildApp, routesOf } from "./http";
export { MAX_TIME_TRAVEL_CASES } from "./inputs";
export { openApi, ROUTE_DOCS } from "./openapi";
export { jaegerSpans } from "./jaeger";
export type { OperatorApiDeps } from "./http";
export { addOperator, authenticate, ensureOperator, OperatorRole, OperatorsFileError, readOperators } from "./operators";
