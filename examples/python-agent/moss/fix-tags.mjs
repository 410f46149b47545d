#!/usr/bin/env node
// A deterministic "coding agent" for the Python example agent, for the demo and the end-to-end test (the coding
// agent's sandbox image has Node, so it is written in Node; the code it edits is Python). Moss runs it with cwd = a
// worktree of the agent's repository:   node moss/fix-tags.mjs <evidence.json>
//
// It fixes exactly one thing: `remember` without hashtags raising KeyError: 'tags', because tool_remember reads the
// optional argument as `args["tags"]`. It checks the evidence says so (a KeyError 'tags' whose traceback passes
// through tool_remember), reads it as `args.get("tags", [])` instead, and says what it did. Exit 0: fixed, or "no
// change needed". Exit 1: the evidence is not something it knows how to fix (with the reason). No dependencies.
import { readFileSync, writeFileSync } from "node:fs";

const AGENT = "agent.py";
const BUG = 'args["tags"]';
const FIX = 'args.get("tags", [])';

function fail(reason) {
  console.error(`fix-tags: ${reason}`);
  process.exit(1);
}

const evidencePath = process.argv[2];
if (!evidencePath) fail("usage: node fix-tags.mjs <evidence.json>");
let evidence;
try {
  evidence = JSON.parse(readFileSync(evidencePath, "utf8"));
} catch (err) {
  fail(`cannot read evidence ${evidencePath}: ${err.message}`);
}
const failures = Array.isArray(evidence?.failures) ? evidence.failures : [];
if (failures.length === 0) fail("the evidence holds no failures (expected `failures`: FailureEvent[])");
const mine = failures.filter((f) => f?.error?.type === "KeyError" && /'tags'/.test(String(f.error.message)) && /tool_remember/.test(String(f.error.stack)));
if (mine.length !== failures.length) {
  fail(`${failures.length - mine.length} of ${failures.length} failures are not a KeyError 'tags' in tool_remember: not a bug this script knows`);
}

let src;
try {
  src = readFileSync(AGENT, "utf8");
} catch (err) {
  fail(`cannot read ${AGENT} in ${process.cwd()}: ${err.message}`);
}
const fn = /^def tool_remember\(.*?(?=^def |^[A-Z_]+ = )/ms.exec(src);
if (!fn) fail(`no tool_remember function in ${AGENT}`);
if (!fn[0].includes(BUG)) {
  if (fn[0].includes(FIX)) {
    console.log("no change needed: tool_remember already reads tags as optional");
    process.exit(0);
  }
  fail(`tool_remember does not read ${BUG}: the code is not what the traceback shows`);
}
const fixed = fn[0].replace(BUG, FIX);
writeFileSync(AGENT, src.slice(0, fn.index) + fixed + src.slice(fn.index + fn[0].length));
console.log(`fixed ${AGENT}: tool_remember reads the optional "tags" argument as ${FIX} (${mine.length} failure(s) raised KeyError: 'tags' there)`);
