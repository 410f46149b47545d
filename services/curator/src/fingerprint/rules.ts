/** Fingerprint rules from config, compiled once: regexes built, `{tag:NAME}` templates split into parts. */
import type { FingerprintRule } from "@moss/config";

/** Literal text, or the name of a tag whose value goes there. */
type Part = string | { tag: string };
export type Template = readonly Part[];

export interface CompiledRule {
  /** Position in the config's `rules` list (0-based), reported as `rule` in the result. */
  index: number;
  errorType?: RegExp;
  message?: RegExp;
  frame?: RegExp;
  route?: RegExp;
  tags: ReadonlyArray<readonly [string, RegExp]>;
  fingerprint?: Template;
  extend?: readonly Template[];
}

/** What a rule looks at; `inAppFrames` is computed only if a rule asks for frames. */
export interface RuleInput {
  errorType: string;
  message: string;
  route: string | undefined;
  tags: Readonly<Record<string, string>>;
  inAppFrames: () => readonly string[];
}

const PLACEHOLDER = /\{tag:([^{}]+)\}/g;

export function compileTemplate(text: string): Template {
  const parts: Part[] = [];
  let last = 0;
  for (const m of text.matchAll(PLACEHOLDER)) {
    if (m.index > last) parts.push(text.slice(last, m.index));
    parts.push({ tag: (m[1] ?? "").trim() });
    last = m.index + m[0].length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts;
}

/** Fills a template; an absent or empty tag becomes `-`. */
export function expandTemplate(t: Template, tags: Readonly<Record<string, string>>): string {
  if (t.length === 1 && typeof t[0] === "string") return t[0];
  let out = "";
  for (const p of t) out += typeof p === "string" ? p : tags[p.tag] || "-";
  return out;
}

export function compileRules(rules: readonly FingerprintRule[]): CompiledRule[] {
  return rules.map((r, index) => {
    const c: CompiledRule = {
      index,
      tags: Object.entries(r.tags ?? {}).map(([k, v]) => [k, new RegExp(v)] as const),
    };
    if (r.errorType !== undefined) c.errorType = new RegExp(r.errorType);
    if (r.message !== undefined) c.message = new RegExp(r.message);
    if (r.frame !== undefined) c.frame = new RegExp(r.frame);
    if (r.route !== undefined) c.route = new RegExp(r.route);
    if (r.fingerprint !== undefined) c.fingerprint = compileTemplate(r.fingerprint);
    if (r.extend !== undefined) c.extend = r.extend.map(compileTemplate);
    return c;
  });
}

function matches(r: CompiledRule, ev: RuleInput): boolean {
  if (r.errorType && !r.errorType.test(ev.errorType)) return false;
  if (r.route && (ev.route === undefined || !r.route.test(ev.route))) return false;
  for (const [name, re] of r.tags) {
    const v = ev.tags[name];
    if (v === undefined || !re.test(v)) return false;
  }
  if (r.message && !r.message.test(ev.message)) return false;
  if (r.frame) {
    const re = r.frame;
    if (!ev.inAppFrames().some((f) => re.test(f))) return false;
  }
  return true;
}

/** The first rule whose conditions all hold (cheap conditions checked first), if any. */
export function firstMatch(rules: readonly CompiledRule[], ev: RuleInput): CompiledRule | undefined {
  for (const r of rules) if (matches(r, ev)) return r;
  return undefined;
}
