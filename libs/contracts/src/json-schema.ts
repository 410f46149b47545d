import { z } from "zod";
import { AllMessages } from "./topology";

/**
 * The `format` values draft-7 defines. zod also emits its own (`starts_with`, `ends_with`, `includes`, `lowercase`...)
 * next to a `pattern` that already enforces them; a strict validator (Ajv's default) refuses to compile a schema
 * holding a format it does not know, so only these are kept.
 */
const DRAFT7_FORMATS = new Set([
  "date-time",
  "date",
  "time",
  "email",
  "idn-email",
  "hostname",
  "idn-hostname",
  "ipv4",
  "ipv6",
  "uri",
  "uri-reference",
  "iri",
  "iri-reference",
  "uri-template",
  "json-pointer",
  "relative-json-pointer",
  "regex",
]);

/**
 * JSON Schema (draft-7, input side: defaulted fields are optional) of every message, keyed by message name.
 * Agents in other languages publish against these.
 */
export function toJsonSchemas(): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const m of AllMessages) {
    const schema = z.toJSONSchema(m.schema, {
      target: "draft-7",
      io: "input",
      override: ({ jsonSchema }) => {
        if (typeof jsonSchema.format === "string" && !DRAFT7_FORMATS.has(jsonSchema.format)) delete jsonSchema.format;
      },
    });
    // zod's refinements do not reach JSON Schema: a failure is an HTTP request or a command invocation, one of the two.
    const extra = m.name === "failure.v1" ? { oneOf: [{ required: ["request"], properties: { request: {} } }, { required: ["invocation"], properties: { invocation: {} } }] } : {};
    out[m.name] = { $id: `https://moss.dev/schemas/${m.name}.json`, title: m.name, "x-moss-subject": m.subject, ...schema, ...extra };
  }
  return out;
}
