#!/usr/bin/env node
// The `moss` command. Moss runs its TypeScript directly through tsx: no build step between a clone and a run.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/main.ts");
try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  console.error(`moss: ${err?.message ?? err}`);
  process.exitCode = 1;
}
