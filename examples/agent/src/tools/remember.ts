import { ToolInputError } from "../errors";
import type { Tool } from "./types";

const SET_RATE = /\brate\s+([a-z]{3})\s+([a-z]{3})\s+(\d+(?:\.\d+)?)\b/i;

/** "set rate USD EUR 0.92": 1 USD = 0.92 EUR, kept in the state file. */
export const remember: Tool = {
  name: "remember",
  async run(message, { state }) {
    const m = SET_RATE.exec(message);
    if (!m) throw new ToolInputError("remember: expected 'set rate <FROM> <TO> <rate>'");
    const from = m[1]!.toUpperCase();
    const to = m[2]!.toUpperCase();
    const rate = Number(m[3]);
    await state.update((s) => {
      s.rates[`${from}/${to}`] = rate;
    });
    return `noted: 1 ${from} = ${rate} ${to}`;
  },
};
