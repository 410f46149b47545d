#!/usr/bin/env node
// A deterministic "coding agent" for the demo agent. Moss runs it with cwd = a worktree of the
// agent's repository:   node moss/fix-routing.mjs <evidence.json>
//
// It knows how to fix exactly one thing: messages that are currency conversions ("convert 100 USD
// to EUR") being routed to the calculator because the calculator's rule comes first in
// src/router.ts. It checks the evidence shows that, moves the `currency` rule before the
// `calculator` rule (a real edit of the rules array), checks the new order routes every failing
// message to `currency`, and says what it did. Exit 0: fixed, or "no change needed". Exit 1: the
// evidence is not something it knows how to fix (with the reason). Plain Node, no dependencies.
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";

const ROUTER = "src/router.ts";

function fail(reason) {
  console.error(`fix-routing: ${reason}`);
  process.exit(1);
}

// ---- evidence -------------------------------------------------------------------------------
const evidencePath = process.argv[2];
if (!evidencePath) fail("usage: node fix-routing.mjs <evidence.json>");
let evidence;
try {
  evidence = JSON.parse(readFileSync(evidencePath, "utf8"));
} catch (err) {
  fail(`cannot read evidence ${evidencePath}: ${err.message}`);
}
const failures = Array.isArray(evidence?.failures) ? evidence.failures : [];
if (failures.length === 0) fail("the evidence holds no failures (expected `failures`: FailureEvent[])");

/** The chat message a failure's request carried. */
function messageOf(f) {
  const body = f?.request?.body;
  if (typeof body !== "string") return undefined;
  try {
    const m = JSON.parse(body)?.message;
    return typeof m === "string" ? m : undefined;
  } catch {
    return undefined;
  }
}

// ---- a small scanner for the rules array ------------------------------------------------------
// Enough of JavaScript to find the top-level elements of `rules = [ ... ]`: strings, template
// literals, comments and regex literals are skipped so that brackets and commas inside them do not count.
function scanArray(src, open) {
  const commas = [];
  const regexes = [];
  let depth = 0;
  let i = open;
  let lastSignificant = "";
  while (i < src.length) {
    const c = src[i];
    const next = src[i + 1];
    if (c === "/" && next === "/") {
      i = src.indexOf("\n", i);
      if (i < 0) i = src.length;
      continue;
    }
    if (c === "/" && next === "*") {
      const end = src.indexOf("*/", i + 2);
      if (end < 0) throw new Error("unterminated comment");
      i = end + 2;
      continue;
    }
    if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < src.length && src[j] !== c) j += src[j] === "\\" ? 2 : 1;
      if (j >= src.length) throw new Error("unterminated string");
      i = j + 1;
      lastSignificant = c;
      continue;
    }
    if (c === "/" && (lastSignificant === "" || "(,=:[!&|?{};".includes(lastSignificant))) {
      let j = i + 1;
      let inClass = false;
      while (j < src.length) {
        const d = src[j];
        if (d === "\\") j += 2;
        else if (d === "\n") throw new Error("unterminated regex literal");
        else if (inClass) {
          if (d === "]") inClass = false;
          j++;
        } else if (d === "[") {
          inClass = true;
          j++;
        } else if (d === "/") break;
        else j++;
      }
      const bodyEnd = j;
      j++;
      while (j < src.length && /[a-z]/i.test(src[j])) j++;
      if (depth >= 1) regexes.push({ start: i, end: j, source: src.slice(i + 1, bodyEnd), flags: src.slice(bodyEnd + 1, j) });
      i = j;
      lastSignificant = "/";
      continue;
    }
    if (c === "[" || c === "{" || c === "(") depth++;
    else if (c === "]" || c === "}" || c === ")") {
      depth--;
      if (depth === 0) return { close: i, commas, regexes };
    } else if (c === "," && depth === 1) commas.push(i);
    if (!/\s/.test(c)) lastSignificant = c;
    i++;
  }
  throw new Error("unterminated rules array");
}

function stripComments(text) {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:\\])\/\/.*$/gm, "$1");
}

/** The rules array of src/router.ts: its elements (text with leading comments) with intent and pattern. */
function parseRules(src) {
  const decl = /\b(?:const|let|var)\s+rules\b[^=]*=\s*\[/.exec(src);
  if (!decl) throw new Error(`no \`rules = [...]\` array in ${ROUTER}`);
  const open = decl.index + decl[0].length - 1;
  const { close, commas, regexes } = scanArray(src, open);
  const bounds = [open, ...commas, close];
  const elements = [];
  for (let k = 0; k + 1 < bounds.length; k++) {
    const start = bounds[k] + 1;
    const end = bounds[k + 1];
    const text = src.slice(start, end);
    if (text.trim() === "") continue; // after a trailing comma
    const code = stripComments(text);
    const intent = /\bintent\s*:\s*["'`]([\w-]+)["'`]/.exec(code)?.[1];
    const rx = regexes.find((r) => r.start >= start && r.end <= end && /\bpattern\s*:\s*$/.test(src.slice(start, r.start)));
    let pattern;
    if (rx) {
      try {
        pattern = new RegExp(rx.source, rx.flags.replace(/[gy]/g, ""));
      } catch {
        pattern = undefined;
      }
    }
    elements.push({ start, end, text, intent, pattern, line: src.slice(0, start + text.search(/\S/)).split("\n").length });
  }
  return { open, close, bounds, elements };
}

const firstMatch = (rules, message) => rules.find((r) => r.pattern?.test(message))?.intent;

// ---- read the router ----------------------------------------------------------------------------
const routerPath = resolve(process.cwd(), ROUTER);
let src;
try {
  src = readFileSync(routerPath, "utf8");
} catch (err) {
  fail(`cannot read ${ROUTER} in ${process.cwd()}: ${err.message}`);
}
let parsed;
try {
  parsed = parseRules(src);
} catch (err) {
  fail(`cannot understand ${ROUTER}: ${err.message}`);
}
const byIntent = (name) => parsed.elements.findIndex((e) => e.intent === name);
const calcIdx = byIntent("calculator");
const currIdx = byIntent("currency");
if (calcIdx < 0 || currIdx < 0) fail(`${ROUTER} has no ${calcIdx < 0 ? "calculator" : "currency"} rule; this is not the routing bug I know how to fix`);
const currencyRule = parsed.elements[currIdx];
const calculatorRule = parsed.elements[calcIdx];
if (!currencyRule.pattern || !calculatorRule.pattern) fail(`cannot read the patterns of the currency/calculator rules in ${ROUTER}`);

// ---- does the evidence show the calculator receiving currency conversions? ----------------------
const mismatches = [];
const messages = [];
for (const f of failures) {
  const id = f?.id ?? "?";
  const msg = messageOf(f);
  const errMsg = String(f?.error?.message ?? "");
  const servedByCalculator = f?.route === "calculator" || errMsg.startsWith("calculator:");
  if (msg === undefined) mismatches.push(`${id}: no chat message in request.body`);
  else if (!servedByCalculator) mismatches.push(`${id}: served by ${JSON.stringify(f?.route ?? "?")}, not the calculator (error: ${errMsg.slice(0, 120)})`);
  else if (!currencyRule.pattern.test(msg)) mismatches.push(`${id}: ${JSON.stringify(msg)} is not a currency conversion the currency rule accepts`);
  else messages.push(msg);
}
if (mismatches.length > 0) {
  fail(`the evidence does not show currency conversions routed to the calculator, which is all I know how to fix:\n  ${mismatches.join("\n  ")}`);
}
console.log(`evidence: ${failures.length} failure(s) of batch ${evidence.batchId ?? "?"} (attempt ${evidence.attempt ?? 1}): currency conversions served by the calculator, e.g. ${JSON.stringify(messages[0])}`);

// ---- already fixed? ------------------------------------------------------------------------------
if (currIdx < calcIdx) {
  const wrong = messages.filter((m) => firstMatch(parsed.elements, m) !== "currency");
  if (wrong.length > 0) fail(`the currency rule already comes before the calculator, yet ${JSON.stringify(wrong[0])} is routed to ${firstMatch(parsed.elements, wrong[0])}; that is a different bug`);
  console.log("no change needed: the currency rule already comes before the calculator rule");
  process.exit(0);
}

// ---- move the currency rule right before the calculator rule -------------------------------------
const order = parsed.elements.map((_, k) => k);
order.splice(currIdx, 1);
order.splice(order.indexOf(calcIdx), 0, currIdx);
const reordered = order.map((k) => parsed.elements[k]);
const wrong = messages.filter((m) => firstMatch(reordered, m) !== "currency");
if (wrong.length > 0) fail(`moving the currency rule would still route ${JSON.stringify(wrong[0])} to ${firstMatch(reordered, wrong[0])}; I do not know how to fix that`);

// Each slot keeps its trailing whitespace; the moved element brings its own leading comments.
const trailing = (t) => /\s*$/.exec(t)[0];
let out = src.slice(0, parsed.elements[0].start);
parsed.elements.forEach((slot, k) => {
  const el = reordered[k];
  out += el.text.slice(0, el.text.length - trailing(el.text).length) + trailing(slot.text);
  const next = parsed.elements[k + 1];
  out += src.slice(slot.end, next ? next.start : slot.end);
});
out += src.slice(parsed.elements[parsed.elements.length - 1].end);

// Check the edit before writing it: same rules, new order.
const check = parseRules(out);
const newOrder = check.elements.map((e) => e.intent);
const sameRules = [...newOrder].sort().join() === parsed.elements.map((e) => e.intent).sort().join();
if (!sameRules || newOrder.indexOf("currency") > newOrder.indexOf("calculator")) {
  fail(`internal error: the edited ${ROUTER} does not have the expected rule order (${newOrder.join(", ")})`);
}
for (const m of messages) {
  if (firstMatch(check.elements, m) !== "currency") fail(`internal error: after the edit ${JSON.stringify(m)} still routes to ${firstMatch(check.elements, m)}`);
}
writeFileSync(routerPath, out);
console.log(`moved the currency rule (was line ${currencyRule.line}) before the calculator rule (line ${calculatorRule.line}) in ${ROUTER}`);
console.log(`rule order now: ${newOrder.join(" → ")}`);
console.log(`${messages.length} failing message(s) now route to currency`);
