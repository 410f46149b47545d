import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import { once, prepareOutput, writeText } from "./common";
import { runGit } from "@moss/git";
import { RuleSetError } from "../errors";
import { describeMatch, loadRules, matches, ruleEvidence, type ReplaceEdit, type Rule } from "./symbolic-rules";
import type { AdapterResult, CodingAgentAdapter, StageInvocation } from "./types";

/**
 * The symbolic patcher: no LLM, a directory of rules (see {@link Rule}). The first rule (in file-name order) whose
 * `match` fits the evidence is the fix.
 *
 * - implement: applies the rule's patch, then its replacements. `success` when something changed; `no-change` when
 *   no rule matches or the rule's edits are all in place already (re-running a rule is harmless); `failure` when an
 *   edit does not apply — with git's message — and then every file the rule touched is put back as it was.
 * - locate / plan: a short deterministic text in `outputPath` naming the rule (`no-change` when none matches);
 * - plan-review / code-review: `APPROVE`.
 *
 * A patch is applied with `git apply --3way` (a 3-way merge where the patch records its blobs; it stages the
 * result), and when that fails, with plain `git apply`. It counts as applied already when it applies in reverse.
 */
export function symbolicAdapter(rulesDir: string): CodingAgentAdapter {
  return {
    name: "symbolic",
    version: once(() => Promise.resolve(rulesDigest(rulesDir))),
    async run(inv: StageInvocation): Promise<AdapterResult> {
      const started = Date.now();
      const done = (outcome: AdapterResult["outcome"], reason: string, message?: string, output = ""): AdapterResult => {
        if (message !== undefined) writeText(inv.outputPath, message);
        return { outcome, reason, output, ...(message !== undefined ? { message } : {}), exitCode: null, durationMs: Date.now() - started };
      };
      try {
        prepareOutput(inv.outputPath);
        let rules: Rule[];
        try {
          rules = loadRules(rulesDir);
        } catch (err) {
          if (err instanceof RuleSetError) return done("failure", `unusable rules in ${rulesDir}: ${err.message}`);
          throw err;
        }
        let raw: unknown;
        try {
          raw = JSON.parse(readFileSync(inv.evidencePath, "utf8"));
        } catch (err) {
          return done("failure", `cannot read the evidence file ${inv.evidencePath}: ${(err as Error).message}`);
        }
        const ev = ruleEvidence(raw);
        const rule = rules.find((r) => matches(r, ev));
        const none = `no rule of ${rules.length} matches fingerprint '${ev.fingerprint}'`;
        switch (inv.stage) {
          case "locate":
            if (!rule) return done("no-change", none, `locate: ${none}\n`);
            return done("success", `rule '${rule.name}' matches`, `locate: rule '${rule.name}' (${rule.file}) matches: ${describeMatch(rule)}\nfiles: ${ruleFiles(rule).join(", ")}\n`);
          case "plan":
            if (!rule) return done("no-change", none, `plan: ${none}; nothing to do\n`);
            return done("success", `plan: apply rule '${rule.name}'`, `plan: apply rule '${rule.name}' (${rule.file})\n${planSteps(rule).map((s) => `- ${s}\n`).join("")}`);
          case "plan-review":
          case "code-review":
            return done("success", "the symbolic patcher approves its own deterministic rules", "APPROVE\n");
          case "implement": {
            if (!rule) return done("no-change", none, `implement: ${none}\n`);
            const r = await applyRule(rule, inv);
            return done(r.outcome, r.reason, `implement: ${r.reason}\n`, r.output);
          }
        }
      } catch (err) {
        return { outcome: "failure", reason: `symbolic adapter error: ${(err as Error).message}`, output: "", exitCode: null, durationMs: Date.now() - started };
      }
    },
  };
}

interface Applied {
  outcome: "success" | "failure" | "no-change";
  reason: string;
  output: string;
}

async function applyRule(rule: Rule, inv: StageInvocation): Promise<Applied> {
  const wt = resolve(inv.worktree);
  const patchText = rule.patch ? readFileSync(rule.patch, "utf8") : undefined;
  const paths = [...new Set([...(patchText ? diffPaths(patchText) : []), ...rule.replace.map((e) => e.file)])];
  for (const p of paths) {
    if (!inside(wt, p)) return { outcome: "failure", reason: `rule '${rule.name}' touches '${p}', which is outside the worktree`, output: "" };
  }
  // Everything the rule may touch, as it was: a rule applies whole or not at all.
  const snapshot = new Map(paths.map((p) => [p, readOrNull(join(wt, p))]));
  let indexTouched = false;
  const restore = async () => {
    for (const [p, content] of snapshot) {
      const abs = join(wt, p);
      if (content === null) rmSync(abs, { force: true });
      else {
        mkdirSync(dirname(abs), { recursive: true });
        writeFileSync(abs, content);
      }
    }
    // A failed --3way leaves unmerged entries in the index; HEAD's are the worktree's before the rule.
    if (indexTouched) await git(wt, inv, ["reset", "-q", "--", ...paths]);
  };

  const log: string[] = [];
  const did: string[] = [];
  const already: string[] = [];
  if (rule.patch) {
    const name = basename(rule.patch);
    const reverse = await git(wt, inv, ["apply", "--reverse", "--check", rule.patch]);
    if (reverse.ok) already.push(`patch ${name}`);
    else {
      indexTouched = true;
      const threeWay = await git(wt, inv, ["apply", "--3way", rule.patch]);
      log.push(`$ git apply --3way ${name}\n${threeWay.output}`);
      if (threeWay.ok) did.push(`patch ${name}`);
      else {
        await restore();
        indexTouched = false;
        const plain = await git(wt, inv, ["apply", rule.patch]);
        log.push(`$ git apply ${name}\n${plain.output}`);
        if (!plain.ok) {
          const conflicts = [...threeWay.output.matchAll(/^U (.+)$/gm)].map((m) => m[1]);
          const merge = conflicts.length ? `; a 3-way merge conflicts in ${conflicts.join(", ")}` : "";
          return { outcome: "failure", reason: `rule '${rule.name}': patch ${name} does not apply: ${gitMessage(plain.output || threeWay.output)}${merge}`, output: log.join("\n") };
        }
        did.push(`patch ${name}`);
      }
    }
  }
  for (const e of rule.replace) {
    const abs = join(wt, e.file);
    const text = readOrNull(abs);
    if (text === null) {
      await restore();
      return { outcome: "failure", reason: `rule '${rule.name}': ${e.file} does not exist`, output: log.join("\n") };
    }
    const r = replaceIn(text, e);
    if (r.state === "missing") {
      await restore();
      return { outcome: "failure", reason: `rule '${rule.name}': ${String(e.find)} not found in ${e.file}, and its replacement is not there either`, output: log.join("\n") };
    }
    if (r.state === "already") already.push(`replace in ${e.file}`);
    else if (r.state === "applied") {
      writeFileSync(abs, r.text);
      did.push(`replace in ${e.file} (${r.count}×)`);
    }
  }
  if (!did.length) return { outcome: "no-change", reason: `rule '${rule.name}' is applied already (${already.join(", ")})`, output: log.join("\n") };
  return { outcome: "success", reason: `applied rule '${rule.name}': ${did.join(", ")}${already.length ? `; already in place: ${already.join(", ")}` : ""}`, output: log.join("\n") };
}

/**
 * One replacement. `already` when its result is in place: the literal replacement text is in the file (checked
 * first, so a replacement that contains its own `find` is not applied twice), or — where the replacement cannot
 * be told from the file (it uses `$` references, or deletes) — `find` no longer matches.
 */
export function replaceIn(text: string, e: ReplaceEdit): { state: "applied"; text: string; count: number } | { state: "already" | "missing" } {
  const regex = e.find instanceof RegExp;
  const verifiable = e.replace !== "" && !(regex && /\$[$&`'<\d]/.test(e.replace));
  if (verifiable && text.includes(regex ? e.replace.replaceAll("$$", "$") : e.replace)) return { state: "already" };
  const limit = e.count ?? Infinity;
  let count = 0;
  let out: string;
  if (typeof e.find === "string") {
    const find = e.find;
    out = "";
    let from = 0;
    for (let i = text.indexOf(find); i !== -1 && count < limit; i = text.indexOf(find, from)) {
      out += text.slice(from, i) + e.replace;
      from = i + find.length;
      count++;
    }
    out += text.slice(from);
  } else {
    const re = new RegExp(e.find.source, e.find.flags.includes("g") ? e.find.flags : `${e.find.flags}g`);
    out = text.replace(re, (...args: unknown[]) => {
      const m = args[0] as string;
      if (count >= limit) return m;
      count++;
      return expand(e.replace, args);
    });
  }
  if (!count) return { state: verifiable ? "missing" : "already" };
  return { state: "applied", text: out, count };
}

/** `String.prototype.replace`'s `$` substitutions for one match (from a replacer function's arguments). */
function expand(template: string, args: unknown[]): string {
  const hasGroups = typeof args[args.length - 1] === "object" && args[args.length - 1] !== null;
  const groups = (hasGroups ? args[args.length - 1] : undefined) as Record<string, string | undefined> | undefined;
  const tail = hasGroups ? 3 : 2;
  const match = args[0] as string;
  const caps = args.slice(1, args.length - tail) as Array<string | undefined>;
  const offset = args[args.length - tail] as number;
  const input = args[args.length - tail + 1] as string;
  return template.replace(/\$(\$|&|`|'|<([^>]*)>|(\d{1,2}))/g, (tok, what: string, name: string | undefined, num: string | undefined) => {
    if (what === "$") return "$";
    if (what === "&") return match;
    if (what === "`") return input.slice(0, offset);
    if (what === "'") return input.slice(offset + match.length);
    if (name !== undefined) return groups ? (groups[name] ?? "") : tok;
    const n = Number(num);
    if (n >= 1 && n <= caps.length) return caps[n - 1] ?? "";
    // "$12" with one group is "$1" then "2", as in the native algorithm.
    if (num!.length === 2 && Number(num![0]) >= 1 && Number(num![0]) <= caps.length) return (caps[Number(num![0]) - 1] ?? "") + num![1];
    return tok;
  });
}

/** Paths a unified diff touches (both sides of a rename), without the a/ b/ prefixes. */
export function diffPaths(diff: string): string[] {
  const out = new Set<string>();
  for (const line of diff.split("\n")) {
    const m = /^(?:---|\+\+\+) (.+)$/.exec(line);
    if (!m) continue;
    let p = m[1]!.split("\t")[0]!.trim();
    if (p === "/dev/null") continue;
    if (p.startsWith('"') && p.endsWith('"')) p = p.slice(1, -1);
    out.add(p.replace(/^[ab]\//, ""));
  }
  return [...out];
}

/** git in the worktree through @moss/git's hardened runner (the patcher runs inside Moss); a failure is an answer, not a throw. */
async function git(cwd: string, _inv: StageInvocation, args: string[]): Promise<{ ok: boolean; output: string }> {
  try {
    return { ok: true, output: (await runGit(cwd, args)).trim() };
  } catch (err) {
    return { ok: false, output: ((err as { output?: string }).output ?? (err as Error).message).replace(/\(git exited with code \d+\)$/, "").trim() };
  }
}

/** git's own words: its error lines, else its last line. */
function gitMessage(output: string): string {
  const errors = output.split("\n").filter((l) => l.startsWith("error:"));
  return (errors.length ? errors.join(" ") : output.split("\n").pop() ?? "").slice(0, 500);
}

function inside(root: string, p: string): boolean {
  if (isAbsolute(p)) return false;
  const rel = relative(root, resolve(root, p));
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel);
}

function readOrNull(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

function ruleFiles(rule: Rule): string[] {
  const fromPatch = rule.patch && existsSync(rule.patch) ? diffPaths(readFileSync(rule.patch, "utf8")) : [];
  return [...new Set([...fromPatch, ...rule.replace.map((e) => e.file)])];
}

function planSteps(rule: Rule): string[] {
  return [
    ...(rule.patch ? [`apply patch ${basename(rule.patch)} (${diffPaths(readFileSync(rule.patch, "utf8")).join(", ")})`] : []),
    ...rule.replace.map((e) => `replace ${String(typeof e.find === "string" ? JSON.stringify(e.find) : e.find)} in ${e.file}${e.count ? ` (at most ${e.count}×)` : ""}`),
  ];
}

/** Identifies the rule set the patcher runs with: a digest of the rules directory's files. */
function rulesDigest(dir: string): string | undefined {
  try {
    const h = createHash("sha256");
    for (const n of readdirSync(dir).sort()) {
      const p = join(dir, n);
      if (!statSync(p).isFile()) continue;
      h.update(n).update("\0").update(readFileSync(p)).update("\0");
    }
    return `rules-${h.digest("hex").slice(0, 12)}`;
  } catch {
    return undefined;
  }
}
