import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { batchStore } from "@moss/batch";
import { kvGet } from "@moss/bus";
import { knownAgent, parseConfig } from "@moss/config";
import type { Stages, Tier } from "@moss/config";
import { BatchReady, BatchRecord, BatchRetry, CandidateFailed, CandidateReady, Messages, type BlobRef, type FailureEvent, type FailureRef } from "@moss/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAdapter, rewrite, type BuildPort, type Evidence, type RewriterDeps } from "@moss/rewriter";
import { batchRecord, failure, seed, silent, startEnv, type Env } from "../helpers/env";
import { recordingPublish } from "../helpers/publish";

const root = mkdtempSync(join(tmpdir(), "moss-rewriter-test-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// The process runner behind every adapter (timeouts, process groups, stdin, encoding) is tested in test/adapters.

const git = (cwd: string, ...args: string[]) => execFileSync("git", ["-c", "user.name=Test", "-c", "user.email=test@localhost", ...args], { cwd, encoding: "utf8" }).trim();

/** A stand-in coding agent: logs each run, captures what it was given, then acts per FAKE_MODE. */
const FAKE_AGENT = `
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
const [worktree, evidence, prompt] = process.argv.slice(2);
const mode = process.env.FAKE_MODE;
appendFileSync(process.env.FAKE_RUNS, mode + "\\n");
writeFileSync(process.env.FAKE_CAPTURE, JSON.stringify({
  argv: process.argv.slice(2), cwd: process.cwd(), env: process.env,
  evidence: JSON.parse(readFileSync(evidence, "utf8")), prompt: readFileSync(prompt, "utf8"),
}));
if (mode === "edit") {
  writeFileSync(join(worktree, "src/app.js"), "export const answer = () => 42;\\n");
  console.log("patched src/app.js");
} else if (mode === "noop") {
  console.log("looked around, changed nothing");
} else if (mode === "fail") {
  console.log("thinking...");
  console.error("error: model quota exceeded");
  process.exit(2);
} else if (mode === "slow-edit") {
  await new Promise((r) => setTimeout(r, 1500));
  writeFileSync(join(worktree, "src/app.js"), "export const answer = () => 42;\\n");
} else if (mode === "hang") {
  setInterval(() => {}, 1000);
}
`;

/** A small agent repository: v1 (the failing version, `base`), then v2 on main (`mainHead`). */
function makeRepo(repo: string): { base: string; mainHead: string } {
  mkdirSync(join(repo, "src"), { recursive: true });
  git(repo, "init", "-q", "-b", "main");
  writeFileSync(join(repo, "src/app.js"), "export const answer = () => 41;\n");
  writeFileSync(join(repo, "README.md"), "# chat-bot\n");
  git(repo, "add", "-A");
  git(repo, "commit", "-q", "-m", "v1");
  const base = git(repo, "rev-parse", "HEAD");
  // main moved on after the failing version was deployed; rewrites must start from the failing version.
  writeFileSync(join(repo, "src/later.js"), "export const later = true;\n");
  git(repo, "add", "-A");
  git(repo, "commit", "-q", "-m", "v2");
  return { base, mainHead: git(repo, "rev-parse", "HEAD") };
}

/** Stages all off and one implementation round: the plain "run the coding agent once" flow these tests were written for. */
const IMPLEMENT_ONLY: { stages: Stages; tier: Tier } = {
  stages: { locate: false, plan: false, planReview: false, codeReview: false },
  tier: { maxAttempts: 3, planRounds: 1, reviewRounds: 0, trialsPerFailure: 1 },
};

// Each test has its own repository, so the tests (mostly waiting on git and node) run concurrently.
describe.concurrent("rewrite end to end (real git, blob store and KV; fake build)", () => {
  let env: Env;
  const script = join(root, "fake-agent.mjs");

  beforeAll(async () => {
    env = await startEnv("rewriter-test");
    writeFileSync(script, FAKE_AGENT);
  });
  afterAll(async () => {
    await env?.stop();
  });

  let n = 0;
  async function harness(o: { mode: string; build?: (opts: Parameters<BuildPort["buildImage"]>[0]) => Promise<{ image: string; log: string }>; timeoutMs?: number } ) {
    const batchesKv = await env.bucket("batches");
    const batches = batchStore(batchesKv);
    const batchId = `b${++n}`;
    const repo = join(root, `repo-${batchId}`);
    const worktrees = join(root, `worktrees-${batchId}`);
    const { base, mainHead } = makeRepo(repo);
    const events: FailureEvent[] = [
      failure({ id: "f1", version: base, env: { LOCALE: "fr" }, logs: ["calling llm", "got empty choices"] }),
      failure({ id: "f2", version: base, request: { method: "POST", path: "/v1/chat", body: '{"q":"bye"}' } }),
    ];
    const failures: FailureRef[] = [];
    for (const ev of events) failures.push({ id: ev.id, event: await env.blob.put(JSON.stringify(ev), { contentType: "application/json" }) });
    await seed(batchesKv, batchRecord({ batchId, failures, state: "ready", baseVersion: base, count: 7 }));
    const dir = join(root, `run-${batchId}`);
    mkdirSync(dir, { recursive: true });
    const files = { runs: join(dir, "runs.log"), capture: join(dir, "capture.json") };
    writeFileSync(files.runs, "");
    const builds: Array<Parameters<BuildPort["buildImage"]>[0]> = [];
    // Parsed as the bus would: what was published must be a valid message.
    const sent = recordingPublish();
    const ready: CandidateReady[] = sent.of(Messages.candidateReady);
    const failed: CandidateFailed[] = sent.of(Messages.candidateFailed);
    const deps: RewriterDeps = {
      agent: (name) => ({ repo: knownAgent(parseConfig({ agents: { "chat-bot": { repo } } }), name).entry.repo, ...IMPLEMENT_ONLY }),
      worktreesDir: worktrees,
      adapter: createAdapter({ preset: "command", command: [process.execPath, script, "{worktree}", "{evidence}", "{prompt}"] }),
      timeoutMs: o.timeoutMs ?? 20_000,
      envAllow: ["FAKE_MODE", "FAKE_RUNS", "FAKE_CAPTURE"],
      env: { PATH: process.env["PATH"], HOME: process.env["HOME"], FAKE_MODE: o.mode, FAKE_RUNS: files.runs, FAKE_CAPTURE: files.capture, MOSS_S3_SECRET_KEY: "do-not-leak" },
      guardrails: {},
      signing: {},
      blob: env.blob,
      runtime: {
        async buildImage(opts) {
          builds.push(opts);
          return { imageId: "sha256:test", ...(o.build ? await o.build(opts) : { image: opts.tag, log: "built" }) };
        },
      },
      batches,
      publish: sent.publish,
      log: silent,
    };
    const msg = BatchReady.parse({ batchId, agent: "chat-bot", fingerprint: "fp1|TypeError|/app/src/chat.ts#handleChat|/v1/chat", fingerprintKey: "fpk1", baseVersion: base, failures, count: 7, attempt: 1 });
    return {
      batchId,
      repo,
      worktrees,
      base,
      mainHead,
      deps,
      msg,
      events,
      ready,
      failed,
      builds,
      runs: () => readFileSync(files.runs, "utf8").split("\n").filter(Boolean).length,
      capture: () => JSON.parse(readFileSync(files.capture, "utf8")) as { argv: string[]; cwd: string; env: Record<string, string>; evidence: Evidence; prompt: string },
      batches,
      record: async () => (await kvGet(batchesKv, batchId, BatchRecord))!.value,
    };
  }

  const text = async (ref: BlobRef | undefined) => (await env.blob.get(ref!.sha256)).toString("utf8");
  const worktreeGone = (h: { repo: string; worktrees: string; batchId: string }, attempt: number) => {
    expect(existsSync(join(h.worktrees, `${h.batchId}-${attempt}`))).toBe(false);
    expect(git(h.repo, "worktree", "list", "--porcelain").split("\n").filter((l) => l.startsWith("worktree "))).toEqual([`worktree ${h.repo}`]);
  };

  it("commits the coding agent's change on moss/<batch>/<attempt> with trailers and publishes the candidate", async () => {
    const h = await harness({ mode: "edit" });
    await rewrite(h.msg, h.deps);

    expect(h.failed).toEqual([]);
    expect(h.ready).toHaveLength(1);
    const c = h.ready[0]!;
    const branch = `moss/${h.batchId}/1`;
    expect(c).toMatchObject({ batchId: h.batchId, attempt: 1, branch, filesChanged: ["src/app.js"], failures: h.msg.failures, count: 7, previous: [] });
    expect(c.commit).toMatch(/^[a-f0-9]{40}$/);
    expect(c.image).toBe(`moss/chat-bot:${c.commit.slice(0, 12)}`);

    // Git: the branch holds the commit, built on the failing version (not on main), with the trailers.
    expect(git(h.repo, "rev-parse", branch)).toBe(c.commit);
    expect(git(h.repo, "rev-parse", `${c.commit}^`)).toBe(h.base);
    const trailers = git(h.repo, "log", "-1", "--format=%(trailers)", branch);
    expect(trailers).toContain(`Moss-Batch: ${h.batchId}`);
    expect(trailers).toContain("Moss-Attempt: 1");
    expect(trailers).toContain("Moss-Failures: f1,f2");
    expect(trailers).toContain("Moss-Coding-Agent: command");
    expect(trailers).toContain("Moss-Stage-Verdicts: implement#1=success");
    // No signing key configured: the commit is unsigned, and the candidate says so.
    expect(git(h.repo, "log", "-1", "--format=%G?", c.commit)).toBe("N");
    expect(c).toMatchObject({ codingAgent: "command", signed: false, trialsPerFailure: 1 });
    expect(c.stages).toEqual([expect.objectContaining({ stage: "implement", round: 1, verdict: "success", reason: "exited 0" })]);
    expect(git(h.repo, "show", `${c.commit}:src/app.js`)).toBe("export const answer = () => 42;");
    // The operator's checkout is untouched.
    expect(git(h.repo, "rev-parse", "main")).toBe(h.mainHead);
    expect(readFileSync(join(h.repo, "src/app.js"), "utf8")).toBe("export const answer = () => 41;\n");
    expect(git(h.repo, "status", "--porcelain")).toBe("");
    worktreeGone(h, 1);

    // Evidence: the diff, the agent's output, the build request.
    const diff = await text(c.diff);
    expect(diff).toContain("-export const answer = () => 41;");
    expect(diff).toContain("+export const answer = () => 42;");
    expect(await text(c.agentOutput)).toContain("patched src/app.js");
    expect(h.builds).toEqual([{ repoDir: h.repo, commit: c.commit, tag: c.image, labels: { "moss.agent": "chat-bot", "moss.batch": h.batchId } }]);
    expect(await h.record()).toMatchObject({ state: "candidate", attempt: 1 });

    // What the coding agent was given.
    const cap = h.capture();
    expect(cap.cwd).toBe(cap.argv[0]);
    expect(cap.argv[0]).toBe(join(h.worktrees, `${h.batchId}-1`));
    expect(cap.evidence).toMatchObject({ batchId: h.batchId, agent: "chat-bot", attempt: 1, count: 7, baseVersion: h.base, fingerprint: h.msg.fingerprint, previous: [] });
    expect(cap.evidence.failures).toEqual(h.events);
    // The agent gets the implement stage's prompt: the attempt's prompt first, then what the stage is for.
    expect(cap.prompt.startsWith(cap.evidence.prompt)).toBe(true);
    expect(cap.prompt).toContain("## Stage: implement");
    expect(cap.prompt).toContain("7 production failure(s)");
    expect(cap.prompt).toContain(h.msg.fingerprint);
    expect(cap.prompt).toContain("POST /v1/chat failed with TypeError: Cannot read properties of undefined (reading 'content')");
    // Allow-listed env only, plus the Moss paths.
    expect(cap.env["MOSS_S3_SECRET_KEY"]).toBeUndefined();
    expect(cap.env).toMatchObject({ FAKE_MODE: "edit", MOSS_WORKTREE: cap.argv[0], MOSS_EVIDENCE: cap.argv[1], MOSS_PROMPT: cap.argv[2], MOSS_STAGE: "implement" });
    expect(Object.keys(cap.env).filter((k) => !["PATH", "HOME", "LANG", "FAKE_MODE", "FAKE_RUNS", "FAKE_CAPTURE"].includes(k) && !k.startsWith("MOSS_")).sort()).toEqual([]);
    expect(Object.keys(cap.env).filter((k) => k.startsWith("MOSS_")).sort()).toEqual(["MOSS_EVIDENCE", "MOSS_OUTPUT", "MOSS_PROMPT", "MOSS_STAGE", "MOSS_WORKTREE"]);
  });

  it("a coding agent that changes nothing yields candidate.failed no-change (and no build)", async () => {
    const h = await harness({ mode: "noop" });
    await rewrite(h.msg, h.deps);
    expect(h.ready).toEqual([]);
    expect(h.builds).toEqual([]);
    expect(h.failed).toHaveLength(1);
    expect(h.failed[0]).toMatchObject({ batchId: h.batchId, attempt: 1, verdict: "no-change", reason: "the coding agent finished but changed no file" });
    expect(await text(h.failed[0]!.agentOutput)).toContain("changed nothing");
    worktreeGone(h, 1);
  });

  it("a failing coding agent yields agent-failed with its last words", async () => {
    const h = await harness({ mode: "fail" });
    await rewrite(h.msg, h.deps);
    expect(h.ready).toEqual([]);
    expect(h.builds).toEqual([]);
    expect(h.failed).toEqual([expect.objectContaining({ verdict: "agent-failed", reason: "implement: command exited 2: error: model quota exceeded" })]);
    expect(await text(h.failed[0]!.agentOutput)).toContain("thinking...");
    worktreeGone(h, 1);
  });

  it("a batch rejected while its coding agent works is dropped: no commit, no build, no candidate, nothing dead-lettered", async () => {
    const h = await harness({ mode: "slow-edit" });
    const running = rewrite(h.msg, h.deps).catch((e: unknown) => e);
    for (let i = 0; i < 100 && (await h.record()).state !== "rewriting"; i++) await new Promise((r) => setTimeout(r, 50));
    await h.batches.transition(h.batchId, "rejected", { reason: "rejected by ana: wrong approach" });
    const err = await running;
    expect(err).toMatchObject({ code: "MOSS_E_BATCH_ENDED", moot: true, message: expect.stringContaining("ended (rejected: rejected by ana: wrong approach)") });
    expect([h.ready, h.failed, h.builds]).toEqual([[], [], []]);
    // Nothing was committed for it: the attempt's branch is where the attempt started.
    expect(git(h.repo, "rev-parse", `moss/${h.batchId}/1`)).toBe(h.base);
    expect((await h.record()).state).toBe("rejected");
    worktreeGone(h, 1);
  });

  it("a coding agent that hangs is killed at the timeout: agent-timeout", async () => {
    const h = await harness({ mode: "hang", timeoutMs: 500 });
    await rewrite(h.msg, h.deps);
    expect(h.failed).toEqual([expect.objectContaining({ verdict: "agent-timeout" })]);
    expect(h.failed[0]!.reason).toContain("killed after its 500 ms timeout");
    expect(h.ready).toEqual([]);
    worktreeGone(h, 1);
  });

  it("a build error yields build-failed with the commit, diff and build log", async () => {
    const buildLog = "Step 3/5 : RUN npm ci\nnpm ERR! missing lockfile\n";
    const h = await harness({
      mode: "edit",
      build: async () => {
        throw Object.assign(new Error("image build failed: RUN npm ci exited 1"), { log: buildLog, retryable: false });
      },
    });
    await rewrite(h.msg, h.deps);
    expect(h.ready).toEqual([]);
    expect(h.failed).toHaveLength(1);
    const f = h.failed[0]!;
    expect(f).toMatchObject({ verdict: "build-failed", reason: "image build failed: RUN npm ci exited 1", commit: git(h.repo, "rev-parse", `moss/${h.batchId}/1`) });
    expect(await text(f.buildLog)).toBe(buildLog);
    expect(await text(f.diff)).toContain("+export const answer = () => 42;");
    expect(await text(f.agentOutput)).toContain("patched src/app.js");
  });

  it("a retryable build error is thrown for the bus to retry; the redelivery reuses the commit without rerunning the agent", async () => {
    let down = true;
    const h = await harness({
      mode: "edit",
      build: async (opts) => {
        if (down) throw Object.assign(new Error("docker daemon unreachable"), { retryable: true });
        return { image: opts.tag, log: "" };
      },
    });
    await expect(rewrite(h.msg, h.deps)).rejects.toThrow("docker daemon unreachable");
    expect(h.failed).toEqual([]);
    expect(h.ready).toEqual([]);
    const commit = git(h.repo, "rev-parse", `moss/${h.batchId}/1`);
    expect(h.runs()).toBe(1);

    down = false;
    await rewrite(h.msg, h.deps); // redelivery
    expect(h.runs()).toBe(1);
    expect(h.ready).toHaveLength(1);
    expect(h.ready[0]).toMatchObject({ commit, filesChanged: ["src/app.js"], branch: `moss/${h.batchId}/1` });
    expect(await text(h.ready[0]!.diff)).toContain("+export const answer = () => 42;");
    expect(git(h.repo, "rev-parse", `moss/${h.batchId}/1`)).toBe(commit);
    expect(await h.record()).toMatchObject({ state: "candidate" });
  });

  it("a redelivery after a failed attempt publishes the same verdict again and does not run the agent again", async () => {
    const h = await harness({ mode: "fail" });
    await rewrite(h.msg, h.deps);
    expect((await h.record()).failedAttempt).toMatchObject({ attempt: 1 });
    await rewrite(h.msg, h.deps); // the ack was lost: the bus redelivers
    expect(h.runs()).toBe(1);
    expect(h.failed).toHaveLength(2);
    expect(h.failed[1]).toEqual(h.failed[0]);
    expect(await h.record()).toMatchObject({ state: "rewriting", attempt: 1 });
  });

  it("a build failure is journaled too: its redelivery neither reruns the agent nor rebuilds", async () => {
    const h = await harness({
      mode: "edit",
      build: async () => {
        throw Object.assign(new Error("image build failed: RUN npm ci exited 1"), { log: "npm ERR!", retryable: false });
      },
    });
    await rewrite(h.msg, h.deps);
    await rewrite(h.msg, h.deps);
    expect(h.runs()).toBe(1);
    expect(h.builds).toHaveLength(1);
    expect(h.failed.map((f) => f.verdict)).toEqual(["build-failed", "build-failed"]);
    expect(h.failed[1]).toEqual(h.failed[0]);
  });

  it("a redelivery after the candidate was published republishes the same commit and does not run the agent again", async () => {
    const h = await harness({ mode: "edit" });
    await rewrite(h.msg, h.deps);
    await rewrite(h.msg, h.deps);
    expect(h.runs()).toBe(1);
    expect(h.ready).toHaveLength(2);
    expect(h.ready[1]!.commit).toBe(h.ready[0]!.commit);
  });

  it("a redelivery after the replayer took the candidate leaves the batch where it is", async () => {
    const h = await harness({ mode: "edit" });
    await rewrite(h.msg, h.deps);
    await h.batches.transition(h.batchId, "replaying"); // the replayer picked the candidate up
    await rewrite(h.msg, h.deps); // the rewriter's own message comes back
    expect(h.runs()).toBe(1);
    expect(await h.record()).toMatchObject({ state: "replaying", attempt: 1 });
  });

  it("a redelivery while the batch is a candidate republishes without moving it back, so the replayer can take it meanwhile", async () => {
    let builds = 0;
    let batches: RewriterDeps["batches"] | undefined;
    let batchId = "";
    const h = await harness({
      mode: "edit",
      build: async (opts) => {
        // The replayer picks the candidate up while the redelivery is rebuilding it.
        if (++builds === 2) await batches!.transition(batchId, "replaying");
        return { image: opts.tag, log: "" };
      },
    });
    batches = h.batches;
    batchId = h.batchId;
    await rewrite(h.msg, h.deps);
    expect(await h.record()).toMatchObject({ state: "candidate", attempt: 1 });
    await rewrite(h.msg, h.deps); // crashed after `candidate`, before (or after) the publish
    expect(h.runs()).toBe(1);
    expect(h.ready.map((r) => r.commit)).toEqual([h.ready[0]!.commit, h.ready[0]!.commit]);
    expect(await h.record()).toMatchObject({ state: "replaying", attempt: 1 });
  });

  it("a late redelivery of an earlier attempt changes nothing once a later attempt started", async () => {
    const h = await harness({ mode: "edit" });
    await h.batches.transition(h.batchId, "rewriting", { attempt: 2 });
    await rewrite(h.msg, h.deps); // attempt 1's batch.ready, redelivered
    expect(h.runs()).toBe(0);
    expect(h.ready).toEqual([]);
    expect(h.failed).toEqual([]);
    expect(await h.record()).toMatchObject({ state: "rewriting", attempt: 2 });
  });

  it("a build error that does not say whether it is retryable is retried, not turned into build-failed", async () => {
    const h = await harness({
      mode: "edit",
      build: async () => {
        throw new Error("connect ECONNREFUSED /var/run/docker.sock");
      },
    });
    await expect(rewrite(h.msg, h.deps)).rejects.toThrow("ECONNREFUSED");
    expect(h.failed).toEqual([]);
    expect(h.ready).toEqual([]);
    expect(await h.record()).toMatchObject({ state: "rewriting", attempt: 1 });
  });

  it("attempt 2 gets the earlier attempts, with their diff text, in its evidence and prompt", async () => {
    const h = await harness({ mode: "edit" });
    const prevDiffText = "diff --git a/src/app.js b/src/app.js\n-export const answer = () => 41;\n+export const answer = () => 40;\n";
    const prevDiff = await env.blob.put(prevDiffText, { contentType: "text/x-diff" });
    const retry = BatchRetry.parse({
      ...h.msg,
      attempt: 2,
      previous: [
        {
          attempt: 1,
          commit: "abcdef1234567",
          diff: prevDiff,
          verdict: "replay-failed",
          reason: "1 of 2 failure(s) still fail in replay",
          results: [
            { failureId: "f1", passed: true, reason: "answered 200: ok", durationMs: 3 },
            { failureId: "f2", passed: false, reason: "answered 500 (expected 200-499): boom", durationMs: 4 },
          ],
        },
      ],
    });
    await rewrite(retry, h.deps);

    const cap = h.capture();
    expect(cap.evidence.attempt).toBe(2);
    expect(cap.evidence.previous).toHaveLength(1);
    expect(cap.evidence.previous[0]).toMatchObject({ attempt: 1, verdict: "replay-failed", diffText: prevDiffText });
    expect(cap.prompt).toContain("Attempt 1 did not work (replay-failed): 1 of 2 failure(s) still fail in replay");
    expect(cap.prompt).toContain("failure f2: answered 500");
    expect(cap.prompt).not.toContain("failure f1:");
    expect(h.ready[0]).toMatchObject({ attempt: 2, branch: `moss/${h.batchId}/2`, previous: retry.previous });
    expect(git(h.repo, "log", "-1", "--format=%(trailers)", `moss/${h.batchId}/2`)).toContain("Moss-Attempt: 2");
    expect(await h.record()).toMatchObject({ state: "candidate", attempt: 2 });
    worktreeGone(h, 2);
  });

  it("refuses, as terminal, an agent that is not configured or a missing coding agent command", async () => {
    const h = await harness({ mode: "edit" });
    await expect(rewrite({ ...h.msg, agent: "ghost" }, h.deps)).rejects.toMatchObject({ code: "MOSS_E_UNKNOWN_AGENT", retryable: false });
    await expect(rewrite(h.msg, { ...h.deps, adapter: undefined })).rejects.toMatchObject({ code: "MOSS_E_NO_CODING_AGENT", retryable: false });
    expect(h.runs()).toBe(0);
  });
});
