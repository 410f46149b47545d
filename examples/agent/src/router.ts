import type { Intent } from "./tools";

export interface Rule {
  intent: Intent;
  pattern: RegExp;
}

/** Ordered: the first rule whose pattern matches the message picks the tool. */
export const rules: readonly Rule[] = [
  // "set rate USD EUR 0.92"
  { intent: "remember", pattern: /^\s*(?:set|remember)\s+(?:the\s+)?rate\b/i },
  // Numbers mean arithmetic: "12 * (3 + 4)", "what is 2 + 2?"
  { intent: "calculator", pattern: /\d/ },
  // "convert 100 USD to EUR", "how much is 20 eur in usd"
  { intent: "currency", pattern: /\d+(?:\.\d+)?\s*[a-z]{3}\s+(?:to|in|into)\s+[a-z]{3}\b/i },
  // Anything else.
  { intent: "echo", pattern: /[\s\S]*/ },
];

/** The intent serving `message`. */
export function route(message: string): Intent {
  for (const rule of rules) if (rule.pattern.test(message)) return rule.intent;
  return "echo";
}
