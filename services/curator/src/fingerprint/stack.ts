/**
 * Stack traces → frames, innermost first, for V8 (Node.js) and CPython; and frame files → in-app or library, with a
 * canonical path that does not depend on where the code was deployed.
 */
import { DEFAULT_LIBRARY_PATTERNS, type FingerprintConfig } from "@moss/config";

/** One stack frame, as parsed or as sent by the agent. */
export interface Frame {
  /** The file as it appears in the trace (`file://` URLs, Windows paths and `<frozen …>` kept verbatim). */
  file: string;
  /** Function name; `async ` and V8's ` [as alias]` removed, `new Foo` kept. */
  function?: string;
  line?: number;
  column?: number;
  /** Whether the frame is the app's own code (not a library or the runtime). */
  inApp?: boolean;
}

const PY_HEADER = "Traceback (most recent call last):";
// `  File "/app/x.py", line 12, in handle` — also inside exception-group boxes (`  |   File ...`).
const PY_FRAME = /^[\s|]*File "([^"\n]*)", line (\d+)(?:, in ([^\n]+))?/;
const V8_AT = /^\s*at\s+/;
const V8_ELIDED = /^\s*\.\.\. \d+ lines? matching/;

/** True when `s` from `from` to its end is one or more ASCII digits. */
function digitsFrom(s: string, from: number): boolean {
  if (from >= s.length) return false;
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** `file:line:col` / `file:line` / `file` → parts; only trailing numeric segments count (`C:\x.js`, `node:fs` stay whole). */
function splitLocation(loc: string, out: Frame): void {
  let file = loc;
  let c = file.lastIndexOf(":");
  if (c > 0 && digitsFrom(file, c + 1)) {
    let n = Number(file.slice(c + 1));
    file = file.slice(0, c);
    c = file.lastIndexOf(":");
    if (c > 0 && digitsFrom(file, c + 1)) {
      out.column = n;
      n = Number(file.slice(c + 1));
      file = file.slice(0, c);
    }
    out.line = n;
  }
  out.file = file;
}

export function cleanFunction(fn: string): string | undefined {
  let f = fn.trim();
  if (f.startsWith("async ")) f = f.slice(6);
  const alias = f.indexOf(" [as ");
  if (alias > 0 && f.endsWith("]")) f = f.slice(0, alias);
  return f === "" || f === "<anonymous>" ? undefined : f;
}

/** One V8 frame line (`at …` already matched) → frame. */
function parseV8Line(rest: string): Frame {
  const frame: Frame = { file: "" };
  let loc = rest;
  if (rest.endsWith(")")) {
    const p = rest.indexOf(" (");
    if (p > 0) {
      const fn = cleanFunction(rest.slice(0, p));
      if (fn !== undefined) frame.function = fn;
      loc = rest.slice(p + 2, -1);
    }
  }
  // eval frames: `eval at handler (file:///app/x.js:3:9), <anonymous>:1:1` — the innermost origin is the real code.
  if (loc.startsWith("eval at ")) {
    const close = loc.indexOf(")");
    const open = close > 0 ? loc.lastIndexOf("(", close) : -1;
    if (open >= 0) loc = loc.slice(open + 1, close);
  }
  splitLocation(loc, frame);
  return frame;
}

function parseV8(stack: string): Frame[] {
  const frames: Frame[] = [];
  let pos = 0;
  while (pos <= stack.length) {
    let end = stack.indexOf("\n", pos);
    if (end < 0) end = stack.length;
    const line = stack.slice(pos, end);
    pos = end + 1;
    const at = V8_AT.exec(line);
    if (at) {
      let rest = line.slice(at[0].length).trim();
      // util.inspect opens the error's own properties on its last frame line: `at handle (/app/x.ts:1:1) {`
      if (rest.endsWith(" {")) rest = rest.slice(0, -2);
      frames.push(parseV8Line(rest));
    } else if (frames.length > 0 && line.trim() !== "" && !V8_ELIDED.test(line)) {
      // After the frames come util.inspect's extras (`[cause]: …`, own properties): not this error's stack.
      break;
    }
  }
  return frames;
}

function parsePython(stack: string): Frame[] {
  // Chained exceptions print one block per exception; the last block is the one that was finally raised.
  const start = stack.lastIndexOf(PY_HEADER);
  const text = start >= 0 ? stack.slice(start + PY_HEADER.length) : stack;
  const frames: Frame[] = [];
  let pos = 0;
  while (pos <= text.length) {
    let end = text.indexOf("\n", pos);
    if (end < 0) end = text.length;
    const m = PY_FRAME.exec(text.slice(pos, end));
    pos = end + 1;
    if (!m) continue;
    const frame: Frame = { file: m[1] ?? "", line: Number(m[2]) };
    const fn = m[3]?.trim();
    if (fn) frame.function = fn;
    frames.push(frame);
  }
  // Python lists the outermost call first.
  return frames.reverse();
}

function isPython(stack: string): boolean {
  return stack.includes(PY_HEADER) || /^[\s|]*File "[^"\n]*", line \d+/m.test(stack);
}

/** Parses frames without classifying them. */
export function parseFrames(stack: string): Frame[] {
  return isPython(stack) ? parsePython(stack) : parseV8(stack);
}

/** How a frame's file is seen by the fingerprint. */
export interface FileClass {
  inApp: boolean;
  /** Deploy-independent path: relative to the app root for app code, to the package directory for libraries. */
  canonical: string;
}

export type FileClassifier = (file: string) => FileClass;

const DRIVE = /^\/?[A-Za-z]:(?=\/)/;
const WEBPACK = /^webpack(?:-internal)?:\/\/[^/]*\//;
const PY_STDLIB = /(?:^|\/)lib\/python\d+(?:\.\d+)?\/|(?:^|\/)Python\d+\/Lib\//;
const PACKAGE_DIRS = ["node_modules/", "site-packages/", "dist-packages/"];

/** `file://` scheme and URL query/fragment removed, `\` → `/`: what in-app patterns are matched against. */
function matchForm(file: string): string {
  let f = file;
  if (f.startsWith("file://")) {
    f = f.slice(7);
    const q = f.search(/[?#]/);
    if (q >= 0) f = f.slice(0, q);
  }
  return f.includes("\\") ? f.replaceAll("\\", "/") : f;
}

function stripRelative(p: string): string {
  let s = p;
  while (s.startsWith("./")) s = s.slice(2);
  while (s.startsWith("/")) s = s.slice(1);
  return s;
}

/**
 * Builds the file classifier for a config: library patterns decide in-app (include wins over exclude), app roots and
 * root patterns make paths canonical. Results are cached per file: a service sees few distinct files.
 */
export function createFileClassifier(cfg: Pick<FingerprintConfig, "appRoots" | "rootPatterns" | "inApp">): FileClassifier {
  const include = cfg.inApp.include.map((s) => new RegExp(s));
  const exclude = [...(cfg.inApp.builtinLibraries ? DEFAULT_LIBRARY_PATTERNS : []), ...cfg.inApp.exclude].map((s) => new RegExp(s));
  const roots = cfg.appRoots
    .map((r) => {
      const f = matchForm(r).replace(DRIVE, "");
      return f.endsWith("/") ? f : `${f}/`;
    })
    .sort((a, b) => b.length - a.length);
  const rootPatterns = cfg.rootPatterns.map((s) => new RegExp(s));

  const appRelative = (p: string): string => {
    for (const root of roots) {
      const i = p.indexOf(root);
      if (i >= 0) return stripRelative(p.slice(i + root.length));
    }
    for (const re of rootPatterns) {
      const m = re.exec(p);
      if (m) return stripRelative(p.slice(m.index + m[0].length));
    }
    return stripRelative(p);
  };

  // Package files are relative to their package (pnpm's .pnpm/<pkg>@<version>/ and venv paths drop out), in-app or not.
  const canonicalPath = (p: string): string => {
    for (const dir of PACKAGE_DIRS) {
      const i = p.lastIndexOf(dir);
      if (i >= 0) return p.slice(i + dir.length);
    }
    const m = PY_STDLIB.exec(p);
    if (m) return p.slice(m.index + m[0].length);
    return appRelative(p);
  };

  const cache = new Map<string, FileClass>();
  return (file) => {
    const hit = cache.get(file);
    if (hit) return hit;
    const f = matchForm(file);
    const inApp = include.some((re) => re.test(f)) || !exclude.some((re) => re.test(f));
    const p = f.replace(WEBPACK, "").replace(DRIVE, "");
    const res: FileClass = { inApp, canonical: canonicalPath(p) };
    // Bounded: a pathological stream of unique paths must not grow memory without limit.
    if (cache.size >= 10_000) cache.clear();
    cache.set(file, res);
    return res;
  };
}

let defaultClassifier: FileClassifier | undefined;

/**
 * Parses a V8 (Node.js) or Python stack trace into frames, innermost first for both, with `inApp` set by the default
 * library patterns. For Python chained exceptions, only the last (finally raised) exception's frames are returned.
 */
export function parseStack(stack: string): Frame[] {
  defaultClassifier ??= createFileClassifier({ appRoots: [], rootPatterns: [], inApp: { include: [], exclude: [], builtinLibraries: true } });
  const classify = defaultClassifier;
  const frames = parseFrames(stack);
  for (const f of frames) f.inApp = classify(f.file).inApp;
  return frames;
}
