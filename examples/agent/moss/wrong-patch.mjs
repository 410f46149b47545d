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
// Three more really fix the routing first and then add a defect that no replay can see, because it shows only on
// live traffic (held-out candidates for the promotion's bake: it must roll each of them back on the live numbers):
//   fails-later  every chat answer is a 500 once the process has been answering chat for 3 s; /health stays 200
//           (a replay trial answers one request, well inside its first 3 s);
//   slow    every chat answer takes 1.5 s longer; /health stays fast;
//   breaks-echo  the echo tool (anything that is not arithmetic, a conversion or a rate) now parses its message as
//           JSON, so plain text is a 500; no failure and no recorded success of the demo goes to it.
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const FILE = "src/tools/calculator.ts";
const SERVER = "src/server.ts";
const CHAT_START = '  let raw = "";\n  let intent: string | undefined;\n  try {\n';
const MODES = {
  reword: {
    edits: [{ file: FILE, before: "`calculator: unsupported token '${m[3]}'`", after: "`calculator: I can only do arithmetic with numbers and + - * / ( ), and '${m[3]}' is not one of them`" }],
    why: "the calculator's error message looks unfriendly",
    did: `reworded the calculator's "unsupported token" error in ${FILE}`,
  },
  polite: {
    edits: [{ file: FILE, before: "throw new ToolInputError(`calculator: unsupported token '${m[3]}'`)", after: "throw new ToolAnswerError(400, `calculator: I can't work with '${m[3]}'`)" }],
    why: "a 500 is rude; answering 400 instead",
    did: `made the calculator's "unsupported token" a 400 refusal in ${FILE}`,
  },
  overreach: {
    edits: [{ file: "src/router.ts", before: '{ intent: "calculator", pattern: /\\d/ }', after: '{ intent: "calculator", pattern: /^\\s*[\\d(]/ }' }],
    why: "the calculator's rule catches any message with a digit; narrowing it to messages that start with a number",
    did: "moved the currency rule first and narrowed the calculator's rule in src/router.ts",
    first: "fix-routing.mjs",
  },
  "fails-later": {
    edits: [
      { file: SERVER, before: "const MAX_BODY = 64 * 1024;\n", after: "const MAX_BODY = 64 * 1024;\n// When this process first answered a chat message: its session slots last 3 s.\nlet servingSince = 0;\n" },
      { file: SERVER, before: CHAT_START, after: `${CHAT_START}    servingSince ||= Date.now();\n    if (Date.now() - servingSince > 3_000) throw new Error("session slots exhausted: no slot for a new turn");\n` },
    ],
    why: "moved the currency rule first; also reserving a session slot per turn",
    did: `moved the currency rule first in src/router.ts and added session slots in ${SERVER}`,
    first: "fix-routing.mjs",
  },
  slow: {
    edits: [{ file: SERVER, before: CHAT_START, after: `${CHAT_START}    await new Promise((resolve) => setTimeout(resolve, 1_500)); // let the state settle before a turn\n` }],
    why: "moved the currency rule first; also letting the state settle before each turn",
    did: `moved the currency rule first in src/router.ts and wait 1.5 s before each turn in ${SERVER}`,
    first: "fix-routing.mjs",
  },
  "breaks-echo": {
    edits: [{ file: "src/tools/echo.ts", before: "return `you said: ${message}`;", after: "const { text } = JSON.parse(message) as { text: string };\n    return `you said: ${text}`;" }],
    why: "moved the currency rule first; also the echo tool takes structured requests now",
    did: "moved the currency rule first in src/router.ts and made src/tools/echo.ts read {text}",
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
const edited = [];
for (const e of m.edits) {
  const path = resolve(process.cwd(), e.file);
  let src;
  try {
    src = readFileSync(path, "utf8");
  } catch (err) {
    fail(`cannot read ${e.file}: ${err.message}`);
  }
  if (src.includes(e.after)) continue;
  if (!src.includes(e.before)) fail(`${e.file} does not contain what I change (${e.before})`);
  writeFileSync(path, src.replace(e.before, e.after));
  edited.push(e.file);
}
if (edited.length === 0) {
  console.log(`no change needed: ${m.edits.map((e) => e.file).join(", ")} already changed`);
  process.exit(0);
}
console.log(`evidence: ${evidence.failures.length} failure(s); ${m.why}`);
console.log(m.did);
