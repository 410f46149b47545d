import { calculator } from "./calculator";
import { currency } from "./currency";
import { echo } from "./echo";
import { remember } from "./remember";
import type { Tool } from "./types";

export type { Tool, ToolContext } from "./types";

/** Every tool, by the intent the router names. */
export const tools = { calculator, currency, remember, echo } satisfies Record<string, Tool>;
export type Intent = keyof typeof tools;
