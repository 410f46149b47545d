import type { Tool } from "./types";

/** When nothing else fits: say it back. */
export const echo: Tool = {
  name: "echo",
  async run(message) {
    return `you said: ${message}`;
  },
};
