export { MossError, causeText, errorCode, isTerminal } from "./error";
export { AllCodes, Codes } from "./codes";
export type { ErrorCode } from "./codes";
