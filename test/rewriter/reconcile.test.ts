// moss reconcile, the rewriter's part, on a real repository and a real KV: the live Moss line against the human main
// branch — a clean case prepares a branch off main with the merge and its merge request; a conflicting one lists the
// files and the commits on each side and changes nothing; a human commit on main touching a file Moss changed since
// the reviewed baseline is flagged.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { reviewStore } from "@moss/batch";
import { ReviewedBaseline, type ReviewDone } from "@moss/contracts";
import { onReview, type ReviewDeps } from "@moss/rewriter";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silent, startEnv, type Env } from "../helpers/env";

/** A router file: its rules on line 2, its last line far from them. */
const ROUTER = (rules: string, last: string) => `// the router\nrules = [${rules}]\n//\n//\n//\n//\n${last}\n`;

describe("moss reconcile (real git, real KV)", () => {
  let env: Env;
  const repo = mkdtempSync(join(tmpdir(), "moss-reconcile-"));
  const git = (...a: string[]) => execFileSync("git", ["-C", repo, "-c", "user.name=Human", "-c", "user.email=h@example.com", ...a], { encoding: "utf8" }).trim();
  const commit = (files: Record<string, string>, msg: string) => {
    for (const [p, c] of Object.entries(files)) writeFileSync(join(repo, p), c);
    git("add", "-A");
    git("commit", "-qm", msg);
    return git("rev-parse", "HEAD");
  };
  let deps: ReviewDeps;
  const done: ReviewDone[] = [];
  let live = "";
  let n = 0;
  const ask = async () => {
    const at = new Date().toISOString();
    const msg = { id: `rc${++n}`, kind: "reconcile" as const, agent: "shop", version: "live", by: "ana", at };
    await deps.reviews.create({ ...msg, state: "requested", updatedAt: at });
    await onReview(msg, deps);
    return (await deps.reviews.get(msg.id))!;
  };

  beforeAll(async () => {
    env = await startEnv("reconcile");
    git("init", "-q", "-b", "main");
    const v1 = commit({ "router.ts": ROUTER("calc, currency", "end"), "tools.ts": "a\nb\nc\nd\ne\n" }, "v1");
    // The Moss line: a signed-off-looking commit with Moss's trailers on its own branch, live.
    git("checkout", "-q", "-b", "moss/b1/1");
    live = commit({ "router.ts": ROUTER("currency, calc", "end") }, "moss: currency before calculator\n\nMoss-Batch: b1\nMoss-Attempt: 1");
    git("checkout", "-q", "main");
    const reviewed = await env.bucket("reviewed");
    await reviewed.put("shop", JSON.stringify(ReviewedBaseline.parse({ agent: "shop", commit: v1, by: "ana", at: new Date().toISOString(), tag: "moss/reviewed/shop" })));
    deps = {
      agent: () => ({ repo, areas: {}, mainBranch: "main" }),
      runtime: { imageExists: async () => true, buildImage: async () => ({ image: "x", logs: "" }) } as never,
      deployments: { get: async () => ({ agent: "shop", image: "i", version: live, container: "c", updatedAt: new Date().toISOString(), lastGood: [] }) },
      travels: {} as never,
      reviewed,
      reviews: reviewStore(await env.bucket("reviews")),
      batches: { get: async (id: string) => (id === "b1" ? ({ state: "promoted" } as never) : undefined) },
      publish: async (_def, m) => void done.push(m as ReviewDone),
      log: silent,
    };
  });
  afterAll(async () => {
    await env?.stop();
    rmSync(repo, { recursive: true, force: true });
  });

  it("clean: a branch off main that merges the live line in, with the merge request text; main itself unchanged; a human commit on a file Moss changed is flagged", async () => {
    // A human change to router.ts far from Moss's line: git merges the two.
    commit({ "router.ts": ROUTER("calc, currency", "export default rules") }, "docs: export the rules");
    const before = git("rev-parse", "main");
    const rec = await ask();
    expect(rec.state).toBe("done");
    const r = rec.reconcile!;
    expect(r).toMatchObject({ clean: true, branch: "moss/reconcile/shop", main: { branch: "main", commit: before }, live });
    expect(r.commits).toEqual([expect.objectContaining({ commit: live, batchId: "b1", attempt: 1, verdict: "promoted" })]);
    expect(r.flagged).toEqual([expect.objectContaining({ subject: "docs: export the rules", author: "Human <h@example.com>", files: ["router.ts"] })]);
    expect(git("rev-parse", "main")).toBe(before);
    expect(git("rev-parse", "moss/reconcile/shop")).toBe(r.branchCommit);
    expect(git("rev-parse", `${r.branchCommit}^1`)).toBe(before);
    expect(git("rev-parse", `${r.branchCommit}^2`)).toBe(live);
    expect(git("show", `${r.branchCommit}:router.ts`)).toBe(ROUTER("currency, calc", "export default rules").trim());
    expect(r.mergeRequest).toContain(`- ${live.slice(0, 12)} moss: currency before calculator (Moss: batch b1, attempt 1, promoted)`);
    expect(r.mergeRequest).toContain("explicit `moss deploy shop`");
    expect(done.at(-1)).toMatchObject({ kind: "reconcile", summary: expect.stringContaining("main takes 1 commit(s) cleanly") });
  });

  it("conflict: the files and the commits on each side listed, nothing changed", async () => {
    const conflicting = commit({ "router.ts": ROUTER("calc, currency, echo", "export default rules") }, "feat: echo rule");
    const branchBefore = git("rev-parse", "moss/reconcile/shop");
    const rec = await ask();
    const r = rec.reconcile!;
    expect(r.clean).toBe(false);
    expect(r.conflicts).toEqual([{ path: "router.ts", live: [live], main: expect.arrayContaining([conflicting]) }]);
    expect(r.branch).toBeUndefined();
    expect(git("rev-parse", "main")).toBe(conflicting);
    expect(git("rev-parse", "moss/reconcile/shop")).toBe(branchBefore);
    expect(git("status", "--porcelain")).toBe("");
    expect(done.at(-1)!.summary).toContain("1 file(s) conflict between main and");
  });

  it("a main branch that does not exist is a clear error", async () => {
    deps = { ...deps, agent: () => ({ repo, areas: {}, mainBranch: "trunk" }) };
    const rec = await ask();
    expect(rec).toMatchObject({ state: "failed", error: expect.stringContaining("has no branch trunk: set agents.shop.review.mainBranch") });
  });
});
