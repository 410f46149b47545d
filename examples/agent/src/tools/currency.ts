import { ToolAnswerError, ToolInputError } from "../errors";
import type { Tool } from "./types";

const CONVERSION = /(\d+(?:\.\d+)?)\s*([a-z]{3})\s+(?:to|in|into)\s+([a-z]{3})\b/i;

/** "convert 100 USD to EUR" with the rates the agent was told (see the remember tool). */
export const currency: Tool = {
  name: "currency",
  async run(message, { state }) {
    const m = CONVERSION.exec(message);
    if (!m) throw new ToolInputError(`currency: no '<amount> <FROM> to <TO>' in the message`);
    const amountText = m[1]!;
    const from = m[2]!.toUpperCase();
    const to = m[3]!.toUpperCase();
    const amount = Number(amountText);
    if (from === to) return `${amountText} ${from} = ${amount.toFixed(2)} ${to}`;
    const { rates } = await state.read();
    const direct = rates[`${from}/${to}`];
    const inverse = rates[`${to}/${from}`];
    const rate = direct ?? (inverse ? 1 / inverse : undefined);
    if (rate === undefined) {
      throw new ToolAnswerError(422, `I don't know the ${from}/${to} rate yet; tell me with "set rate ${from} ${to} <rate>"`);
    }
    return `${amountText} ${from} = ${(amount * rate).toFixed(2)} ${to}`;
  },
};
