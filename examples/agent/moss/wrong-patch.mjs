#!/usr/bin/env node
// Deliberately WRONG "coding agents", for tests and `moss demo --bad-patch`: same interface as
// fix-routing.mjs (node moss/wrong-patch.mjs MODE <evidence.json>, cwd = the agent's worktree), but
// instead of fixing the routing each hides the bug in its own way. Moss's replay must reject both:
//   reword  rewords the calculator's error message — plausible-looking, and "convert 100 USD to EUR"
//           still fails with a 500;
//   polite  makes the calculator's "unsupported token" a polite 400 refusal, so nothing crashes and
//           nothing is reported — but nothing is converted either. A replay that only asked "not a
//           5xx" would pass it; Moss's default (a 2xx) does not.
//   overreach  really fixes the routing (fix-routing.mjs), then "tidies" the calculator's rule so only
//           messages that start with a number are arithmetic: every failure passes, but "what is 2 + 3",
//           which worked, now goes to the echo tool. Only a regression replay of recorded successes
//           catches it.
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const FILE = "src/tools/calculator.ts";
const MODES = {
  reword: {
    before: "`calculator: unsupported token '${m[3]}'`",
    after: "`calculator: I can only do arithmetic with numbers and + - * / ( ), and '${m[3]}' is not one of them`",
    why: "the calculator's error message looks unfriendly",
    did: `reworded the calculator's "unsupported token" error in ${FILE}`,
  },
  polite: {
    before: "throw new ToolInputError(`calculator: unsupported token '${m[3]}'`)",
    after: "throw new ToolAnswerError(400, `calculator: I can't work with '${m[3]}'`)",
    why: "a 500 is rude; answering 400 instead",
    did: `made the calculator's "unsupported token" a 400 refusal in ${FILE}`,
  },
  overreach: {
    file: "src/router.ts",
    before: '{ intent: "calculator", pattern: /\\d/ }',
    after: '{ intent: "calculator", pattern: /^\\s*[\\d(]/ }',
    why: "the calculator's rule catches any message with a digit; narrowing it to messages that start with a number",
    did: "moved the currency rule first and narrowed the calculator's rule in src/router.ts",
    first: "fix-routing.mjs",
  },
};

function fail(reason) {
  console.error(`wrong-patch: ${reason}`);
  process.exit(1);
}

const [mode, evidencePath] = process.argv.slice(2);
const m = MODES[mode];
if (!m || !evidencePath) fail(`usage: node wrong-patch.mjs ${Object.keys(MODES).join("|")} <evidence.json>`);
let evidence;
try {
  evidence = JSON.parse(readFileSync(evidencePath, "utf8"));
} catch (err) {
  fail(`cannot read evidence ${evidencePath}: ${err.message}`);
}
if (!Array.isArray(evidence?.failures) || evidence.failures.length === 0) fail("the evidence holds no failures");

if (m.first) {
  // The real fix first, as its own script does it.
  const r = spawnSync(process.execPath, [resolve(dirname(fileURLToPath(import.meta.url)), m.first), evidencePath], { stdio: "inherit" });
  if (r.status !== 0) fail(`${m.first} failed (exit ${r.status})`);
}
const file = m.file ?? FILE;
const path = resolve(process.cwd(), file);
let src;
try {
  src = readFileSync(path, "utf8");
} catch (err) {
  fail(`cannot read ${file}: ${err.message}`);
}
if (src.includes(m.after)) {
  console.log(`no change needed: ${file} already has ${m.after}`);
  process.exit(0);
}
if (!src.includes(m.before)) fail(`${file} does not contain what I change (${m.before})`);
writeFileSync(path, src.replace(m.before, m.after));
console.log(`evidence: ${evidence.failures.length} failure(s); ${m.why}`);
console.log(m.did);
