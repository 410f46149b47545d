/**
 * The staged rewriter end to end: rewrite() with real git worktrees, real SSH signing (a key made by
 * ensureSigningKey), real guardrails, a real NATS KV and blob store, and scripted fake coding agents
 * (test/rewriter/fake-agent.mjs) run through the `command` preset with `{stage}` in their argv.
 * The image build is faked except in the last describe, which builds with the real Docker engine.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { batchStore, candidateStore } from "@moss/batch";
import { kvGet, type KV } from "@moss/bus";
import { knownAgent, parseConfig, type Stages, type Tier } from "@moss/config";
import { BatchReady, BatchRecord, BatchRetry, CandidateFailed, CandidateReady, Messages, RejectedCandidate, type BlobRef, type FailureEvent, type FailureRef, type StageRecord } from "@moss/contracts";
import { commitTrailers, ensureSigningKey, verifyCommit, type SigningKeyFiles } from "@moss/git";
import { createRuntime } from "@moss/runtime";
import Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAdapter, rewrite, type BuildPort, type Evidence, type RewriterDeps } from "@moss/rewriter";
import { batchRecord, failure, seed, silent, startEnv, type Env } from "../helpers/env";
import { recordingPublish } from "../helpers/publish";

const FAKE_AGENT = fileURLToPath(new URL("./fake-agent.mjs", import.meta.url));
const FINGERPRINT = "fp1|TypeError|/app/src/chat.ts#handleChat|/v1/chat";
const ORIGINAL = "export const answer = () => 41;\n";
const FIXED = "export const answer = () => 42;\n";

/** One step of a fake stage run; see fake-agent.mjs. */
interface Step {
  write?: Record<string, string>;
  answer?: string;
  stdout?: string;
  exit?: number;
  hang?: boolean;
  failIfExists?: string;
  gitCommit?: string;
}
type Script = Partial<Record<StageRecord["stage"], Step[]>>;
/** What the fake logged about one of its runs. */
interface Call {
  stage: StageRecord["stage"];
  n: number;
  cwd: string;
  worktree: string;
  /** `git status --porcelain` when the stage started. */
  status: string;
  head: string;
  /** src/app.js when the stage started. */
  app: string | null;
  envStage: string;
}

const ALL_OFF: Stages = { locate: false, plan: false, planReview: false, codeReview: false };
const ALL_ON: Stages = { locate: true, plan: true, planReview: true, codeReview: true };
const ONE_ROUND: Tier = { maxAttempts: 3, planRounds: 1, reviewRounds: 0, trialsPerFailure: 1 };

const git = (cwd: string, ...args: string[]) => execFileSync("git", ["-c", "user.name=Test", "-c", "user.email=test@localhost", "-c", "commit.gpgsign=false", ...args], { cwd, encoding: "utf8" }).trim();

/** An agent repository with one commit: the failing version every attempt starts from. */
function makeRepo(repo: string, files: Record<string, string> = {}): string {
  mkdirSync(join(repo, "src"), { recursive: true });
  git(repo, "init", "-q", "-b", "main");
  writeFileSync(join(repo, "src/app.js"), ORIGINAL);
  writeFileSync(join(repo, "README.md"), "# chat-bot\n");
  for (const [p, c] of Object.entries(files)) writeFileSync(join(repo, p), c);
  git(repo, "add", "-A");
  git(repo, "commit", "-q", "-m", "v1");
  return git(repo, "rev-parse", "HEAD");
}

const root = mkdtempSync(join(tmpdir(), "moss-staged-test-"));
let env: Env;
let keys: SigningKeyFiles;

beforeAll(async () => {
  env = await startEnv("staged-test");
  keys = await ensureSigningKey(join(root, "keys"));
});
afterAll(async () => {
  await env?.stop();
  rmSync(root, { recursive: true, force: true });
});

let seq = 0;
async function harness(o: {
  script: Script;
  stages?: Stages;
  tier?: Partial<Tier>;
  timeoutMs?: number;
  agent?: string;
  files?: Record<string, string>;
  runtime?: BuildPort;
  candidates?: KV;
  fingerprintKey?: string;
}) {
  const batchId = `s${++seq}`;
  const agent = o.agent ?? "chat-bot";
  const dir = join(root, batchId);
  const repo = join(dir, "repo");
  const fake = join(dir, "fake");
  mkdirSync(fake, { recursive: true });
  writeFileSync(join(fake, "script.json"), JSON.stringify(o.script));
  const base = makeRepo(repo, o.files);

  const batchesKv = await env.bucket("batches");
  const batches = batchStore(batchesKv);
  const events: FailureEvent[] = [
    failure({ id: "f1", agent, version: base, logs: ["calling llm", "got empty choices"] }),
    failure({ id: "f2", agent, version: base, request: { method: "POST", path: "/v1/chat", body: '{"q":"bye"}' } }),
  ];
  const failures: FailureRef[] = [];
  for (const ev of events) failures.push({ id: ev.id, event: await env.blob.put(JSON.stringify(ev), { contentType: "application/json" }) });
  await seed(batchesKv, batchRecord({ batchId, agent, failures, state: "ready", baseVersion: base, count: 2, ...(o.fingerprintKey ? { fingerprintKey: o.fingerprintKey } : {}) }));

  // Parsed as the bus would: what was published must be a valid message.
  const sent = recordingPublish();
  const ready: CandidateReady[] = sent.of(Messages.candidateReady);
  const failed: CandidateFailed[] = sent.of(Messages.candidateFailed);
  const builds: Array<Parameters<BuildPort["buildImage"]>[0]> = [];
  const deps: RewriterDeps = {
    agent: (name) => ({ repo: knownAgent(parseConfig({ agents: { [agent]: { repo } } }), name).entry.repo, stages: o.stages ?? ALL_OFF, tier: { ...ONE_ROUND, ...o.tier } }),
    worktreesDir: join(dir, "worktrees"),
    adapter: createAdapter({ preset: "command", command: [process.execPath, FAKE_AGENT, "{stage}", "{worktree}", "{evidence}", "{prompt}", "{output}"] }),
    timeoutMs: o.timeoutMs ?? 20_000,
    envAllow: ["FAKE_DIR"],
    env: { PATH: process.env["PATH"], HOME: process.env["HOME"], FAKE_DIR: fake },
    guardrails: {},
    signing: { key: keys.key, allowedSigners: keys.allowedSigners },
    blob: env.blob,
    runtime: o.runtime ?? {
      async buildImage(opts) {
        builds.push(opts);
        return { image: opts.tag, imageId: "sha256:test", log: `built ${opts.commit}` };
      },
    },
    batches,
    ...(o.candidates ? { candidates: candidateStore(o.candidates) } : {}),
    publish: sent.publish,
    log: silent,
  };
  const msg = BatchReady.parse({ batchId, agent, fingerprint: FINGERPRINT, fingerprintKey: o.fingerprintKey ?? "fpk0", baseVersion: base, failures, count: 2, attempt: 1 });
  const calls = (): Call[] =>
    existsSync(join(fake, "calls.jsonl"))
      ? readFileSync(join(fake, "calls.jsonl"), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as Call)
      : [];
  return {
    batchId,
    agent,
    repo,
    base,
    deps,
    msg,
    events,
    ready,
    failed,
    builds,
    batches,
    calls,
    /** The fake's runs as `<stage>#<n>`, in order. */
    runs: () => calls().map((c) => `${c.stage}#${c.n}`),
    /** What the n-th run of a stage was handed. */
    received: (stage: StageRecord["stage"], n = 1) => ({
      evidence: JSON.parse(readFileSync(join(fake, `${stage}-${n}.evidence.json`), "utf8")) as Evidence,
      prompt: readFileSync(join(fake, `${stage}-${n}.prompt.md`), "utf8"),
    }),
    record: async () => (await kvGet(batchesKv, batchId, BatchRecord))!.value,
    branch: (attempt = 1) => `moss/${batchId}/${attempt}`,
    worktree: (attempt = 1) => join(dir, "worktrees", `${batchId}-${attempt}`),
  };
}
type Harness = Awaited<ReturnType<typeof harness>>;

const text = async (ref: BlobRef | undefined) => (await env.blob.get(ref!.sha256)).toString("utf8");
const verdicts = (stages: StageRecord[]) => stages.map((s) => `${s.stage}#${s.round}=${s.verdict}`);
const treeFiles = (h: Harness, commit: string) => git(h.repo, "ls-tree", "-r", "--name-only", commit).split("\n").filter(Boolean);

/** No candidate: nothing published as ready, nothing built, and the attempt's branch still points at the base. */
function noCandidate(h: Harness): void {
  expect(h.ready).toEqual([]);
  expect(h.builds).toEqual([]);
  expect(git(h.repo, "rev-parse", h.branch())).toBe(h.base);
  expect(git(h.repo, "rev-list", "--count", `${h.base}..${h.branch()}`)).toBe("0");
  expect(existsSync(h.worktree())).toBe(false);
}

describe.concurrent("staged rewrite (real git, real SSH signing, fake coding agents)", () => {
  it("a good patch through every stage: candidate.ready, an SSH-signed commit with every Moss trailer, every stage and its verdict recorded", async () => {
    const h = await harness({
      stages: ALL_ON,
      tier: { planRounds: 1, reviewRounds: 1 },
      script: {
        locate: [{ answer: "Root cause: answer() in src/app.js returns 41." }],
        plan: [{ answer: "Plan: return 42 from answer() in src/app.js; touch nothing else." }],
        "plan-review": [{ answer: "APPROVE\nthe plan fixes the root cause" }],
        implement: [{ write: { "src/app.js": FIXED }, stdout: "patched src/app.js" }],
        "code-review": [{ answer: "LGTM, matches the plan" }],
      },
    });
    await rewrite(h.msg, h.deps);

    expect(h.failed).toEqual([]);
    expect(h.ready).toHaveLength(1);
    const c = h.ready[0]!;
    expect(c).toMatchObject({ batchId: h.batchId, attempt: 1, branch: h.branch(), filesChanged: ["src/app.js"], codingAgent: "command", signed: true, trialsPerFailure: 1 });
    expect(h.runs()).toEqual(["locate#1", "plan#1", "plan-review#1", "implement#1", "code-review#1"]);

    // The candidate lists every stage with its verdict; the reviews' verdicts replace the tool's outcome.
    const expected = ["locate#1=success", "plan#1=success", "plan-review#1=approve", "implement#1=success", "code-review#1=approve"];
    expect(verdicts(c.stages)).toEqual(expected);
    expect(c.stages.find((s) => s.stage === "plan-review")!.reason).toBe("APPROVE");
    expect(c.stages.find((s) => s.stage === "code-review")!.reason).toBe("LGTM, matches the plan");
    expect(await text(c.stages[0]!.output)).toBe("Root cause: answer() in src/app.js returns 41.");
    expect(await text(c.stages[3]!.log)).toContain("patched src/app.js");

    // Signed with the Moss key: git itself says G against the allowed signers file, and so does @moss/git.
    expect(git(h.repo, "-c", `gpg.ssh.allowedSignersFile=${keys.allowedSigners}`, "log", "-1", "--format=%G?", c.commit)).toBe("G");
    expect(await verifyCommit(h.repo, c.commit, keys.allowedSigners)).toMatchObject({ status: "good", fingerprint: keys.fingerprint, signer: "moss@localhost" });
    expect(git(h.repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>", c.commit)).toBe("Moss <moss@localhost>|Moss <moss@localhost>");

    // The trailers, one value each (see the BUG below for the two extra keys git finds).
    expect(await commitTrailers(h.repo, c.commit)).toMatchObject({
      "Moss-Batch": [h.batchId],
      "Moss-Attempt": ["1"],
      "Moss-Failures": ["f1,f2"],
      "Moss-Coding-Agent": ["command"],
      "Moss-Stage-Verdicts": [expected.join(" ")],
    });
    expect(git(h.repo, "log", "-1", "--format=%B", c.commit)).toContain("the stages locate → plan → plan-review → implement → code-review");

    // The change itself, on the failing version.
    expect(git(h.repo, "rev-parse", h.branch())).toBe(c.commit);
    expect(git(h.repo, "rev-parse", `${c.commit}^`)).toBe(h.base);
    expect(git(h.repo, "show", `${c.commit}:src/app.js`)).toBe(FIXED.trim());
    expect(await text(c.diff)).toContain("+export const answer = () => 42;");
    expect(h.builds).toEqual([{ repoDir: h.repo, commit: c.commit, tag: c.image, labels: { "moss.agent": h.agent, "moss.batch": h.batchId } }]);
    expect(await text(c.buildLog)).toBe(`built ${c.commit}`);
    expect(await h.record()).toMatchObject({ state: "candidate", attempt: 1 });
    expect(existsSync(h.worktree())).toBe(false);

    // Each stage got what came before it.
    expect(h.received("plan").prompt).toContain("Root cause: answer() in src/app.js returns 41.");
    expect(h.received("plan-review").prompt).toContain("Plan: return 42 from answer()");
    expect(h.received("implement").prompt).toContain("Implement this approved plan, and nothing beyond it:\n\nPlan: return 42 from answer()");
    expect(h.received("code-review").prompt).toContain("+export const answer = () => 42;");
    expect(h.calls().every((call) => call.cwd === h.worktree() && call.envStage === call.stage)).toBe(true);
  });

  it.each([".ci/run", "moss.config.json", "evals/x.json"])("a patch touching the forbidden path %s: candidate.failed guardrail naming it, and no commit", async (path) => {
    const h = await harness({ script: { implement: [{ write: { "src/app.js": FIXED, [path]: "{}\n" } }] } });
    await rewrite(h.msg, h.deps);

    expect(h.failed).toHaveLength(1);
    const f = h.failed[0]!;
    expect(f.verdict).toBe("guardrail");
    expect(f.reason).toContain(`${path}: forbidden path`);
    expect(f.reason).not.toContain("src/app.js");
    expect(f.commit).toBeUndefined();
    expect(verdicts(f.stages)).toEqual(["implement#1=success"]);
    noCandidate(h);
  });

  it("a coding agent that exits 0 without changing anything: no-change", async () => {
    const h = await harness({ script: { implement: [{ answer: "I looked, and found nothing to change." }] } });
    await rewrite(h.msg, h.deps);
    expect(h.failed).toEqual([expect.objectContaining({ verdict: "no-change", reason: "the coding agent finished but changed no file" })]);
    expect(verdicts(h.failed[0]!.stages)).toEqual(["implement#1=success"]);
    noCandidate(h);
  });

  it("a hanging coding agent is killed at its timeout: agent-timeout, quickly", async () => {
    const h = await harness({ timeoutMs: 1_500, script: { implement: [{ hang: true, write: { "src/app.js": FIXED } }] } });
    const t0 = Date.now();
    await rewrite(h.msg, h.deps);
    expect(Date.now() - t0).toBeLessThan(8_000);
    expect(h.failed).toHaveLength(1);
    expect(h.failed[0]).toMatchObject({ verdict: "agent-timeout" });
    expect(h.failed[0]!.reason).toBe(`implement: '${process.execPath}' killed after its 1500 ms timeout (with its whole process group)`);
    expect(verdicts(h.failed[0]!.stages)).toEqual(["implement#1=timeout"]);
    expect(await text(h.failed[0]!.agentOutput)).toContain("fake-agent: implement hangs");
    // Its edit before hanging is not committed.
    noCandidate(h);
  });

  it("a second attempt is handed the first attempt's replay failures and diff, in the evidence and in every stage's prompt", async () => {
    const h = await harness({ stages: { ...ALL_OFF, locate: true }, script: { implement: [{ write: { "src/app.js": FIXED } }] } });
    const prevDiffText = "diff --git a/src/app.js b/src/app.js\n-export const answer = () => 41;\n+export const answer = () => 40;\n";
    const retry = BatchRetry.parse({
      ...h.msg,
      attempt: 2,
      previous: [
        {
          attempt: 1,
          commit: "abcdef1234567",
          diff: await env.blob.put(prevDiffText, { contentType: "text/x-diff" }),
          verdict: "replay-failed",
          reason: "1 of 2 failure(s) still fail in replay: answered 500 (expected 200-499): boom",
          results: [
            { failureId: "f1", passed: true, reason: "answered 200: ok", status: 200, durationMs: 3 },
            { failureId: "f2", passed: false, reason: "answered 500 (expected 200-499): boom", status: 500, durationMs: 4 },
          ],
        },
      ],
    });
    await rewrite(retry, h.deps);

    for (const stage of ["locate", "implement"] as const) {
      const got = h.received(stage);
      expect(got.evidence.attempt).toBe(2);
      expect(got.evidence.previous).toHaveLength(1);
      expect(got.evidence.previous[0]!.results).toEqual(retry.previous[0]!.results);
      expect(got.evidence.previous[0]).toMatchObject({ attempt: 1, verdict: "replay-failed", reason: retry.previous[0]!.reason, diffText: prevDiffText });
      expect(got.prompt).toContain("## Attempt 1 did not work (replay-failed): 1 of 2 failure(s) still fail in replay");
      expect(got.prompt).toContain("- failure f2: answered 500 (expected 200-499): boom");
      expect(got.prompt).not.toContain("- failure f1:");
    }
    expect(h.failed).toEqual([]);
    expect(h.ready).toHaveLength(1);
    expect(h.ready[0]).toMatchObject({ attempt: 2, branch: h.branch(2), previous: retry.previous });
    expect((await commitTrailers(h.repo, h.ready[0]!.commit))["Moss-Attempt"]).toEqual(["2"]);
    expect(await h.record()).toMatchObject({ state: "candidate", attempt: 2 });
  });

  it("plan review rejects round 1 and approves round 2: the second plan is implemented", async () => {
    const h = await harness({
      stages: { ...ALL_OFF, plan: true, planReview: true },
      tier: { planRounds: 2 },
      script: {
        plan: [{ answer: "Plan A: wrap answer() in try/catch and return 0." }, { answer: "Plan B: return 42 from answer() in src/app.js." }],
        "plan-review": [{ answer: "REJECT: plan A hides the error instead of fixing it" }, { answer: "APPROVE" }],
        implement: [{ write: { "src/app.js": FIXED } }],
      },
    });
    await rewrite(h.msg, h.deps);

    expect(h.failed).toEqual([]);
    expect(h.ready).toHaveLength(1);
    const c = h.ready[0]!;
    const expected = ["plan#1=success", "plan-review#1=reject", "plan#2=success", "plan-review#2=approve", "implement#1=success"];
    expect(verdicts(c.stages)).toEqual(expected);
    expect(c.stages[1]!.reason).toBe("plan A hides the error instead of fixing it");
    expect(h.runs()).toEqual(["plan#1", "plan-review#1", "plan#2", "plan-review#2", "implement#1"]);
    expect(h.received("plan", 2).prompt).toContain("Your previous plan was rejected by review: plan A hides the error instead of fixing it");
    expect(h.received("plan-review", 2).prompt).toContain("Plan B: return 42");
    expect(h.received("implement").prompt).toContain("Plan B: return 42");
    expect(h.received("implement").prompt).not.toContain("Plan A");
    expect((await commitTrailers(h.repo, c.commit))["Moss-Stage-Verdicts"]).toEqual([expected.join(" ")]);
  });

  it("plan review never approving within planRounds: plan-rejected, and nothing is implemented", async () => {
    const h = await harness({
      stages: { ...ALL_OFF, plan: true, planReview: true },
      tier: { planRounds: 2 },
      script: { "plan-review": [{ answer: "REJECT: still not convincing" }], implement: [{ write: { "src/app.js": FIXED } }] },
    });
    await rewrite(h.msg, h.deps);

    expect(h.failed).toHaveLength(1);
    expect(h.failed[0]).toMatchObject({ verdict: "plan-rejected", reason: "plan rejected 2 time(s); last: still not convincing" });
    expect(verdicts(h.failed[0]!.stages)).toEqual(["plan#1=success", "plan-review#1=reject", "plan#2=success", "plan-review#2=reject"]);
    expect(h.runs()).toEqual(["plan#1", "plan-review#1", "plan#2", "plan-review#2"]);
    noCandidate(h);
  });

  it("a locate stage that edits files: its edits are discarded (not seen by implement, not committed), and its record says so", async () => {
    const h = await harness({
      stages: { ...ALL_OFF, locate: true },
      script: {
        locate: [{ write: { "src/app.js": "// locate was here\n", "notes/diagnosis.md": "scratch\n" }, answer: "the bug is in src/app.js" }],
        implement: [{ write: { "src/fix.js": "export const fixed = true;\n" } }],
      },
    });
    await rewrite(h.msg, h.deps);

    expect(h.failed).toEqual([]);
    const c = h.ready[0]!;
    expect(c.filesChanged).toEqual(["src/fix.js"]);
    expect(git(h.repo, "show", `${c.commit}:src/app.js`)).toBe(ORIGINAL.trim());
    expect(treeFiles(h, c.commit)).not.toContain("notes/diagnosis.md");
    const implement = h.calls().find((call) => call.stage === "implement")!;
    expect(implement).toMatchObject({ status: "", app: ORIGINAL, head: h.base });
    expect(verdicts(c.stages)).toEqual(["locate#1=success", "implement#1=success"]);
    expect(c.stages[0]!.reason).toBe("exited 0 (its edits were discarded: locate may not change the code)");
    expect(c.stages[1]!.reason).toBe("exited 0");
  });

  // BUG (services/rewriter/src/pipeline.ts, restore()): a read-only stage's edits are only discarded when
  // `git status --porcelain` is dirty. A locate (or plan, or plan-review) stage that COMMITS its edit leaves a clean
  // status, so nothing is reset: implement starts from the locate commit, the guardrails (which compare with the
  // base) count the edit as the implementation's, and commitSigned puts the signed Moss commit on top of it, so the
  // diagnosis stage's change ships. Fix: in restore(), also compare `git rev-parse HEAD` with ctx.base and call
  // resetTo(ctx.worktree, ctx.base) when HEAD moved (and do the same after code review, which only restores the
  // index and worktree, not HEAD).
  it("a locate stage that commits its edit has it discarded too", async () => {
    const h = await harness({
      stages: { ...ALL_OFF, locate: true },
      script: {
        locate: [{ write: { "src/app.js": "// locate was here\n" }, gitCommit: "locate: sneak an edit in", answer: "diagnosis" }],
        implement: [{ write: { "src/fix.js": "export const fixed = true;\n" } }],
      },
    });
    await rewrite(h.msg, h.deps);
    const c = h.ready[0]!;
    expect(h.calls().find((call) => call.stage === "implement")).toMatchObject({ head: h.base, app: ORIGINAL });
    expect(c.filesChanged).toEqual(["src/fix.js"]);
    expect(git(h.repo, "rev-parse", `${c.commit}^`)).toBe(h.base);
    expect(git(h.repo, "show", `${c.commit}:src/app.js`)).toBe(ORIGINAL.trim());
    expect(c.stages[0]!.reason).toContain("its edits were discarded");
  });

  // BUG (services/rewriter/src/handlers/rewrite.ts, lastLog()): a candidate's
  // `agentOutput` is documented as "the captured output of the last stage that ran (the implementation, on success)",
  // but with code review on, the last stage of a successful attempt is the code review, so the candidate carries the
  // reviewer's output (here: none at all) instead of the implementation's. Fix: on success take the log of the last
  // `implement` record, e.g. `[...stages].reverse().find((s) => s.stage === "implement")?.log ?? stages.at(-1)?.log`.
  it("with code review on, candidate.agentOutput is the implementation's output", async () => {
    const h = await harness({
      stages: { ...ALL_OFF, codeReview: true },
      tier: { reviewRounds: 1 },
      script: { implement: [{ write: { "src/app.js": FIXED }, stdout: "patched src/app.js" }], "code-review": [{ answer: "APPROVE" }] },
    });
    await rewrite(h.msg, h.deps);
    expect(h.ready).toHaveLength(1);
    expect(h.ready[0]!.agentOutput).toBeDefined();
    expect(await text(h.ready[0]!.agentOutput)).toContain("patched src/app.js");
  });

  // BUG (services/rewriter/src/handlers/rewrite.ts, commitMessage()): the body paragraph
  // "Fingerprint: <fp>\nStages: <a → b> (N ms)." consists of `Token: value` lines only, so git takes it for a trailer
  // block and appends the Moss-* trailers to it: `git interpret-trailers --parse`, `%(trailers)` and commitTrailers()
  // report "Fingerprint" and "Stages" as trailers of every Moss commit, next to the Moss-* ones an auditor reads.
  // Fix: word the body so that it is not trailer-shaped (e.g. "Fixes fingerprint `<fp>`.\nRan locate → plan (N ms).")
  // or carry the fingerprint as a Moss-Fingerprint trailer.
  it("a Moss commit's trailers are exactly the Moss-* ones", async () => {
    const h = await harness({ script: { implement: [{ write: { "src/app.js": FIXED } }] } });
    await rewrite(h.msg, h.deps);
    const c = h.ready[0]!;
    expect(Object.keys(await commitTrailers(h.repo, c.commit)).sort()).toEqual(["Moss-Attempt", "Moss-Batch", "Moss-Coding-Agent", "Moss-Failures", "Moss-Stage-Verdicts"]);
  });

  it("code review rejects the first implementation: the worktree is reset before the second, and the approved second one is committed", async () => {
    const h = await harness({
      stages: { ...ALL_OFF, codeReview: true },
      tier: { reviewRounds: 2 },
      script: {
        implement: [
          { write: { "src/app.js": "export const answer = () => 40;\n", "impl-1.marker": "first implementation\n" }, answer: "first try" },
          { failIfExists: "impl-1.marker", write: { "src/app.js": FIXED }, answer: "second try" },
        ],
        "code-review": [
          { answer: "REJECT: 40 is still wrong, and impl-1.marker does not belong in the change" },
          // A reviewer that scribbles in the worktree: not part of what it approved.
          { answer: "APPROVE", write: { "review-notes.txt": "looked at it\n", "src/app.js": "export const answer = () => 43;\n" } },
        ],
      },
    });
    await rewrite(h.msg, h.deps);

    expect(h.failed).toEqual([]);
    expect(h.ready).toHaveLength(1);
    const c = h.ready[0]!;
    expect(verdicts(c.stages)).toEqual(["implement#1=success", "code-review#1=reject", "implement#2=success", "code-review#2=approve"]);
    expect(c.stages[1]!.reason).toBe("40 is still wrong, and impl-1.marker does not belong in the change");
    // The second implementation started from the base: no marker, the original file, a clean status.
    const second = h.calls().filter((call) => call.stage === "implement")[1]!;
    expect(second).toMatchObject({ status: "", app: ORIGINAL, head: h.base });
    expect(h.received("implement", 2).prompt).toContain("A code review rejected the previous implementation (the worktree was reset): 40 is still wrong");
    expect(h.received("code-review", 1).prompt).toContain("+export const answer = () => 40;");
    expect(h.received("code-review", 2).prompt).toContain("+export const answer = () => 42;");
    // What was approved is what is committed.
    expect(c.filesChanged).toEqual(["src/app.js"]);
    expect(treeFiles(h, c.commit).sort()).toEqual(["README.md", "src/app.js"]);
    expect(git(h.repo, "show", `${c.commit}:src/app.js`)).toBe(FIXED.trim());
    expect(git(h.repo, "-c", `gpg.ssh.allowedSignersFile=${keys.allowedSigners}`, "log", "-1", "--format=%G?", c.commit)).toBe("G");
  });

  it("a code review that never approves within reviewRounds: review-rejected; one without a verdict line counts as a rejection", async () => {
    const h = await harness({
      stages: { ...ALL_OFF, codeReview: true },
      tier: { reviewRounds: 1 },
      script: { implement: [{ write: { "src/app.js": FIXED } }], "code-review": [{ answer: "Mostly fine, I guess.\nAPPROVE" }] },
    });
    await rewrite(h.msg, h.deps);
    expect(h.failed).toHaveLength(1);
    expect(h.failed[0]!.verdict).toBe("review-rejected");
    expect(h.failed[0]!.reason).toContain("code review rejected 1 implementation(s); last: the review gave no verdict");
    expect(verdicts(h.failed[0]!.stages)).toEqual(["implement#1=success", "code-review#1=reject"]);
    noCandidate(h);
  });

  it("a stage whose tool fails ends the attempt as agent-failed, naming the stage", async () => {
    const h = await harness({
      stages: { ...ALL_OFF, plan: true },
      script: { plan: [{ stdout: "fatal: model quota exceeded", exit: 2 }] },
    });
    await rewrite(h.msg, h.deps);
    expect(h.failed).toEqual([expect.objectContaining({ verdict: "agent-failed", reason: "plan: command exited 2: fatal: model quota exceeded" })]);
    expect(h.runs()).toEqual(["plan#1"]);
    noCandidate(h);
  });

  it("earlier rejected fixes of the same fingerprint (moss_candidates) are in the evidence and the prompt", async () => {
    const candidates = await env.bucket("candidates");
    const h = await harness({ candidates, fingerprintKey: "fpk1", script: { implement: [{ write: { "src/app.js": FIXED } }] } });
    const oldDiff = "diff --git a/src/app.js b/src/app.js\n+export const answer = () => 0;\n";
    const older = RejectedCandidate.parse({
      agent: h.agent,
      fingerprint: FINGERPRINT,
      batchId: "old-batch",
      attempt: 1,
      commit: "1234567890abcdef1234567890abcdef12345678",
      branch: "moss/old-batch/1",
      diff: await env.blob.put(oldDiff, { contentType: "text/x-diff" }),
      verdict: "replay-failed",
      reason: "2 of 2 failure(s) still fail in replay: answered 500",
      at: "2025-01-01T00:00:00.000Z",
    });
    await candidates.put(`${h.agent}.fpk1.old-batch.1`, JSON.stringify(older));
    // Its own batch, and another fingerprint, are not "before".
    await candidates.put(`${h.agent}.fpk1.${h.batchId}.1`, JSON.stringify({ ...older, batchId: h.batchId }));
    await candidates.put(`${h.agent}.other.x.1`, JSON.stringify({ ...older, batchId: "x" }));
    await rewrite(h.msg, h.deps);

    const got = h.received("implement");
    expect(got.evidence.rejectedBefore).toEqual([{ ...older, diffText: oldDiff }]);
    expect(got.prompt).toContain("## Fixes of this root cause tried before and not promoted");
    expect(got.prompt).toContain("- batch old-batch attempt 1 (commit 1234567890ab, branch moss/old-batch/1): replay-failed: 2 of 2 failure(s) still fail in replay: answered 500");
    expect(h.ready).toHaveLength(1);
  });
});

describe("staged rewrite with a real Docker build", () => {
  const BUILD_SCRIPT = fileURLToPath(new URL("../../deploy/build-base-image.sh", import.meta.url));
  const DOCKERFILE = 'FROM moss/node-base\nWORKDIR /app\nCOPY src /app/src\nCMD ["/usr/bin/node", "/app/src/app.js"]\n';
  const runtime = createRuntime();
  const docker = new Docker({ socketPath: "/var/run/docker.sock" });
  const built: string[] = [];

  beforeAll(() => {
    // Idempotent: a no-op when the content-tagged base image exists.
    execFileSync("bash", [BUILD_SCRIPT], { stdio: "pipe" });
  }, 120_000);
  afterAll(async () => {
    for (const tag of built) await docker.getImage(tag).remove({ force: true }).catch(() => undefined);
  });

  it("the candidate image exists, labelled with its commit, and its build log is stored", async () => {
    const h = await harness({
      agent: "staged-docker",
      files: { Dockerfile: DOCKERFILE },
      stages: { ...ALL_OFF, codeReview: true },
      tier: { reviewRounds: 1 },
      runtime,
      script: { implement: [{ write: { "src/app.js": FIXED } }], "code-review": [{ answer: "APPROVE" }] },
    });
    await rewrite(h.msg, h.deps);

    expect(h.failed).toEqual([]);
    expect(h.ready).toHaveLength(1);
    const c = h.ready[0]!;
    built.push(c.image);
    expect(c.image).toBe(`moss/staged-docker:${c.commit.slice(0, 12)}`);
    expect(await runtime.imageExists(c.image)).toBe(true);
    const labels = (await docker.getImage(c.image).inspect()).Config.Labels ?? {};
    expect(labels).toMatchObject({ "moss.commit": c.commit, "moss.agent": "staged-docker", "moss.batch": h.batchId });
    expect(c.buildLog).toBeDefined();
    const log = await text(c.buildLog);
    expect(log).toMatch(/COPY src \/app\/src/);
    expect(c.signed).toBe(true);
  });

  it("a change that breaks the image build: candidate.failed build-failed, with the commit and the build log", async () => {
    const h = await harness({
      agent: "staged-docker",
      files: { Dockerfile: DOCKERFILE },
      runtime,
      script: { implement: [{ write: { "src/app.js": FIXED, Dockerfile: DOCKERFILE.replace("COPY src /app/src", "COPY no-such-dir /app/src") } }] },
    });
    await rewrite(h.msg, h.deps);

    expect(h.ready).toEqual([]);
    expect(h.failed).toHaveLength(1);
    const f = h.failed[0]!;
    built.push(`moss/staged-docker:${f.commit?.slice(0, 12)}`);
    expect(f).toMatchObject({ verdict: "build-failed", commit: git(h.repo, "rev-parse", h.branch()) });
    expect(f.reason).toContain("building image moss/staged-docker:");
    expect(await text(f.buildLog)).toContain("no-such-dir");
    expect(await text(f.diff)).toContain("+export const answer = () => 42;");
  });
});
