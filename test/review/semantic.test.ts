// The semantic diff: changed functions, classes and methods by name, parsed (TypeScript compiler API, Python's ast),
// and the review areas a change falls in.
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { areasOf, compareSymbols, pySymbols, semanticDiff, tsSymbols } from "@moss/review";
import { afterAll, describe, expect, it } from "vitest";

const TS_BEFORE = `
import { x } from "./x";
// The rules, in order.
export const rules = [{ intent: "calculator", pattern: /\\d/ }, { intent: "currency", pattern: /usd/ }];
export function route(m: string) { for (const r of rules) if (r.pattern.test(m)) return r.intent; return "echo"; }
export class Store {
  private file = "state.json";
  load() { return 1; }
  save(v: number) { return v; }
}
export const echo = { name: "echo", async run(m: string) { return "you said: " + m; } };
const helper = (a: number) => a + 1;
`;
const TS_AFTER = `
import { x } from "./x";
// The rules, in order: currency first now.
export const rules = [{ intent: "currency", pattern: /usd/ }, { intent: "calculator", pattern: /\\d/ }];
export function route(m: string) {
  for (const r of rules) if (r.pattern.test(m)) return r.intent;
  return "echo";
}
export class Store {
  private file = "state.json";
  load() { return 2; }
  save(v: number) { return v; }
  reset() { return 0; }
}
export const echo = { name: "echo", async run(m: string) { return "you said: " + m.trim(); } };
`;
const PY_BEFORE = `
import json
LIMIT = 10
def remember(note):
    return note.strip()

class Notes:
    kind = "notes"
    def add(self, n):
        return n
    def tags(self, n):
        return [w for w in n.split() if w.startswith("#")]
`;
const PY_AFTER = `
import json
LIMIT = 10
def remember(note):
    # a comment changes nothing
    return note.strip()

class Notes:
    kind = "notes"
    def add(self, n):
        return n
    def tags(self, n):
        return [w.lower() for w in n.split() if w.startswith("#")]

def recall(q):
    return q
`;

describe("symbols", () => {
  it("TypeScript: changed, added and removed units by name; layout and comments are not changes; a class changes only outside its methods", () => {
    const changes = compareSymbols(tsSymbols(TS_BEFORE), tsSymbols(TS_AFTER));
    expect(changes).toEqual(
      expect.arrayContaining([
        { name: "rules", kind: "value", change: "changed" },
        { name: "Store.load", kind: "method", change: "changed" },
        { name: "Store.reset", kind: "method", change: "added" },
        { name: "echo.run", kind: "method", change: "changed" },
        { name: "helper", kind: "function", change: "removed" },
      ]),
    );
    expect(changes).toHaveLength(5); // not route (reformatted), not Store or echo themselves, not Store.save
  });

  it("Python (ast, in python3): changed and added functions and methods; a comment is not a change", async () => {
    const changes = compareSymbols(await pySymbols(PY_BEFORE), await pySymbols(PY_AFTER));
    expect(changes).toEqual([
      { name: "Notes.tags", kind: "method", change: "changed" },
      { name: "recall", kind: "function", change: "added" },
    ]);
    await expect(pySymbols("def broken(:\n")).rejects.toThrow(/not valid Python: line 1/);
  });

  it("areas: a path glob flags the whole file, path#Symbol the symbol and its members", () => {
    const areas = { routing: ["src/router.ts"], state: ["src/**/state.py#Notes"], prompts: ["src/model.ts#SYSTEM"] };
    expect(areasOf(areas, "src/router.ts", "rules")).toEqual(["routing"]);
    expect(areasOf(areas, "src/a/b/state.py", "Notes.tags")).toEqual(["state"]);
    expect(areasOf(areas, "src/a/b/state.py", "other")).toEqual([]);
    expect(areasOf(areas, "src/model.ts", "SYSTEM")).toEqual(["prompts"]);
    expect(areasOf(areas, "src/model.ts", "ask")).toEqual([]);
  });
});

describe("semanticDiff over a real repository", () => {
  const repo = mkdtempSync(join(tmpdir(), "moss-review-"));
  afterAll(() => rmSync(repo, { recursive: true, force: true }));
  const git = (...a: string[]) => execFileSync("git", ["-C", repo, "-c", "user.name=t", "-c", "user.email=t@t", ...a], { encoding: "utf8" }).trim();
  const write = (p: string, s: string) => {
    mkdirSync(dirname(join(repo, p)), { recursive: true });
    writeFileSync(join(repo, p), s);
  };

  it("names the changed units of a TypeScript and a Python change, flags the routing one, and lists other files", async () => {
    git("init", "-q");
    write("src/router.ts", TS_BEFORE);
    write("agent/notes.py", PY_BEFORE);
    write("README.md", "v1\n");
    git("add", "-A");
    git("commit", "-qm", "v1");
    const base = git("rev-parse", "HEAD");
    write("src/router.ts", TS_AFTER);
    write("agent/notes.py", PY_AFTER);
    write("README.md", "v2\n");
    write("agent/broken.py", "def x(:\n");
    git("add", "-A");
    git("commit", "-qm", "v2");
    const files = await semanticDiff(repo, base, git("rev-parse", "HEAD"), { routing: ["src/router.ts#rules", "src/router.ts#route"], state: ["agent/*.py#Notes"] });
    const by = Object.fromEntries(files.map((f) => [f.path, f]));
    expect(Object.keys(by).sort()).toEqual(["README.md", "agent/broken.py", "agent/notes.py", "src/router.ts"]);
    expect(by["README.md"]).toEqual({ path: "README.md", status: "changed", areas: [] });
    expect(by["src/router.ts"]!.symbols).toContainEqual({ name: "rules", kind: "value", change: "changed", areas: ["routing"] });
    expect(by["src/router.ts"]!.symbols).toContainEqual({ name: "Store.load", kind: "method", change: "changed", areas: [] });
    expect(by["agent/notes.py"]!.symbols).toEqual([
      { name: "Notes.tags", kind: "method", change: "changed", areas: ["state"] },
      { name: "recall", kind: "function", change: "added", areas: [] },
    ]);
    expect(by["agent/broken.py"]).toMatchObject({ status: "added", note: expect.stringContaining("not valid Python") });
  });
});
