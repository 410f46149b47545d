/**
 * Secret detection for lines a coding agent added. Built for a guardrail, not an audit: it looks only at
 * added lines, prefers a missed low-value match over refusing a good patch for a placeholder, and never
 * hands the secret itself back to anyone (findings carry a masked form only).
 */

/** One possible secret on one line. `masked` never contains more than the pattern's public prefix. */
export interface SecretFinding {
  /** What kind of secret, e.g. "AWS access key id". */
  kind: string;
  /** A safe rendering: the public prefix (if any), an ellipsis and the length, e.g. `ghp_… (40 chars)`. */
  masked: string;
}

/** A compiled detector. `secret` picks the secret out of a match; `prefix` is the part that is safe to show. */
interface Detector {
  kind: string;
  re: RegExp;
  /** Index of the capture group that holds the secret (0: the whole match). */
  group: number;
  /** Length of the secret's public prefix (e.g. 4 for `AKIA`), shown in the masked form. */
  prefix: (secret: string) => number;
  /** Extra check on the secret; false drops the match as a placeholder or an accident. */
  plausible: (secret: string) => boolean;
}

const noPrefix = (): number => 0;
const fixedPrefix =
  (re: RegExp) =>
  (s: string): number =>
    re.exec(s)?.[0].length ?? 0;

/** Shannon entropy, bits per character. Random base62 of 12+ chars sits above 3.3; English-ish words well below. */
export function entropy(s: string): number {
  if (s.length === 0) return 0;
  const counts = new Map<string, number>();
  for (const ch of s) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  let bits = 0;
  for (const n of counts.values()) {
    const p = n / s.length;
    bits -= p * Math.log2(p);
  }
  return bits;
}

/** Words and shapes that mark documentation, templates and test stand-ins rather than real credentials. */
const PLACEHOLDER =
  /example|sample|placeholder|change[_-]?me|dummy|your[_-]?|redacted|replace[_-]?me|insert[_-]|fake|not[_-]?a[_-]?real|xxxx|\*\*\*|\.\.\.|todo/i;
/** Template and interpolation syntax: `${ENV}`, `{{ secret }}`, `<token>`, `%s`, `$(cmd)`, `#{x}`. */
const TEMPLATE = /\$\{|\{\{|<[^>]*>|%\(?[sd]|\$\(|#\{|^\$[A-Z_]/;

/** True when a value reads like a stand-in: template syntax, a placeholder word, or one character repeated. */
export function looksLikePlaceholder(value: string): boolean {
  return TEMPLATE.test(value) || PLACEHOLDER.test(value) || /(.)\1{5,}/.test(value);
}

/**
 * For a literal assigned to a secret-sounding name, whose shape says nothing: it must look machine-made.
 * Whitespace means a sentence ("Invalid token provided"), a scheme a URL ("https://…/oauth/token"), a dotted
 * identifier a reference (`config.auth.token`), one-case words a name, and low entropy a pattern rather than a key.
 */
function plausibleGeneric(value: string): boolean {
  if (/\s/.test(value)) return false;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return false;
  if (/^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)+$/.test(value)) return false;
  // One-case words joined by _ - . are names (`"access_token"` as a storage key), not generated secrets.
  if (/^[a-z_.-]+$/.test(value) || /^[A-Z_.-]+$/.test(value)) return false;
  if (looksLikePlaceholder(value)) return false;
  return entropy(value) >= 3.0;
}

/** Structured keys (fixed prefix, fixed alphabet) only need to not be a documented example. */
const plausibleStructured = (value: string): boolean => !looksLikePlaceholder(value);

/** `sk-` is also a common CSS/identifier prefix; require a long, mixed, high-entropy body. */
const plausibleSk = (value: string): boolean =>
  plausibleStructured(value) && /\d/.test(value) && /[A-Za-z]/.test(value) && entropy(value) >= 3.5;

/** Names under which a literal is presumed a credential. The name must end there: `tokenizer` is not `token`. */
const SECRET_NAME = String.raw`(?:api[_-]?key|secret(?:[_-]?(?:access[_-]?)?key)?|passw(?:or)?d|pwd|token|access[_-]?key|private[_-]?key|auth[_-]?key|credentials?)`;

const BUILT_IN: readonly Detector[] = [
  {
    kind: "private key block",
    re: /-----BEGIN ((?:RSA|DSA|EC|OPENSSH|ENCRYPTED|PGP|SSH2) )?PRIVATE KEY( BLOCK)?-----/,
    group: 0,
    // The armour line is not secret, and saying which key type it is helps the reader.
    prefix: (s) => s.length,
    plausible: () => true,
  },
  {
    kind: "AWS access key id",
    re: /\b((?:AKIA|ASIA)[0-9A-Z]{16})\b/,
    group: 1,
    prefix: () => 4,
    plausible: plausibleStructured,
  },
  {
    kind: "GitHub token",
    re: /\b((?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b/,
    group: 1,
    prefix: fixedPrefix(/^(?:github_pat_|gh[pousr]_)/),
    plausible: plausibleStructured,
  },
  {
    kind: "Slack token",
    re: /\b(xox[baprs]-[A-Za-z0-9-]{10,255})/,
    group: 1,
    prefix: () => 5,
    plausible: plausibleStructured,
  },
  {
    kind: "Stripe live key",
    re: /\b([sr]k_live_[A-Za-z0-9]{16,255})\b/,
    group: 1,
    prefix: () => 8,
    plausible: plausibleStructured,
  },
  {
    kind: "API secret key (sk-)",
    re: /(?<![\w-])(sk-(?:proj-|svcacct-|admin-|ant-(?:api\d+-)?)?[A-Za-z0-9_-]{20,255})/,
    group: 1,
    prefix: fixedPrefix(/^sk-(?:proj-|svcacct-|admin-|ant-(?:api\d+-)?)?/),
    plausible: (s) => plausibleSk(s.replace(/^sk-(?:proj-|svcacct-|admin-|ant-(?:api\d+-)?)?/, "")),
  },
  {
    kind: "Google API key",
    re: /\b(AIza[0-9A-Za-z_-]{35})(?![0-9A-Za-z_-])/,
    group: 1,
    prefix: () => 4,
    plausible: plausibleStructured,
  },
  {
    kind: "credential assigned a literal",
    // name, optional closing quote (JSON/YAML keys), an assignment operator, then a quoted value. The value is
    // bounded so a pathological line cannot make this quadratic; longer secrets are keys caught above.
    re: new RegExp(String.raw`${SECRET_NAME}["']?\s*(?::=|=>|=|:)\s*["']([^"'\r\n]{12,512})["']`, "i"),
    group: 1,
    prefix: noPrefix,
    plausible: plausibleGeneric,
  },
  {
    kind: "credential assigned a literal",
    // .env / shell / YAML without quotes: `API_KEY=…`, `export TOKEN=…`, `password: …`, the value alone on the
    // line. Stricter (letters and digits) because unquoted code like `token = getToken();` looks the same.
    re: new RegExp(String.raw`^\s*(?:export\s+)?[\w.-]*${SECRET_NAME}\s*(?:=|:)\s*([A-Za-z0-9+/=_.~:@!%*^&-]{12,512})\s*$`, "i"),
    group: 1,
    prefix: noPrefix,
    plausible: (s) => /\d/.test(s) && /[A-Za-z]/.test(s) && plausibleGeneric(s),
  },
];

/** Turns a configured pattern into a RegExp: `"/body/flags"` keeps its flags (minus g and y), anything else is the body. */
export function compileSecretPattern(source: string): RegExp {
  const literal = /^\/(.+)\/([a-z]*)$/s.exec(source);
  if (literal) return new RegExp(literal[1]!, literal[2]!.replace(/[gy]/g, ""));
  return new RegExp(source);
}

function mask(secret: string, prefixLength: number): string {
  const shown = secret.slice(0, Math.min(prefixLength, secret.length));
  if (shown.length === secret.length) return shown;
  return `${shown}… (${secret.length} chars)`;
}

/** Scans added lines. Construct once per check; `extra` are already-compiled configured patterns. */
export class SecretScanner {
  private readonly detectors: Detector[];

  constructor(extra: readonly RegExp[] = []) {
    this.detectors = [
      ...BUILT_IN,
      ...extra.map((re, i) => ({
        kind: `matches secretPatterns[${i}]`,
        re,
        group: 0,
        prefix: noPrefix,
        plausible: () => true,
      })),
    ];
  }

  /** Every distinct possible secret on `line`. A span claimed by one detector is not reported again by another. */
  scanLine(line: string): SecretFinding[] {
    const findings: SecretFinding[] = [];
    const claimed: Array<[number, number]> = [];
    for (const d of this.detectors) {
      const m = d.re.exec(line);
      if (!m) continue;
      const secret = m[d.group];
      if (secret === undefined || secret.length === 0 || !d.plausible(secret)) continue;
      const start = m.index + m[0].indexOf(secret);
      const end = start + secret.length;
      if (claimed.some(([s, e]) => start < e && s < end)) continue;
      claimed.push([start, end]);
      findings.push({ kind: d.kind, masked: mask(secret, d.prefix(secret)) });
    }
    return findings;
  }
}
