/**
 * Fingerprint v2: which failures share a root cause and belong in one batch.
 *
 * Precedence: the agent's own `ev.fingerprint` → the first matching config rule → the default, built from the error
 * type, the normalized message, the top in-app frames and the agent's route / tool / stage.
 */
import { createHash } from "node:crypto";
import { ConfigError } from "@moss/config";
import type { FailureEvent } from "@moss/contracts";
import { FingerprintConfig, type FingerprintConfigInput } from "@moss/config";
import { normalizeMessage, normalizeRoute } from "./normalize";
import { compileRules, expandTemplate, firstMatch, type RuleInput } from "./rules";
import { cleanFunction, createFileClassifier, parseFrames, type Frame } from "./stack";

export { normalizeMessage, normalizeRoute } from "./normalize";
export { parseStack, type Frame } from "./stack";

/** Version of the grouping algorithm; recorded on every batch so a change of grouping is visible. */
export const FINGERPRINT_VERSION = "fp2";

export interface FingerprintResult {
  /** Readable fingerprint: its components joined with `" | "` (or the agent's / a rule's explicit string). */
  fingerprint: string;
  /** First 20 hex chars of sha256(`${version}\n${fingerprint}`); safe in NATS subjects and KV keys. */
  key: string;
  /** `fp2`, or `fp2+rules:<8 hex>` when the grouping config differs from the defaults (the hash covers all of it). */
  version: string;
  /** Index (0-based) of the config rule that produced the fingerprint, if one did. */
  rule?: number;
  /** Who decided: the agent's own fingerprint, a config rule, or the default algorithm. */
  source: "agent" | "rule" | "default";
}

export type Fingerprinter = (ev: FailureEvent) => FingerprintResult;

/** What the filing code needs of a fingerprint: the readable form, its key, and the grouping that made it. */
export type Fingerprint = Pick<FingerprintResult, "fingerprint" | "key" | "version">;

/** Separator of the readable components. */
const SEP = " | ";
/** Separator of frames inside the frames component, innermost first ("called from"). */
const FRAME_SEP = " < ";

/** JSON with sorted keys, so the version hash depends on the config's content and not on its key order. */
function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(",")}]`;
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${stableJson(o[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v);
}

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");
const DEFAULT_CONFIG_JSON = stableJson(FingerprintConfig.parse({}));

function parseConfig(cfg: FingerprintConfigInput | undefined): FingerprintConfig {
  const res = FingerprintConfig.safeParse(cfg ?? {});
  if (res.success) return res.data;
  const problems = res.error.issues.map((i) => ({ path: i.path.join(".") || "(root)", value: undefined, why: i.message }));
  throw new ConfigError(`invalid fingerprint config:\n${problems.map((p) => `  - ${p.path}: ${p.why}`).join("\n")}`, problems);
}

/**
 * Builds the fingerprint function for a config (defaults when omitted); regexes are compiled here, once.
 * Throws `ConfigError` (MOSS_E_CONFIG) for an invalid config.
 */
export function createFingerprinter(cfg?: FingerprintConfigInput): Fingerprinter {
  const c = parseConfig(cfg);
  const json = stableJson(c);
  const version = json === DEFAULT_CONFIG_JSON ? FINGERPRINT_VERSION : `${FINGERPRINT_VERSION}+rules:${sha256(json).slice(0, 8)}`;
  const keyPrefix = `${version}\n`;
  const classify = createFileClassifier(c);
  const rules = compileRules(c.rules);
  const maxFrames = c.frames;
  const { route: useRoute, tags: signalTags } = c.signals;

  const result = (fingerprint: string, source: FingerprintResult["source"], rule?: number): FingerprintResult => {
    const key = sha256(keyPrefix + fingerprint).slice(0, 20);
    return rule === undefined ? { fingerprint, key, version, source } : { fingerprint, key, version, rule, source };
  };

  /**
   * `file#function` of in-app frames, innermost first, consecutive repeats (recursion) collapsed; stops at `limit`.
   * With no in-app frame at all, the top library frames instead, marked `[lib]`.
   */
  const frameComponent = (frames: readonly Frame[], limit: number, fallback: boolean): string[] => {
    const app: string[] = [];
    const lib: string[] = [];
    for (const f of frames) {
      const { inApp, canonical } = classify(f.file);
      const s = `${canonical || "<unknown>"}#${f.function ?? "<anonymous>"}`;
      const into = inApp ? app : lib;
      if (into === lib && (!fallback || lib.length >= limit)) continue;
      if (into[into.length - 1] !== s) into.push(s);
      if (app.length >= limit) break;
    }
    if (app.length > 0 || !fallback) return app;
    return lib.length > 0 ? [`[lib] ${lib.join(FRAME_SEP)}`] : [];
  };

  const framesOf = (err: FailureEvent["error"]): readonly Frame[] =>
    err.frames
      ? err.frames.map((f) => ({ file: f.file ?? "", function: f.function === undefined ? undefined : cleanFunction(f.function), line: f.line }))
      : err.stack
        ? parseFrames(err.stack)
        : [];

  // Storms repeat themselves: the same error, stack and signals thousands of times. Results are memoized on
  // exactly the inputs they depend on (bounded; cleared wholesale when full), and the frame part per stack.
  // The memo is keyed by stack first: hashing the parts separately is cheaper than joining them into one key.
  const memoByStack = new Map<string, Map<string, FingerprintResult>>();
  const memoByFrames = new Map<string, Map<string, FingerprintResult>>();
  let memoSize = 0;
  const stackMemo = new Map<string, string[]>();
  const MEMO_MAX = 4_096;
  const remember = <V>(m: Map<string, V>, k: string, v: V): V => {
    if (m.size >= MEMO_MAX) m.clear();
    m.set(k, v);
    return v;
  };
  const tagsKey = (tags: Record<string, string>): string => {
    for (const _ in tags) return JSON.stringify(tags);
    return "";
  };

  return (ev) => {
    const own = ev.fingerprint?.trim();
    if (own) return result(own, "agent");
    const memo = ev.error.frames ? memoByFrames : memoByStack;
    const stackKey = ev.error.frames ? JSON.stringify(ev.error.frames) : (ev.error.stack ?? "");
    let byRest = memo.get(stackKey);
    const rest = `${ev.error.type}\u0000${ev.error.message}\u0000${ev.route ?? ""}\u0000${tagsKey(ev.tags ?? {})}`;
    const hit = byRest?.get(rest);
    if (hit) return hit;
    if (memoSize >= MEMO_MAX) {
      memoByStack.clear();
      memoByFrames.clear();
      memoSize = 0;
      byRest = undefined;
    }
    if (!byRest) memo.set(stackKey, (byRest = new Map()));
    const fp = compute(ev);
    byRest.set(rest, fp);
    memoSize++;
    return fp;
  };

  function compute(ev: FailureEvent): FingerprintResult {

    const tags = ev.tags ?? {};
    let frames: readonly Frame[] | undefined;
    const getFrames = () => (frames ??= framesOf(ev.error));

    let extend: readonly string[] = [];
    let ruleIndex: number | undefined;
    if (rules.length > 0) {
      const input: RuleInput = {
        errorType: ev.error.type,
        message: ev.error.message,
        route: ev.route,
        tags,
        inAppFrames: () => frameComponent(getFrames(), Infinity, false),
      };
      const rule = firstMatch(rules, input);
      if (rule) {
        if (rule.fingerprint) return result(expandTemplate(rule.fingerprint, tags), "rule", rule.index);
        extend = (rule.extend ?? []).map((t) => expandTemplate(t, tags));
        ruleIndex = rule.index;
      }
    }

    const parts: string[] = [ev.error.type.trim()];
    if (c.messageMaxLength > 0) parts.push(normalizeMessage(ev.error.message).slice(0, c.messageMaxLength).trimEnd() || "<empty>");
    if (maxFrames > 0) {
      const stack = ev.error.frames ? undefined : ev.error.stack;
      const fr = (stack !== undefined && stackMemo.get(stack)) || frameComponent(getFrames(), maxFrames, true);
      if (stack !== undefined && !stackMemo.has(stack)) remember(stackMemo, stack, fr);
      if (fr.length > 0) parts.push(fr.join(FRAME_SEP));
    }
    if (useRoute && ev.route) parts.push(`route=${normalizeRoute(ev.route)}`);
    for (const t of signalTags) {
      const v = tags[t];
      if (v) parts.push(`${t}=${v}`);
    }
    for (const e of extend) parts.push(e);
    return ruleIndex === undefined ? result(parts.join(SEP), "default") : result(parts.join(SEP), "rule", ruleIndex);
  }
}
