import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createAdapter, type Stage } from "@moss/rewriter";
import { replaceIn } from "@moss/rewriter";
import { EVIDENCE, fakeEnv, git, invocation, makeRepo, status, tempRoot, USER_TS } from "./helpers";

const root = tempRoot("adapters-symbolic");
afterAll(() => rmSync(root, { recursive: true, force: true }));
const env = fakeEnv(root);

const FIXED_TS = USER_TS.replace("user.name", 'user?.name ?? "stranger"');
const ID_EVIDENCE = { ...EVIDENCE, fingerprint: "fp-missing-id-0002", failures: [{ error: { type: "TypeError", message: "Cannot read properties of undefined (reading 'id')" } }] };

/** A unified diff made by git in a scratch copy: appends an `id` helper to src/user.ts. */
function idPatch(): string {
  const scratch = makeRepo(root, `patch-src-${Math.random().toString(36).slice(2)}`);
  writeFileSync(join(scratch, "src", "user.ts"), `${USER_TS}export const idOf = (u?: { id: string }) => u?.id ?? "none";\n`);
  return git(scratch, "diff");
}

let dirs = 0;
function rulesDir(rules: Record<string, unknown>, files: Record<string, string> = {}): string {
  const dir = join(root, `rules-${++dirs}`);
  mkdirSync(dir, { recursive: true });
  for (const [name, rule] of Object.entries(rules)) writeFileSync(join(dir, name), JSON.stringify(rule, null, 2));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

const nullGuard = {
  name: "null-guard",
  match: { fingerprint: "^fp-null-user", errorType: "TypeError", message: "/reading 'name'/i" },
  replace: [{ file: "src/user.ts", find: "user.name", replace: 'user?.name ?? "stranger"', count: 1 }],
};
const addId = { name: "add-id", match: { message: "reading 'id'" }, patch: "add-id.diff" };

describe("symbolic patcher", () => {
  const dir = rulesDir({ "10-null-guard.json": nullGuard, "20-add-id.json": addId }, { "add-id.diff": idPatch() });
  const adapter = createAdapter({ preset: "symbolic", rulesDir: dir });
  const run = (wt: string, stage: Stage, evidence: unknown = EVIDENCE) => {
    const inv = invocation(root, wt, stage, env, { evidence });
    return adapter.run(inv).then((r) => ({ r, out: readFileSync(inv.outputPath, "utf8") }));
  };

  it("applies the first matching rule's replacement, then reports it applied already", async () => {
    const wt = makeRepo(root, "replace");
    const { r, out } = await run(wt, "implement");
    expect(r.outcome, r.reason).toBe("success");
    expect(r.reason).toBe("applied rule 'null-guard': replace in src/user.ts (1×)");
    expect(readFileSync(join(wt, "src", "user.ts"), "utf8")).toBe(FIXED_TS);
    expect(out).toBe(`implement: ${r.reason}\n`);

    const again = await run(wt, "implement");
    expect(again.r.outcome).toBe("no-change");
    expect(again.r.reason).toContain("applied already");
    expect(readFileSync(join(wt, "src", "user.ts"), "utf8")).toBe(FIXED_TS);
  });

  it("applies a rule's .diff patch, then reports it applied already", async () => {
    const wt = makeRepo(root, "patch");
    const { r } = await run(wt, "implement", ID_EVIDENCE);
    expect(r.outcome, r.reason).toBe("success");
    expect(r.reason).toBe("applied rule 'add-id': patch add-id.diff");
    expect(readFileSync(join(wt, "src", "user.ts"), "utf8")).toContain("export const idOf");
    expect(status(wt)).toMatch(/M\s+src\/user\.ts/);

    const again = await run(wt, "implement", ID_EVIDENCE);
    expect(again.r.outcome, again.r.reason).toBe("no-change");
    expect(readFileSync(join(wt, "src", "user.ts"), "utf8").match(/export const idOf/g)).toHaveLength(1);
  });

  it("reports no-change, touching nothing, when no rule matches", async () => {
    const wt = makeRepo(root, "nomatch");
    const other = { ...EVIDENCE, fingerprint: "fp-other", failures: [{ error: { type: "RangeError", message: "too deep" } }] };
    const { r, out } = await run(wt, "implement", other);
    expect(r.outcome).toBe("no-change");
    expect(r.reason).toBe("no rule of 2 matches fingerprint 'fp-other'");
    expect(out).toBe("implement: no rule of 2 matches fingerprint 'fp-other'\n");
    expect(status(wt)).toBe("");
  });

  it("needs errorType and message to hold for the same failure", async () => {
    const wt = makeRepo(root, "split");
    const split = { ...EVIDENCE, failures: [{ error: { type: "TypeError", message: "other" } }, { error: { type: "Error", message: "Cannot read (reading 'name')" } }] };
    expect((await run(wt, "implement", split)).r.outcome).toBe("no-change");
  });

  it("fails with git's message when the patch conflicts, and leaves the worktree as it was", async () => {
    const wt = makeRepo(root, "conflict");
    writeFileSync(join(wt, "src", "user.ts"), USER_TS.replace("}\n", "}\nexport const other = 1;\n"));
    git(wt, "commit", "-qam", "diverge");
    const { r } = await run(wt, "implement", ID_EVIDENCE);
    expect(r.outcome).toBe("failure");
    expect(r.reason).toMatch(/^rule 'add-id': patch add-id\.diff does not apply: error: /);
    expect(r.reason).toMatch(/patch does not apply|patch failed/);
    expect(r.reason).toContain("a 3-way merge conflicts in src/user.ts");
    expect(r.output).toContain("git apply --3way");
    expect(status(wt)).toBe("");
    expect(git(wt, "ls-files", "-u")).toBe("");
  });

  it("writes deterministic answers for the other stages", async () => {
    const wt = makeRepo(root, "stages");
    const locate = await run(wt, "locate");
    expect(locate.r.outcome).toBe("success");
    expect(locate.out).toBe("locate: rule 'null-guard' (10-null-guard.json) matches: fingerprint /^fp-null-user/, errorType /TypeError/, message /reading 'name'/i\nfiles: src/user.ts\n");
    const plan = await run(wt, "plan", ID_EVIDENCE);
    expect(plan.out).toBe("plan: apply rule 'add-id' (20-add-id.json)\n- apply patch add-id.diff (src/user.ts)\n");
    for (const stage of ["plan-review", "code-review"] as const) {
      const rev = await run(wt, stage);
      expect(rev.r.outcome).toBe("success");
      expect(rev.out).toBe("APPROVE\n");
    }
    const none = await run(wt, "locate", { fingerprint: "zzz", failures: [] });
    expect(none.r.outcome).toBe("no-change");
    expect(none.out).toBe("locate: no rule of 2 matches fingerprint 'zzz'\n");
    expect(status(wt)).toBe("");
  });

  it("names its rule set by a digest of the rules directory", async () => {
    const v = await adapter.version();
    expect(v).toMatch(/^rules-[0-9a-f]{12}$/);
    expect(await createAdapter({ preset: "symbolic", rulesDir: dir }).version()).toBe(v);
    const other = rulesDir({ "10-null-guard.json": { ...nullGuard, name: "renamed" } });
    expect(await createAdapter({ preset: "symbolic", rulesDir: other }).version()).not.toBe(v);
  });
});

describe("symbolic rules", () => {
  it("applies a rule whole or not at all: a replacement that does not fit puts the earlier ones back", async () => {
    const dir = rulesDir({
      "a.json": {
        name: "two-step",
        match: { errorType: "TypeError" },
        replace: [
          { file: "src/user.ts", find: "hello", replace: "hi" },
          { file: "src/user.ts", find: "no such text", replace: "anything" },
        ],
      },
    });
    const wt = makeRepo(root, "whole");
    const r = await createAdapter({ preset: "symbolic", rulesDir: dir }).run(invocation(root, wt, "implement", env));
    expect(r.outcome).toBe("failure");
    expect(r.reason).toBe("rule 'two-step': no such text not found in src/user.ts, and its replacement is not there either");
    expect(status(wt)).toBe("");
  });

  it("refuses a rule that reaches outside the worktree", async () => {
    const dir = rulesDir({ "a.json": { name: "escape", match: { errorType: "." }, replace: [{ file: "../outside.txt", find: "a", replace: "b" }] } });
    const r = await createAdapter({ preset: "symbolic", rulesDir: dir }).run(invocation(root, makeRepo(root, "escape"), "implement", env));
    expect(r.outcome).toBe("failure");
    expect(r.reason).toContain("outside the worktree");
  });

  it("reports every problem of unusable rule files at once", async () => {
    const dir = rulesDir({ "a.json": { match: {} }, "b.json": { name: "b", match: { fingerprint: "(" }, patch: "missing.diff" } }, { "c.json": "{ nope" });
    const r = await createAdapter({ preset: "symbolic", rulesDir: dir }).run(invocation(root, makeRepo(root, "invalid"), "implement", env));
    expect(r.outcome).toBe("failure");
    for (const p of ["a.json: 'name' must be a non-empty string", "a.json: 'match' needs at least one of", "a.json: needs a 'patch' or a non-empty 'replace'", "b.json: 'match.fingerprint' is not a valid regular expression", "b.json: 'patch' file missing.diff does not exist", "c.json: not JSON"]) {
      expect(r.reason).toContain(p);
    }
  });

  it("tries rules in file-name order", async () => {
    const first = { ...nullGuard, name: "first", replace: [{ file: "src/user.ts", find: "hello", replace: "hi" }] };
    const dir = rulesDir({ "20-b.json": nullGuard, "10-a.json": first });
    const wt = makeRepo(root, "order");
    const r = await createAdapter({ preset: "symbolic", rulesDir: dir }).run(invocation(root, wt, "implement", env));
    expect(r.reason).toContain("'first'");
    expect(readFileSync(join(wt, "src", "user.ts"), "utf8")).toContain("hi ${user.name}");
  });
});

describe("replaceIn", () => {
  it("replaces literal text, all occurrences or `count` of them", () => {
    expect(replaceIn("a a a", { file: "f", find: "a", replace: "b" })).toEqual({ state: "applied", text: "b b b", count: 3 });
    expect(replaceIn("a a a", { file: "f", find: "a", replace: "b", count: 2 })).toEqual({ state: "applied", text: "b b a", count: 2 });
  });

  it("replaces with a regular expression and its groups, within `count`", () => {
    const e = { file: "f", find: /(\w+)\.name/g, replace: "$1?.name", count: 1 };
    expect(replaceIn("u.name + v.name", e)).toEqual({ state: "applied", text: "u?.name + v.name", count: 1 });
    expect(replaceIn("x.name", { file: "f", find: /(?<obj>\w+)\.name/, replace: "$<obj>?.name ($&, $$)" })).toEqual({ state: "applied", text: "x?.name (x.name, $)", count: 1 });
  });

  it("does not apply a replacement that contains its own find twice", () => {
    const e = { file: "f", find: "check()", replace: "guard(); check()" };
    const once = replaceIn("run(); check();", e);
    expect(once).toEqual({ state: "applied", text: "run(); guard(); check();", count: 1 });
    expect(replaceIn("run(); guard(); check();", e)).toEqual({ state: "already" });
  });

  it("tells a replacement already in place from a file that no longer fits", () => {
    expect(replaceIn("nothing here", { file: "f", find: "x", replace: "y" })).toEqual({ state: "missing" });
    expect(replaceIn("u?.name", { file: "f", find: /(\w+)\.name/, replace: "$1?.name" })).toEqual({ state: "already" });
  });
});
