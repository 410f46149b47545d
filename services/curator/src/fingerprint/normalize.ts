/**
 * Message normalization: the parts of an error message that vary between occurrences of the same root cause (ids,
 * numbers, quoted values, paths, times, addresses) become stable placeholders.
 *
 * One pass of one regex: every alternative is either bounded in length or can only start at a token boundary and stops
 * at the token's end, so the cost is linear in the message length (no nested unbounded quantifiers, no catastrophic
 * backtracking). Alternatives are tried in order at each position, so earlier ones win ties.
 */

const MON = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)";
const DAY = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)";
const FRAC = "(?:[.,]\\d{1,9})?";
const TZ = "(?:Z|[+-]\\d{2}:?\\d{2})?";
const HEX = "[0-9a-fA-F]";

const TIMESTAMP = [
  // ISO 8601 / RFC 3339: 2024-05-01, 2024-05-01T12:00:00.123Z, 2024-05-01 12:00:00+02:00
  `\\d{4}-\\d{2}-\\d{2}(?:[T ]\\d{2}:\\d{2}(?::\\d{2}${FRAC})?${TZ})?`,
  // 2024/05/01 12:00:00
  `\\d{4}/\\d{2}/\\d{2}(?:[ T]\\d{2}:\\d{2}(?::\\d{2}${FRAC})?)?`,
  // Common/combined log format: 10/Oct/2000:13:55:36 -0700
  `\\d{1,2}/${MON}/\\d{4}:\\d{2}:\\d{2}:\\d{2}(?: [+-]\\d{4})?`,
  // RFC 1123 / HTTP date: Tue, 15 Nov 1994 08:12:31 GMT
  `${DAY}, \\d{1,2} ${MON} \\d{4} \\d{2}:\\d{2}:\\d{2}(?: (?:GMT|UTC|[+-]\\d{4}))?`,
  // JavaScript Date#toString: Tue Nov 15 1994 08:12:31 GMT+0100 (Central European Standard Time)
  `${DAY} ${MON} \\d{2} \\d{4} \\d{2}:\\d{2}:\\d{2}(?: GMT[+-]\\d{4}(?: \\([^()\\n]{1,64}\\))?)?`,
  // syslog: Oct  3 13:55:36
  `${MON} {1,2}\\d{1,2} \\d{2}:\\d{2}:\\d{2}`,
  // bare time of day: 13:55:36.123
  `\\d{1,2}:\\d{2}:\\d{2}${FRAC}${TZ}`,
].join("|");

/** Group order matters: the replacer dispatches on the first defined group. */
const MASTER = new RegExp(
  [
    /* 1 ws     */ "([\\t\\n\\r\\f\\v ]{2,}|[\\t\\n\\r\\f\\v])",
    /* 2 url    */ "((?<![\\w.+-])[A-Za-z][A-Za-z0-9+.-]{0,15}://[^\\s'\"`<>]*)",
    /* 3 email  */ "((?<![\\w.%+-])[\\w.%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\\.[A-Za-z0-9-]{1,63}){1,8})",
    /* 4 quoted */ "((?<!\\w)'[^'\\n]*'(?!\\w)|(?<!\\w)\"[^\"\\n]*\"(?!\\w)|`[^`\\n]*`)",
    /* 5 uuid   */ `((?<![A-Za-z0-9])${HEX}{8}-${HEX}{4}-${HEX}{4}-${HEX}{4}-${HEX}{12}(?![A-Za-z0-9]))`,
    /* 6 ts     */ `((?<![A-Za-z0-9])(?:${TIMESTAMP})(?![A-Za-z0-9]))`,
    /* 7 ipv4   */ "((?<![\\w.])(?:\\d{1,3}\\.){3}\\d{1,3}(?!\\w|\\.\\d))",
    /* 8 ipv6?  */ `((?<![\\w:])(?=${HEX}{0,4}:${HEX}{0,4}:)[0-9a-fA-F:]{2,39}(?:%[\\w.]{1,16})?(?![\\w:]))`,
    /* 9 path   */ "((?<!\\w)[A-Za-z]:[\\\\/][^\\s'\"`<>|*?]*|(?<![\\w/.:~-])(?:~|\\.{1,2})?/[\\w.@+~-]+(?:/[\\w.@+~-]+)*/?)",
    /* 10 path? */ "((?<![\\w/.~@-])[\\w.@+-]+(?:/[\\w.@+-]+)+/?)",
    /* 11 hex   */ `((?<![A-Za-z0-9])(?:0[xX]${HEX}+|(?=${HEX}*[a-fA-F])(?=${HEX}*\\d)${HEX}{8,})(?![A-Za-z0-9]))`,
    /* 12 id?   */ "((?<![A-Za-z0-9_-])[A-Za-z0-9_-]{16,}(?![A-Za-z0-9_-]))",
    /* 13 status*/ "((?<=\\b(?:[Ss]tatus(?:[ _][Cc]ode)?|HTTP(?:/\\d(?:\\.\\d)?)?|[Cc]ode)[:=]? ?)[1-5]\\d{2}(?![\\w.]))",
    /* 14 num   */ "((?<![A-Za-z0-9])\\d+(?:\\.\\d+)*|(?<=[A-Za-z])\\d{4,}(?:\\.\\d+)*)",
  ].join("|"),
  "g",
);

/** Numbers only, for candidates that turned out not to be what their shape suggested (`application/json`, `1/2`). */
const NUM_ONLY = /(?<![A-Za-z0-9])\d+(?:\.\d+)*|(?<=[A-Za-z])\d{4,}(?:\.\d+)*/g;
const maskNumbers = (s: string): string => s.replace(NUM_ONLY, "<num>");

const FILE_EXT = /\.[A-Za-z][A-Za-z0-9]{0,7}$/;
const UUID_RE = new RegExp(`^${HEX}{8}-${HEX}{4}-${HEX}{4}-${HEX}{4}-${HEX}{12}$`);
const HEX_RE = new RegExp(`^(?:0[xX]${HEX}+|(?=${HEX}*[a-fA-F])(?=${HEX}*\\d)${HEX}{8,})$`);
const IPV4_RE = /^(?:\d{1,3}\.){3}\d{1,3}$/;
const TRAILING_PUNCT = /[.,;:!?)\]}]+$/;

/** A token of 16+ id characters with at least two digits and two letters: nanoid, Stripe/OpenAI ids, API keys. */
function looksLikeId(tok: string): boolean {
  let digits = 0;
  let letters = 0;
  for (let i = 0; i < tok.length; i++) {
    const c = tok.charCodeAt(i);
    if (c >= 48 && c <= 57) digits++;
    else if ((c >= 65 && c <= 90) || (c >= 97 && c <= 122)) letters++;
  }
  return digits >= 2 && letters >= 2;
}

function isIpv6(tok: string): boolean {
  const bare = tok.replace(/%.*$/, "");
  const groups = bare.split(":");
  if (groups.some((g) => g.length > 4)) return false;
  return bare.includes("::") ? groups.length <= 9 : groups.length === 8;
}

/** One URL path segment: whole-segment ids become placeholders, names stay. */
function maskSegment(seg: string): string {
  if (seg === "") return seg;
  if (/^\d+$/.test(seg)) return "<num>";
  if (UUID_RE.test(seg)) return "<uuid>";
  if (HEX_RE.test(seg)) return "<hex>";
  if (seg.length >= 16 && /^[A-Za-z0-9_-]+$/.test(seg) && looksLikeId(seg)) return "<id>";
  return seg;
}

/** `scheme://[user@]host[:port]/path?query#frag` → credentials, ids in the path and the query masked, fragment dropped. */
function maskUrl(url: string): string {
  const schemeEnd = url.indexOf("://") + 3;
  let rest = url.slice(schemeEnd);
  let tail = "";
  const q = rest.search(/[?#]/);
  if (q >= 0) {
    if (rest[q] === "?" && q + 1 < rest.length && rest[q + 1] !== "#") tail = "?<query>";
    rest = rest.slice(0, q);
  }
  const slash = rest.indexOf("/");
  let authority = slash >= 0 ? rest.slice(0, slash) : rest;
  const path = slash >= 0 ? rest.slice(slash) : "";
  const at = authority.lastIndexOf("@");
  const cred = at >= 0 ? "<cred>@" : "";
  authority = authority.slice(at + 1);
  // [v6]:port or host:port
  const hostEnd = authority.startsWith("[") ? authority.indexOf("]") + 1 : authority.lastIndexOf(":");
  let host = authority;
  let port = "";
  if (hostEnd > 0 && hostEnd < authority.length && authority[hostEnd] === ":" && /^\d+$/.test(authority.slice(hostEnd + 1))) {
    host = authority.slice(0, hostEnd);
    port = ":<num>";
  }
  if (IPV4_RE.test(host) || host.startsWith("[")) host = "<ip>";
  return url.slice(0, schemeEnd) + cred + host + port + path.split("/").map(maskSegment).join("/") + tail;
}

function replace(m: string, ...g: Array<string | undefined>): string {
  if (g[0] !== undefined) return " ";
  if (g[1] !== undefined) {
    const punct = TRAILING_PUNCT.exec(m)?.[0] ?? "";
    return maskUrl(punct ? m.slice(0, -punct.length) : m) + punct;
  }
  if (g[2] !== undefined) return "<email>";
  if (g[3] !== undefined) return "<str>";
  if (g[4] !== undefined) return "<uuid>";
  if (g[5] !== undefined) return "<ts>";
  if (g[6] !== undefined) return "<ip>";
  if (g[7] !== undefined) return isIpv6(m) ? "<ip>" : maskNumbers(m);
  if (g[8] !== undefined) {
    // A lone "/word" is more often a route or a ratio than a file: keep it unless it has an extension or a prefix.
    if (m.indexOf("/", 1) > 0 || FILE_EXT.test(m) || m[0] !== "/") return "<path>";
    return maskNumbers(m);
  }
  if (g[9] !== undefined) return FILE_EXT.test(m) ? "<path>" : maskNumbers(m);
  if (g[10] !== undefined) return "<hex>";
  if (g[11] !== undefined) return looksLikeId(m) ? "<id>" : maskNumbers(m);
  if (g[12] !== undefined) return m;
  return "<num>";
}

/**
 * Masks what varies between occurrences of one failure: numbers `<num>`, UUIDs `<uuid>`, hex ids `<hex>`, long random
 * ids `<id>`, quoted values `<str>`, file paths `<path>`, timestamps `<ts>`, emails `<email>`, IPs `<ip>`, URL query
 * strings `?<query>` (and credentials `<cred>@`); HTTP status codes after `status`/`code`/`HTTP` are kept. Whitespace
 * runs become one space.
 */
export function normalizeMessage(msg: string): string {
  return msg.replace(MASTER, replace).trim();
}

/** A route as a fingerprint component: query dropped, id-like path segments masked (`/v1/users/42` → `/v1/users/<num>`). */
export function normalizeRoute(route: string): string {
  const q = route.search(/[?#]/);
  const path = (q >= 0 ? route.slice(0, q) : route).trim();
  return path.includes("/") ? path.split("/").map(maskSegment).join("/") : maskSegment(path);
}
