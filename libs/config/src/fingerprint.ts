import { z } from "zod";

/**
 * Frames from these files are library frames unless `inApp.include` claims them (`inApp.builtinLibraries`, default on).
 * Matched against the frame's file with any `file://` scheme removed and `\` turned into `/`.
 */
export const DEFAULT_LIBRARY_PATTERNS: readonly string[] = [
  // npm packages, including pnpm's .pnpm/<pkg>@<v>/node_modules/<pkg> layout
  "(?:^|/)node_modules/",
  // Node builtins (`node:internal/...`, `node:fs`) and the pre-`node:` spelling of internals
  "^node:",
  "^internal/",
  // Python packages and the standard library (/usr/lib/python3.11, /usr/local/lib/python3.12, venvs, pyenv, conda)
  "(?:^|/)(?:site|dist)-packages/",
  "(?:^|/)lib/python\\d+(?:\\.\\d+)?/",
  "(?:^|/)Python\\d+/Lib/",
  "^<frozen ",
  // V8 frames without a source file: `new Promise (<anonymous>)`, `Array.map (native)`, `Promise.all (index 0)`
  "^(?:<anonymous>|native|index \\d+|<unknown>)$",
];

/**
 * Where apps are commonly deployed; the first match (and everything before it) is cut off an in-app frame's file so
 * the same code fingerprints the same under `/app`, `/srv/agent`, `/home/deploy/…` or `C:\app`. Tried after `appRoots`.
 * Matched against the file with `file://`, `webpack://<ns>/` and a drive letter removed and `\` turned into `/`.
 */
export const DEFAULT_ROOT_PATTERNS: readonly string[] = [
  "^/(?:usr/src/app|usr/app|app|code|workspace|github/workspace|var/task|var/app|var/www/[^/]+|srv(?:/[^/]+)?|opt(?:/[^/]+)?|home/[^/]+|Users/[^/]+|root|builds/[^/]+/[^/]+)/",
];

/** Max length of a user-supplied regex; longer patterns are almost always a mistake. */
const MAX_REGEX = 1_000;

function regexProblem(source: string): string | undefined {
  if (source.length > MAX_REGEX) return `longer than ${MAX_REGEX} characters`;
  try {
    new RegExp(source);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** A JavaScript regular expression source (no slashes, no flags; case-sensitive). */
const Regex = z.string().superRefine((s, ctx) => {
  const why = regexProblem(s);
  if (why) ctx.addIssue({ code: "custom", message: `not a valid regular expression (${why})` });
});

/** `{tag:NAME}` in a rule's `fingerprint` or `extend` is replaced by the event's tag NAME (`-` when absent). */
const Template = z.string().min(1).max(200);

/**
 * One fingerprint rule. The rule matches when every condition given holds (a rule without conditions matches every
 * event); the first matching rule wins. Conditions are JavaScript regex sources, unanchored unless you anchor them.
 */
export const FingerprintRule = z.strictObject({
  /** Regex on `error.type` (e.g. `^(KeyError|TypeError)$`). */
  errorType: z.string().optional(),
  /** Regex on the raw (not normalized) `error.message`. */
  message: z.string().optional(),
  /** Regex on `file#function` of any in-app frame, file relative to the app root (e.g. `^src/tools/search\\.ts#`). */
  frame: z.string().optional(),
  /** Regex on the event's `route`; fails when the event has none. */
  route: z.string().optional(),
  /** Tag name → regex on its value; fails when the tag is absent. */
  tags: z.record(z.string().min(1), z.string()).optional(),
  /** The fingerprint to use instead of the default, e.g. `"openai-rate-limit {tag:model}"`. */
  fingerprint: Template.optional(),
  /** Components appended to the default fingerprint, e.g. `["tenant={tag:tenant}"]`. */
  extend: z.array(Template).min(1).max(20).optional(),
});
export type FingerprintRule = z.infer<typeof FingerprintRule>;

/** Rules are checked as a list so every message names the rule by index. */
const Rules = z
  .array(FingerprintRule)
  .max(500)
  .superRefine((rules, ctx) => {
    rules.forEach((r, i) => {
      if ((r.fingerprint === undefined) === (r.extend === undefined)) {
        ctx.addIssue({ code: "custom", path: [i], message: `rules[${i}]: give exactly one action, \`fingerprint\` or \`extend\`` });
      }
      const regexes: Array<[Array<string | number>, string | undefined]> = [
        [["errorType"], r.errorType],
        [["message"], r.message],
        [["frame"], r.frame],
        [["route"], r.route],
        ...Object.entries(r.tags ?? {}).map(([k, v]): [Array<string | number>, string] => [["tags", k], v]),
      ];
      for (const [path, source] of regexes) {
        if (source === undefined) continue;
        const why = regexProblem(source);
        if (why) {
          const field = path.join(".");
          ctx.addIssue({ code: "custom", path: [i, ...path], message: `rules[${i}].${field} is not a valid regular expression (${why})` });
        }
      }
    });
  });

/**
 * How the curator groups failures into batches (`curator.fingerprint`). The default fingerprint is
 * `type | normalized message | top in-app frames | route=… | tool=… | stage=…`; an agent-supplied `fingerprint` wins
 * over everything, then the first matching rule. Any setting other than the defaults shows in the fingerprint version
 * (`fp2+rules:<hash>`), so every batch records which grouping produced it.
 */
export const FingerprintConfig = z.object({
  /** In-app frames (innermost first, consecutive repeats collapsed) in the default fingerprint; 0 leaves the stack out. Default 3. */
  frames: z.number().int().min(0).max(20).default(3),
  /** Characters of the normalized message kept in the fingerprint; 0 leaves the message out. Default 300. */
  messageMaxLength: z.number().int().min(0).max(10_000).default(300),
  /**
   * Literal deploy roots of the app (e.g. `/opt/acme/agent`); everything up to and including the first one found in a
   * frame's file is cut off. Tried before `rootPatterns`. Default none.
   */
  appRoots: z.array(z.string().min(1)).default([]),
  /** Regexes of common deploy roots, cut off (with everything before them) when no `appRoots` entry matched. Default {@link DEFAULT_ROOT_PATTERNS}. */
  rootPatterns: z.array(Regex).default([...DEFAULT_ROOT_PATTERNS]),
  inApp: z
    .object({
      /** Regexes on a frame's file that make it in-app even when a library pattern matches (e.g. `node_modules/@acme/`). Default none. */
      include: z.array(Regex).default([]),
      /** Regexes on a frame's file that make it a library frame, in addition to the built-in ones. Default none. */
      exclude: z.array(Regex).default([]),
      /** Use {@link DEFAULT_LIBRARY_PATTERNS} (node_modules, node:, site-packages, the Python stdlib, …). Default true. */
      builtinLibraries: z.boolean().default(true),
    })
    .prefault({}),
  signals: z
    .object({
      /** Append `route=<route>` (ids in path segments masked) when the event has a route. Default true. */
      route: z.boolean().default(true),
      /** Tags appended as `name=value` when present, in this order: the agent's tool and state-machine stage. Default `["tool", "stage"]`. */
      tags: z.array(z.string().min(1)).max(20).default(["tool", "stage"]),
    })
    .prefault({}),
  /** Fingerprint rules, first match wins. Default none. */
  rules: Rules.default([]),
});
export type FingerprintConfig = z.infer<typeof FingerprintConfig>;
export type FingerprintConfigInput = z.input<typeof FingerprintConfig>;
