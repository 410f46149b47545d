#!/usr/bin/env node
// `npm run bench -- NAME`: runs bench/NAME.ts. Each bench prints progress, and as its last line one JSON object
// {"bench":"NAME",...} with its figures as ratios against a baseline measured in the same run.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

const dir = fileURLToPath(new URL(".", import.meta.url));
const available = readdirSync(dir).filter((f) => f.endsWith(".ts")).map((f) => f.slice(0, -3));
const name = process.argv[2];
if (!name || !existsSync(`${dir}${name}.ts`)) {
  console.error(`usage: npm run bench -- NAME   (available: ${available.join(", ") || "none"})`);
  process.exit(2);
}
const r = spawnSync(process.execPath, ["--import", import.meta.resolve("tsx"), `${dir}${name}.ts`, ...process.argv.slice(3)], { stdio: "inherit" });
process.exit(r.status ?? 1);
