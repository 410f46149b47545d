import { z } from "zod";
import { AllMessages } from "./topology";

/**
 * JSON Schema (draft-7, input side: defaulted fields are optional) of every message, keyed by message name.
 * Agents in other languages publish against these.
 */
export function toJsonSchemas(): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const m of AllMessages) {
    out[m.name] = { $id: `https://moss.dev/schemas/${m.name}.json`, title: m.name, "x-moss-subject": m.subject, ...z.toJSONSchema(m.schema, { target: "draft-7", io: "input" }) };
  }
  return out;
}
