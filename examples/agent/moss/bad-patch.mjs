#!/usr/bin/env node
// A deliberately WRONG "coding agent", for tests: same interface as fix-routing.mjs
// (node moss/bad-patch.mjs <evidence.json>, cwd = the agent's worktree), but instead of fixing the
// routing it rewords the calculator's error message — a plausible-looking change that leaves
// "convert 100 USD to EUR" failing with a 500. Moss's replay must reject it.
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";

const FILE = "src/tools/calculator.ts";
const BEFORE = "`calculator: unsupported token '${m[3]}'`";
const AFTER = "`calculator: I can only do arithmetic with numbers and + - * / ( ), and '${m[3]}' is not one of them`";

function fail(reason) {
  console.error(`bad-patch: ${reason}`);
  process.exit(1);
}

const evidencePath = process.argv[2];
if (!evidencePath) fail("usage: node bad-patch.mjs <evidence.json>");
let evidence;
try {
  evidence = JSON.parse(readFileSync(evidencePath, "utf8"));
} catch (err) {
  fail(`cannot read evidence ${evidencePath}: ${err.message}`);
}
if (!Array.isArray(evidence?.failures) || evidence.failures.length === 0) fail("the evidence holds no failures");

const path = resolve(process.cwd(), FILE);
let src;
try {
  src = readFileSync(path, "utf8");
} catch (err) {
  fail(`cannot read ${FILE}: ${err.message}`);
}
if (src.includes(AFTER)) {
  console.log("no change needed: the calculator's message is already reworded");
  process.exit(0);
}
if (!src.includes(BEFORE)) fail(`${FILE} does not contain the message I reword (${BEFORE})`);
writeFileSync(path, src.replace(BEFORE, AFTER));
console.log(`evidence: ${evidence.failures.length} failure(s); the calculator's error message looks unfriendly`);
console.log(`reworded the calculator's "unsupported token" error in ${FILE}`);
