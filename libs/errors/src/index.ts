export { MossError, causeText, createError, errorCode, isMoot, isTerminal } from "./error";
export type { MessageErrorClass } from "./error";
export { AllCodes, Codes } from "./codes";
export type { ErrorCode } from "./codes";
