/**
 * The semantic diff of two versions of an agent: the files that differ and, for the code Moss can parse (TypeScript,
 * JavaScript, Python), the functions, classes and methods added, removed or changed — each flagged with the areas the
 * agent's config names (routing, exception handling, state transitions, prompts) it falls in.
 */
import { changedFiles, runGit } from "@moss/git";
import picomatch from "picomatch";
import { compareSymbols, languageOf, symbolsOf, type SymbolChange } from "./symbols";

/** The review areas of an agent (`agents.<name>.review.areas`): area → `path-glob` or `path-glob#Symbol` patterns. */
export type ReviewAreas = Partial<Record<string, readonly string[]>>;

export interface FileDiff {
  path: string;
  status: "added" | "removed" | "changed";
  /** The parsed units that changed; absent for a file Moss does not parse. */
  symbols?: Array<SymbolChange & { areas: string[] }>;
  /** Areas the file as a whole is in (a pattern without `#Symbol`). */
  areas: string[];
  /** Why its units could not be listed (a syntax error, no python3). */
  note?: string;
}

/** The areas `path` (and, given, the symbol `name` in it) falls in. */
export function areasOf(areas: ReviewAreas, path: string, name?: string): string[] {
  const hit: string[] = [];
  for (const [area, patterns] of Object.entries(areas)) {
    for (const p of patterns ?? []) {
      const [glob, sym] = p.split("#", 2) as [string, string | undefined];
      if (!picomatch.isMatch(path, glob, { dot: true })) continue;
      if (sym === undefined || (name !== undefined && (name === sym || name.startsWith(`${sym}.`)))) {
        hit.push(area);
        break;
      }
    }
  }
  return hit;
}

async function show(repo: string, commit: string, path: string): Promise<string | undefined> {
  return runGit(repo, ["show", `${commit}:${path}`]).catch(() => undefined);
}

/** What differs from `base` to `head`, file by file, with the parsed units that changed and the areas they are in. */
export async function semanticDiff(repo: string, base: string, head: string, areas: ReviewAreas = {}): Promise<FileDiff[]> {
  const out: FileDiff[] = [];
  for (const path of await changedFiles(repo, base, head)) {
    const [before, after] = await Promise.all([show(repo, base, path), show(repo, head, path)]);
    const status = before === undefined ? "added" : after === undefined ? "removed" : "changed";
    const f: FileDiff = { path, status, areas: areasOf(areas, path) };
    const lang = languageOf(path);
    if (lang) {
      try {
        const [a, b] = await Promise.all([before === undefined ? [] : symbolsOf(lang, before, path), after === undefined ? [] : symbolsOf(lang, after, path)]);
        f.symbols = compareSymbols(a, b).map((c) => ({ ...c, areas: areasOf(areas, path, c.name) }));
      } catch (err) {
        f.note = (err as Error).message;
      }
    }
    out.push(f);
  }
  return out;
}
