import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { RuleSetError } from "../errors";
import { isObject } from "./common";

/**
 * A deterministic fix, as a JSON file in the rules directory:
 *
 * ```json
 * { "name": "null-guard-user",
 *   "match": { "fingerprint": "^abc", "errorType": "TypeError", "message": "/cannot read .* of undefined/i" },
 *   "patch": "null-guard-user.diff",
 *   "replace": [{ "file": "src/user.ts", "find": "user.name", "replace": "user?.name", "count": 1 }] }
 * ```
 *
 * - `match`: at least one of `fingerprint`, `errorType`, `message`, each a regular expression (`pattern` or
 *   `/pattern/flags`). `errorType` and `message` must hold for the same failure of the evidence.
 * - `patch`: a unified diff (path relative to the rule file), applied in the worktree.
 * - `replace`: edits of worktree files; `find` is literal text, or a regular expression written `/pattern/flags`;
 *   `replace` may use `$1`, `$<name>`, `$&` with a regular expression; `count` limits the replacements (default:
 *   every occurrence).
 * At least one of `patch` and `replace`.
 */
export interface Rule {
  name: string;
  /** The rule file (for the audit trail). */
  file: string;
  match: { fingerprint?: RegExp; errorType?: RegExp; message?: RegExp };
  /** Absolute path of the diff. */
  patch?: string;
  replace: ReplaceEdit[];
}

export interface ReplaceEdit {
  file: string;
  find: string | RegExp;
  replace: string;
  count?: number;
}

/** What the rules look at in the evidence file. */
export interface RuleEvidence {
  fingerprint: string;
  errors: Array<{ type: string; message: string }>;
}

/** Loads every `*.json` rule of a directory, in file-name order (the order rules are tried in). */
export function loadRules(dir: string): Rule[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith(".json")).sort();
  } catch (err) {
    throw new RuleSetError([`cannot read the rules directory ${dir}: ${(err as Error).message}`]);
  }
  const rules: Rule[] = [];
  const problems: string[] = [];
  for (const n of names) {
    const r = parseRule(join(dir, n), n, dir, problems);
    if (r) rules.push(r);
  }
  if (problems.length) throw new RuleSetError(problems);
  return rules;
}

function parseRule(path: string, file: string, dir: string, problems: string[]): Rule | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    problems.push(`${file}: not JSON (${(err as Error).message})`);
    return undefined;
  }
  const bad = (why: string) => problems.push(`${file}: ${why}`);
  const before = problems.length;
  if (!isObject(raw)) {
    bad("must be a JSON object");
    return undefined;
  }
  const name = raw["name"];
  if (typeof name !== "string" || !name.trim()) bad("'name' must be a non-empty string");
  const match: Rule["match"] = {};
  const m = raw["match"];
  if (!isObject(m)) bad("'match' must be an object with 'fingerprint', 'errorType' and/or 'message'");
  else {
    for (const k of ["fingerprint", "errorType", "message"] as const) {
      const v = m[k];
      if (v === undefined) continue;
      if (typeof v !== "string") {
        bad(`'match.${k}' must be a string (a regular expression)`);
        continue;
      }
      try {
        // Without g/y: test() must not carry lastIndex from one failure to the next.
        const re = toRegExp(v, true);
        match[k] = new RegExp(re.source, re.flags.replace(/[gy]/g, ""));
      } catch (err) {
        bad(`'match.${k}' is not a valid regular expression: ${(err as Error).message}`);
      }
    }
    if (!Object.keys(m).some((k) => ["fingerprint", "errorType", "message"].includes(k))) bad("'match' needs at least one of 'fingerprint', 'errorType', 'message'");
    for (const k of Object.keys(m)) if (!["fingerprint", "errorType", "message"].includes(k)) bad(`'match.${k}' is not a known criterion (fingerprint, errorType, message)`);
  }
  let patch: string | undefined;
  if (raw["patch"] !== undefined) {
    if (typeof raw["patch"] !== "string" || !raw["patch"]) bad("'patch' must be a file name");
    else {
      patch = resolve(dir, raw["patch"]);
      if (!existsSync(patch)) bad(`'patch' file ${raw["patch"]} does not exist (relative to the rule file)`);
    }
  }
  const replace: ReplaceEdit[] = [];
  const rep = raw["replace"];
  if (rep !== undefined) {
    if (!Array.isArray(rep)) bad("'replace' must be an array of {file, find, replace, count?}");
    else
      rep.forEach((e: unknown, i) => {
        const at = `'replace[${i}]'`;
        if (!isObject(e)) return bad(`${at} must be an object`);
        const { file: f, find, replace: to, count } = e;
        if (typeof f !== "string" || !f) bad(`${at}.file must be a path relative to the worktree`);
        if (typeof find !== "string" || !find) bad(`${at}.find must be a non-empty string`);
        if (typeof to !== "string") bad(`${at}.replace must be a string`);
        if (count !== undefined && (typeof count !== "number" || !Number.isInteger(count) || count < 1)) bad(`${at}.count must be a positive integer`);
        if (typeof f !== "string" || typeof find !== "string" || !find || typeof to !== "string") return;
        let pattern: string | RegExp = find;
        if (isRegExpLiteral(find)) {
          try {
            pattern = toRegExp(find, false);
          } catch (err) {
            return bad(`${at}.find is not a valid regular expression: ${(err as Error).message}`);
          }
        }
        replace.push({ file: f, find: pattern, replace: to, ...(typeof count === "number" ? { count } : {}) });
      });
  }
  if (raw["patch"] === undefined && (rep === undefined || (Array.isArray(rep) && !rep.length))) bad("needs a 'patch' or a non-empty 'replace'");
  if (problems.length > before) return undefined;
  return { name: name as string, file, match, ...(patch ? { patch } : {}), replace };
}

const LITERAL = /^\/([\s\S]*)\/([dgimsuvy]*)$/;

function isRegExpLiteral(s: string): boolean {
  return s.length > 2 && LITERAL.test(s);
}

/** `/pattern/flags` as written; anything else is a pattern (match criteria) or literal text (`find`, not here). */
function toRegExp(s: string, patternIfPlain: boolean): RegExp {
  const m = LITERAL.exec(s);
  if (m && s.length > 2) return new RegExp(m[1]!, m[2]);
  if (patternIfPlain) return new RegExp(s);
  throw new Error(`not a /pattern/flags literal: ${s}`);
}

/** The fields rules match on, from the evidence JSON (fingerprint, failures[].error.{type,message}). */
export function ruleEvidence(raw: unknown): RuleEvidence {
  const o = isObject(raw) ? raw : {};
  const failures = Array.isArray(o["failures"]) ? o["failures"] : [];
  const errors = failures.flatMap((f: unknown) => {
    const e = isObject(f) && isObject(f["error"]) ? f["error"] : undefined;
    return e ? [{ type: typeof e["type"] === "string" ? e["type"] : "", message: typeof e["message"] === "string" ? e["message"] : "" }] : [];
  });
  return { fingerprint: typeof o["fingerprint"] === "string" ? o["fingerprint"] : "", errors };
}

export function matches(rule: Rule, ev: RuleEvidence): boolean {
  const { fingerprint, errorType, message } = rule.match;
  if (fingerprint && !fingerprint.test(ev.fingerprint)) return false;
  if (!errorType && !message) return true;
  return ev.errors.some((e) => (!errorType || errorType.test(e.type)) && (!message || message.test(e.message)));
}

/** The rule's criteria in words, e.g. `fingerprint /^abc/, errorType /TypeError/`. */
export function describeMatch(rule: Rule): string {
  return Object.entries(rule.match)
    .map(([k, re]) => `${k} ${String(re)}`)
    .join(", ");
}
