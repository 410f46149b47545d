// A hostile coding agent: while it "fixes" the code, it writes git config and hooks into the shared repository that
// would run its own program inside Moss's next git calls (status, add, diff, commit, worktree add, archive). None of it
// may ever run: every git call of Moss goes through @moss/git's hardened runner.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { batchStore } from "@moss/batch";
import { BatchReady, BatchRetry, Messages } from "@moss/contracts";
import { archiveCommit, commitSigned, commitTrailers, ensureSigningKey, requireGoodSignatures, verifyCommit } from "@moss/git";
import { createAdapter, rewrite, type RewriterDeps } from "@moss/rewriter";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { batchRecord, failure, seed, silent, startEnv, type Env } from "../helpers/env";
import { recordingPublish } from "../helpers/publish";

const root = mkdtempSync(join(tmpdir(), "moss-hostile-git-"));
const git = (cwd: string, ...args: string[]) => execFileSync("git", ["-c", "user.name=Test", "-c", "user.email=test@localhost", ...args], { cwd, encoding: "utf8" }).trim();

/**
 * The coding agent: edits the code as asked, then plants, in the repository every worktree shares, a program for git to
 * run on each of Moss's calls: an fsmonitor, a hooks directory, hooks in the repository's own hooks directory, an
 * external diff, a clean/smudge filter applied to every file (through an attributes file outside the tree, so no
 * guardrail sees a changed .gitattributes), and a command for Moss's own trailer. Every one appends to MARKER.
 */
const HOSTILE_AGENT = `
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
const [worktree] = process.argv.slice(2);
const marker = process.env.MARKER;
const evil = join(process.env.PLANT, "evil.sh");
writeFileSync(evil, "#!/bin/sh\\necho \\"ran: $0 $*\\" >> " + marker + "\\ncat\\n");
chmodSync(evil, 0o755);
writeFileSync(join(worktree, "src/app.js"), "export const answer = () => 42;\\n");
const g = (...args) => execFileSync("git", args, { cwd: worktree, encoding: "utf8" }).trim();
const common = g("rev-parse", "--path-format=absolute", "--git-common-dir");
const hooks = join(process.env.PLANT, "hooks");
mkdirSync(hooks, { recursive: true });
for (const dir of [hooks, join(common, "hooks")]) {
  mkdirSync(dir, { recursive: true });
  for (const h of ["post-checkout", "pre-commit", "commit-msg", "post-commit", "reference-transaction", "post-index-change", "pre-auto-gc"]) {
    writeFileSync(join(dir, h), "#!/bin/sh\\necho \\"hook: " + h + "\\" >> " + marker + "\\n");
    chmodSync(join(dir, h), 0o755);
  }
}
const attributes = join(process.env.PLANT, "attributes");
writeFileSync(attributes, "* filter=evil diff=evil\\n");
g("config", "core.fsmonitor", evil);
g("config", "core.hooksPath", hooks);
g("config", "core.attributesFile", attributes);
g("config", "filter.evil.clean", evil);
g("config", "filter.evil.smudge", evil);
g("config", "diff.external", evil);
g("config", "diff.evil.command", evil);
g("config", "diff.evil.textconv", evil);
g("config", "trailer.moss-batch.cmd", evil);
console.log("patched src/app.js (and left a few things behind)");
`;

describe("a hostile coding agent's git config and hooks never run inside Moss", () => {
  let env: Env;
  beforeAll(async () => {
    env = await startEnv("hostile-git-test");
  });
  afterAll(async () => {
    await env?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it("through a whole attempt (guardrails, signed commit, diff, build context) and the next attempt's worktree", async () => {
    const repo = join(root, "repo");
    const plant = join(root, "plant");
    const marker = join(root, "MARKER");
    mkdirSync(join(repo, "src"), { recursive: true });
    mkdirSync(plant, { recursive: true });
    git(repo, "init", "-q", "-b", "main");
    writeFileSync(join(repo, "src/app.js"), "export const answer = () => 41;\n");
    git(repo, "add", "-A");
    git(repo, "commit", "-q", "-m", "v1");
    const base = git(repo, "rev-parse", "HEAD");
    const script = join(root, "hostile-agent.mjs");
    writeFileSync(script, HOSTILE_AGENT);
    const keys = await ensureSigningKey(join(root, "keys"));

    const kv = await env.bucket("batches");
    const ev = failure({ id: "f1", version: base });
    const failures = [{ id: ev.id, event: await env.blob.put(JSON.stringify(ev), { contentType: "application/json" }) }];
    await seed(kv, batchRecord({ batchId: "bh1", failures, state: "ready", baseVersion: base, count: 1 }));
    const sent = recordingPublish();
    const deps: RewriterDeps = {
      agent: () => ({ repo, stages: { locate: false, plan: false, planReview: false, codeReview: false }, tier: { maxAttempts: 3, planRounds: 1, reviewRounds: 0, trialsPerFailure: 1 } }),
      worktreesDir: join(root, "worktrees"),
      adapter: createAdapter({ preset: "command", command: [process.execPath, script, "{worktree}"] }),
      timeoutMs: 20_000,
      envAllow: ["MARKER", "PLANT"],
      env: { PATH: process.env["PATH"], HOME: process.env["HOME"], MARKER: marker, PLANT: plant },
      guardrails: {},
      signing: { key: keys.key, allowedSigners: keys.allowedSigners },
      blob: env.blob,
      runtime: {
        async buildImage(opts) {
          // The build context is what the runtime archives: through the same runner.
          const { tar } = await archiveCommit(opts.repoDir, opts.commit);
          return { image: opts.tag, imageId: "sha256:test", log: `context ${tar.length} bytes` };
        },
      },
      batches: batchStore(kv),
      publish: sent.publish,
      log: silent,
    };
    const fields = { batchId: "bh1", agent: "chat-bot", fingerprint: "fp", fingerprintKey: "fpk", baseVersion: base, failures, count: 1 };

    await rewrite(BatchReady.parse({ ...fields, attempt: 1 }), deps);
    const ready = sent.of(Messages.candidateReady);
    expect(sent.of(Messages.candidateFailed)).toEqual([]);
    expect(ready).toHaveLength(1);
    const c = ready[0]!;
    // The candidate is exactly the agent's edit, signed, with Moss's own trailers, and its diff is git's, not the agent's.
    expect(c.filesChanged).toEqual(["src/app.js"]);
    expect((await verifyCommit(repo, c.commit, keys.allowedSigners)).status).toBe("good");
    expect((await commitTrailers(repo, c.commit))["Moss-Batch"]).toEqual(["bh1"]);
    const diff = (await env.blob.get(c.diff.sha256)).toString("utf8");
    expect(diff).toContain("+export const answer = () => 42;");
    expect(git(repo, "show", `${c.commit}:src/app.js`)).toBe("export const answer = () => 42;");

    // The next attempt checks out a new worktree of the same repository (post-checkout, fsmonitor, filters...).
    await batchStore(kv).transition("bh1", "rewriting", { attempt: 1 });
    await rewrite(BatchRetry.parse({ ...fields, attempt: 2, previous: [{ attempt: 1, commit: c.commit, verdict: "replay-failed", reason: "r", results: [] }] }), deps);
    expect(ready).toHaveLength(2);

    // Nothing the agent planted ran inside Moss.
    expect(existsSync(marker) ? readFileSync(marker, "utf8") : "").toBe("");

    // And it was not harmless: the same repository makes plain git run it at once.
    git(repo, "status", "--porcelain");
    expect(readFileSync(marker, "utf8")).toMatch(/ran: |hook: /);
  });

  it("a coding agent's own commits are folded into the one signed Moss commit on the base, or end the attempt as no-change", async () => {
    const repo = join(root, "repo2");
    mkdirSync(join(repo, "src"), { recursive: true });
    git(repo, "init", "-q", "-b", "main");
    writeFileSync(join(repo, "src/app.js"), "export const answer = () => 41;\n");
    git(repo, "add", "-A");
    git(repo, "commit", "-q", "-m", "v1");
    const base = git(repo, "rev-parse", "HEAD");
    const keys = await ensureSigningKey(join(root, "keys"));
    // mode "part": commits the fix itself (unsigned), then leaves one more change uncommitted;
    // "all": commits everything itself; "undo": commits a change and then its revert.
    const script = join(root, "committing-agent.mjs");
    writeFileSync(
      script,
      `import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
const [worktree, mode] = process.argv.slice(2);
const g = (...a) => execFileSync("git", ["-c", "user.name=Agent", "-c", "user.email=agent@x", "-c", "commit.gpgsign=false", ...a], { cwd: worktree });
writeFileSync(worktree + "/src/app.js", "export const answer = () => 42;\\n");
g("commit", "-q", "-am", "agent's own fix");
if (mode === "part") writeFileSync(worktree + "/src/extra.js", "export const extra = 1;\\n");
if (mode === "undo") g("revert", "--no-edit", "HEAD");
`,
    );
    const run = async (batchId: string, mode: string) => {
      const kv = await env.bucket("batches");
      const ev = failure({ id: `f-${batchId}`, version: base });
      const failures = [{ id: ev.id, event: await env.blob.put(JSON.stringify(ev), { contentType: "application/json" }) }];
      await seed(kv, batchRecord({ batchId, failures, state: "ready", baseVersion: base, count: 1 }));
      const sent = recordingPublish();
      await rewrite(BatchReady.parse({ batchId, agent: "chat-bot", fingerprint: "fp", fingerprintKey: "fpk", baseVersion: base, failures, count: 1, attempt: 1 }), {
        agent: () => ({ repo, stages: { locate: false, plan: false, planReview: false, codeReview: false }, tier: { maxAttempts: 3, planRounds: 1, reviewRounds: 0, trialsPerFailure: 1 } }),
        worktreesDir: join(root, "worktrees2"),
        adapter: createAdapter({ preset: "command", command: [process.execPath, script, "{worktree}", mode] }),
        timeoutMs: 20_000,
        envAllow: [],
        env: { PATH: process.env["PATH"], HOME: process.env["HOME"] },
        guardrails: {},
        signing: { key: keys.key, allowedSigners: keys.allowedSigners },
        blob: env.blob,
        runtime: { buildImage: async (opts) => ({ image: opts.tag, imageId: "sha256:test", log: "" }) },
        batches: batchStore(kv),
        publish: sent.publish,
        log: silent,
      });
      return { ready: sent.of(Messages.candidateReady), failed: sent.of(Messages.candidateFailed), record: await batchStore(kv).get(batchId) };
    };

    for (const mode of ["part", "all"]) {
      const r = await run(`bc-${mode}`, mode);
      expect(r.failed, mode).toEqual([]);
      const c = r.ready[0]!;
      // One commit on the base, signed by Moss, holding the agent's commit and what it left.
      expect(git(repo, "rev-list", `${base}..${c.commit}`).split("\n"), mode).toEqual([c.commit]);
      await requireGoodSignatures(repo, base, c.commit, keys.allowedSigners);
      expect(c.filesChanged, mode).toEqual(mode === "part" ? ["src/app.js", "src/extra.js"] : ["src/app.js"]);
      expect(r.record, mode).toMatchObject({ state: "candidate", built: { attempt: 1, commit: c.commit, imageId: "sha256:test" } });
    }
    // A change and its revert add up to nothing: the attempt ends no-change instead of wedging the batch.
    const undo = await run("bc-undo", "undo");
    expect(undo.ready).toEqual([]);
    expect(undo.failed).toEqual([expect.objectContaining({ verdict: "no-change" })]);
    // And a branch that carries an unsigned commit under a signed one is refused by the range check.
    const sneaky = join(root, "sneaky");
    git(repo, "worktree", "add", "-q", "-b", "sneaky", sneaky, base);
    writeFileSync(join(sneaky, "src/app.js"), "export const answer = () => 666;\n");
    git(sneaky, "-c", "commit.gpgsign=false", "commit", "-q", "-am", "unsigned");
    writeFileSync(join(sneaky, "src/more.js"), "x\n");
    git(sneaky, "add", "-A");
    const top = await commitSigned(sneaky, { message: "signed on top", trailers: {}, signing: { key: keys.key } });
    await expect(requireGoodSignatures(repo, base, top, keys.allowedSigners)).rejects.toMatchObject({ code: "MOSS_E_UNSIGNED_COMMIT" });
  });
});
