// Writes one JSON Schema file per message into libs/contracts/schemas/ (or the directory given as argv[2]).
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { toJsonSchemas } from "../src/index";

const dir = resolve(process.argv[2] ?? join(import.meta.dirname, "..", "schemas"));
mkdirSync(dir, { recursive: true });
for (const [name, schema] of Object.entries(toJsonSchemas())) {
  writeFileSync(join(dir, `${name}.json`), JSON.stringify(schema, null, 2) + "\n");
  console.log(`wrote ${join(dir, `${name}.json`)}`);
}
