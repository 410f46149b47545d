/**
 * The named units of a source file — functions, classes, methods, top-level values — each with a fingerprint of its
 * syntax tree (comments and layout left out), so two versions of a file compare by what changed in which unit, not by
 * hunk headers. TypeScript and JavaScript are parsed with the TypeScript compiler API; Python with its own `ast`
 * module, in a `python3` subprocess.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import ts from "typescript";

export type SymbolKind = "function" | "class" | "method" | "value";

export interface CodeSymbol {
  /** Qualified: `handle`, `Router.route`, `echo.run`. */
  name: string;
  kind: SymbolKind;
  /** sha256 of the unit's syntax, without comments and layout. */
  fingerprint: string;
}

export type Language = "typescript" | "python";

/** The language a path is parsed as, if any. */
export function languageOf(path: string): Language | undefined {
  if (/\.(ts|tsx|mts|cts|js|jsx|mjs|cjs)$/.test(path)) return "typescript";
  if (/\.py$/.test(path)) return "python";
  return undefined;
}

const sha = (s: string) => createHash("sha256").update(s).digest("hex");

/** The symbols of a TypeScript or JavaScript file. */
export function tsSymbols(source: string, fileName = "file.ts"): CodeSymbol[] {
  const kind = /\.(tsx|jsx)$/.test(fileName) ? ts.ScriptKind.TSX : /\.(js|mjs|cjs)$/.test(fileName) ? ts.ScriptKind.JS : ts.ScriptKind.TS;
  const file = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true, kind);
  // The tree's shape: each node's kind and children, and a leaf's text — no comments, no layout.
  const shape = (n: ts.Node): string => {
    const kids: string[] = [];
    ts.forEachChild(n, (c) => void kids.push(shape(c)));
    return `${n.kind}(${kids.length ? kids.join(",") : n.getText(file)})`;
  };
  const print = (n: ts.Node) => sha(shape(n));
  const out: CodeSymbol[] = [];
  const add = (name: string, k: SymbolKind, n: ts.Node) => out.push({ name, kind: k, fingerprint: print(n) });
  const isFn = (e: ts.Node | undefined) => !!e && (ts.isArrowFunction(e) || ts.isFunctionExpression(e));
  const nameOf = (n: ts.PropertyName | ts.BindingName | undefined) => (n && (ts.isIdentifier(n) || ts.isStringLiteral(n) || ts.isPrivateIdentifier(n)) ? n.text : undefined);

  /** The members that are units of their own (methods, function-valued properties), each added; the rest returned. */
  const members = (owner: string, ms: ts.NodeArray<ts.ClassElement | ts.ObjectLiteralElementLike>): ts.Node[] => {
    const rest: ts.Node[] = [];
    for (const m of ms) {
      if (ts.isConstructorDeclaration(m)) add(`${owner}.constructor`, "method", m);
      else if ((ts.isMethodDeclaration(m) || ts.isGetAccessor(m) || ts.isSetAccessor(m)) && nameOf(m.name)) add(`${owner}.${nameOf(m.name)}`, "method", m);
      else if ((ts.isPropertyDeclaration(m) || ts.isPropertyAssignment(m)) && nameOf(m.name) && isFn(m.initializer)) add(`${owner}.${nameOf(m.name)}`, "method", m);
      else rest.push(m);
    }
    return rest;
  };
  /** A container (class, object) changed only when what is not a unit of its own did: its heading and its other members. */
  const shell = (name: string, k: SymbolKind, heading: readonly ts.Node[], rest: readonly ts.Node[]) => out.push({ name, kind: k, fingerprint: sha([...heading, ...rest].map(shape).join(",")) });
  const visit = (n: ts.Node) => {
    if (ts.isFunctionDeclaration(n) && n.name) add(n.name.text, "function", n);
    else if (ts.isClassDeclaration(n) && n.name) {
      shell(n.name.text, "class", [n.name, ...(n.heritageClauses ?? []), ...(n.modifiers ?? [])], members(n.name.text, n.members));
    } else if (ts.isVariableStatement(n)) {
      for (const d of n.declarationList.declarations) {
        const name = nameOf(d.name);
        if (!name) continue;
        let init = d.initializer;
        while (init && (ts.isAsExpression(init) || ts.isSatisfiesExpression(init) || ts.isParenthesizedExpression(init))) init = init.expression;
        if (init && ts.isObjectLiteralExpression(init)) shell(name, "value", d.type ? [d.type] : [], members(name, init.properties));
        else add(name, isFn(init) ? "function" : init && ts.isClassExpression(init) ? "class" : "value", d);
      }
    } else if (ts.isModuleDeclaration(n) && n.body && ts.isModuleBlock(n.body)) n.body.statements.forEach(visit);
  };
  file.statements.forEach(visit);
  return out;
}

/** Walks a module's tree with `ast`: every function, class and method by qualified name, and top-level assignments. */
const PY_SCRIPT = String.raw`
import ast, hashlib, json, sys
src = sys.stdin.read()
try:
    tree = ast.parse(src)
except SyntaxError as e:
    print(json.dumps({"error": "line %s: %s" % (e.lineno, e.msg)})); sys.exit(0)
out = []
def fp(n): return hashlib.sha256(ast.dump(n, include_attributes=False).encode()).hexdigest()
def walk(body, prefix, in_class):
    for n in body:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append({"name": prefix + n.name, "kind": "method" if in_class else "function", "fingerprint": fp(n)})
            walk(n.body, prefix + n.name + ".", False)
        elif isinstance(n, ast.ClassDef):
            # The class itself: its bases, decorators and what is not a method (each method is a unit of its own).
            shell = [n.bases, n.keywords, n.decorator_list, [b for b in n.body if not isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]]
            out.append({"name": prefix + n.name, "kind": "class", "fingerprint": hashlib.sha256(repr([[ast.dump(x, include_attributes=False) for x in part] for part in shell]).encode()).hexdigest()})
            walk(n.body, prefix + n.name + ".", True)
        elif not prefix and isinstance(n, (ast.Assign, ast.AnnAssign)):
            targets = n.targets if isinstance(n, ast.Assign) else [n.target]
            for t in targets:
                if isinstance(t, ast.Name): out.append({"name": t.id, "kind": "value", "fingerprint": fp(n)})
walk(tree.body, "", False)
print(json.dumps({"symbols": out}))
`;

/** The symbols of a Python file (`python3` on PATH, or `MOSS_PYTHON`). Throws with the parser's message on a syntax error. */
export function pySymbols(source: string): Promise<CodeSymbol[]> {
  return new Promise((resolve, reject) => {
    const py = process.env["MOSS_PYTHON"] ?? "python3";
    const child = execFile(py, ["-I", "-c", PY_SCRIPT], { maxBuffer: 16 * 2 ** 20, timeout: 30_000 }, (err, stdout) => {
      if (err) return reject(new Error(`${py} could not parse the file: ${err.message}`));
      const r = JSON.parse(stdout) as { symbols?: CodeSymbol[]; error?: string };
      if (r.error) return reject(new Error(`not valid Python: ${r.error}`));
      resolve(r.symbols ?? []);
    });
    child.stdin?.end(source);
  });
}

export function symbolsOf(lang: Language, source: string, fileName: string): Promise<CodeSymbol[]> {
  return lang === "python" ? pySymbols(source) : Promise.resolve(tsSymbols(source, fileName));
}

export interface SymbolChange {
  name: string;
  kind: SymbolKind;
  change: "added" | "removed" | "changed";
}

/** What changed between two versions' symbols, by name; a unit whose syntax is the same is unchanged. */
export function compareSymbols(before: readonly CodeSymbol[], after: readonly CodeSymbol[]): SymbolChange[] {
  const was = new Map(before.map((s) => [s.name, s]));
  const now = new Map(after.map((s) => [s.name, s]));
  const out: SymbolChange[] = [];
  for (const s of after) {
    const w = was.get(s.name);
    if (!w) out.push({ name: s.name, kind: s.kind, change: "added" });
    else if (w.fingerprint !== s.fingerprint) out.push({ name: s.name, kind: s.kind, change: "changed" });
  }
  for (const s of before) if (!now.has(s.name)) out.push({ name: s.name, kind: s.kind, change: "removed" });
  return out;
}
