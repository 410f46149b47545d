// The whole loop as a user runs it (`moss demo`): real nats-server with its generated auth, the service processes, real Docker.
import { execFileSync } from "node:child_process";
import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FIXED_ANSWER, operatorGet, renderDiff, requestBisect, requestReplay, requestReview, requestRollback, runDemo, type DemoResult } from "@moss/cli";
import { agentIdentity, failureSubject, MossNote, type BisectRecord, type ReviewRecord, type TimeTravelRecord } from "@moss/contracts";
import { jetstream } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runMoss, type MossRun } from "../helpers/moss";
import { connectAs } from "../helpers/nats";
import { startOtlpReceiver } from "../helpers/otlp";

describe("end to end: a failure travels curate → rewrite → replay → promote → audit", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "moss-e2e-fix-"));
  const serviceLines: string[] = [];
  const progress: string[] = [];
  let otlp: Awaited<ReturnType<typeof startOtlpReceiver>>;
  let res: DemoResult;
  let badSeqLogged = 0;
  let manual: { done: Awaited<ReturnType<typeof requestRollback>>; traffic: { requests: number; failed: string[]; byVersion: Record<string, number> } } | undefined;
  /** Time travel after the rollback: each replay's final record, and the stages it went through. */
  const travel: Record<string, { rec?: TimeTravelRecord; stages: string[]; error?: string }> = {};
  let cli: MossRun | undefined;
  let humanCommit = "";
  /** The morning after: v1 marked reviewed, then the live (fixed) version diffed against it. */
  const review: { marked?: ReviewRecord; diff?: ReviewRecord; text: string[]; tag?: string; error?: string } = { text: [] };
  /** Bisect of a line of 8 human commits, the fix brought in by the 5th: where the failure stops happening. */
  const bisect: { lines: string[]; rec?: BisectRecord; error?: string; line: string[] } = { lines: [], line: [] };
  /** The git note on the batch's Moss commit, as `git log --notes=moss` shows it at the end. */
  let note = "";

  beforeAll(async () => {
    otlp = await startOtlpReceiver();
    res = await runDemo({
      dataDir,
      agent: "e2efix",
      patch: "fix",
      otlpEndpoint: otlp.endpoint,
      env: { OTEL_BSP_SCHEDULE_DELAY: "100" },
      out: (l) => progress.push(l),
      serviceLog: (s, l) => serviceLines.push(`[${s}] ${l}`),
      // After the promotion, an operator rolls the fix back by hand, under steady chat: `moss rollback` through the
      // operator API, the promoter under the agent's lease, the route back on v1 at the gateway.
      afterPromotion: async ({ agent, config, configFile, batchId, steady, v1 }) => {
        try {
          review.marked = await requestReview(config, "mark-reviewed", agent, v1);
          review.diff = await requestReview(config, "diff", agent, "live");
          if (review.diff.diff) review.text = renderDiff(agent, review.diff.diff);
          review.tag = execFileSync("git", ["-C", config.agents[agent]!.repo, "rev-parse", `moss/reviewed/${agent}`], { encoding: "utf8" }).trim();
        } catch (err) {
          review.error = (err as Error).message;
        }
        const traffic = steady();
        await new Promise((r) => setTimeout(r, 500));
        const done = await requestRollback(config, agent, { reason: "e2e: by hand" });
        await new Promise((r) => setTimeout(r, 500));
        manual = { done, traffic: await traffic.stop() };

        // Time travel, with v1 live again: the batch's failures against its own fix, the first one against v1 (the CLI,
        // as an operator runs it), against a human commit no image exists for yet, and against a name that is nothing.
        const replay = async (name: string, what: Parameters<typeof requestReplay>[1]) => {
          const t = (travel[name] = { stages: [] as string[] } as (typeof travel)[string]);
          try {
            t.rec = await requestReplay(config, what, { timeoutMs: 180_000, progress: (r) => t.stages.push(r.state) });
          } catch (err) {
            t.error = (err as Error).message;
          }
        };
        const { failures } = (await operatorGet(config, `/v1/batches/${batchId}`)) as unknown as { failures: { id: string }[] };
        await replay("fix", { allFailuresOf: batchId, version: `moss/${batchId}/1` });
        cli = await runMoss(["replay", "--failure", failures[0]!.id.slice(0, 12), "--version", "live", "--config", configFile]);
        const repo = config.agents[agent]!.repo;
        appendFileSync(join(repo, "README.md"), "\nA note from a human.\n");
        execFileSync("git", ["-C", repo, "add", "-A"]);
        execFileSync("git", ["-C", repo, "-c", "user.name=Human", "-c", "user.email=h@example.com", "commit", "-qm", "docs: a human's note"]);
        humanCommit = execFileSync("git", ["-C", repo, "rev-parse", "HEAD"], { encoding: "utf8" }).trim();
        await replay("human", { failure: failures[0]!.id, version: humanCommit });
        await replay("nothing", { failure: failures[0]!.id, version: "no-such-branch" });

        const git = (...a: string[]) => execFileSync("git", ["-C", repo, "-c", "user.name=Human", "-c", "user.email=h@example.com", ...a], { encoding: "utf8" }).trim();
        for (let i = 1; i <= 8; i++) {
          if (i === 5) git("checkout", `moss/${batchId}/1`, "--", "src/router.ts");
          else appendFileSync(join(repo, "README.md"), `line ${i}\n`);
          git("add", "-A");
          git("commit", "-qm", i === 5 ? "routing: currency before calculator" : `docs: line ${i}`);
          bisect.line.push(git("rev-parse", "HEAD"));
        }
        try {
          bisect.rec = await requestBisect(config, { failure: failures[0]!.id.slice(0, 16), good: humanCommit, bad: "HEAD", fixed: true }, { timeoutMs: 240_000, progress: (l) => bisect.lines.push(l) });
        } catch (err) {
          bisect.error = (err as Error).message;
        }
        note = execFileSync("git", ["-C", config.agents[agent]!.repo, "log", "-1", "--notes=moss", "--format=%N", `moss/${batchId}/1`], { encoding: "utf8" });
      },
      beforeTraffic: async ({ agent, config }) => {
        // Bad input from a buggy agent, with its own credential: valid JSON, wrong shape.
        const { nc } = await connectAs(config, agentIdentity(agent));
        await jetstream(nc).publish(failureSubject(agent), JSON.stringify({ id: "malformed-1", agent, error: "boom" }), { msgID: "malformed-1" });
        await nc.close();
      },
    });
    badSeqLogged = serviceLines.filter((l) => l.includes("message dead-lettered") && l.includes("moss.failure.e2efix")).length;
    // Give the exporters' last batch a moment to arrive.
    await new Promise((r) => setTimeout(r, 1_500));
  }, 400_000);

  afterAll(async () => {
    await otlp?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("v1 fails the request, the fixed agent answers it correctly after promotion", () => {
    expect(res.before.map((b) => b.status)).toEqual([500, 500, 500]);
    expect(res.outcome).toBe("promoted");
    expect(res.after?.status).toBe(200);
    expect(JSON.parse(res.after!.body).answer).toBe(FIXED_ANSWER);
    expect(res.liveImageAfter).not.toBe(res.v1.image);
    expect(res.ok).toBe(true);
  });

  it("through the gateway: the swap and the bake lost no request, and `moss rollback` puts v1 back by hand with none lost either", () => {
    expect(res.liveTraffic?.failed).toEqual([]);
    expect(Object.keys(res.liveTraffic!.byVersion)).toHaveLength(2);
    expect(manual?.done).toMatchObject({ outcome: "rolled-back", to: { version: res.v1.commit }, reason: expect.stringContaining("e2e: by hand") });
    expect(manual!.done.by).not.toBe("");
    expect(manual!.traffic.failed).toEqual([]);
    expect(manual!.traffic.byVersion[res.v1.commit]).toBeGreaterThan(0);
  });

  it("time travel: the batch's failures pass against its fix, reproduce against v1 and against a later human commit built for it, and a version that is nothing says so", () => {
    const fix = travel["fix"]!;
    expect(fix.error).toBeUndefined();
    expect(fix.rec).toMatchObject({ state: "done", commit: res.timeline!.attempts[0]!.commit, built: false });
    expect(fix.rec!.results.map((r) => r.passed)).toEqual([true, true, true]);
    expect(fix.rec!.results[0]!.calls).toEqual([expect.objectContaining({ outcome: "matched" })]);
    // The operator's command: the first failure against the live version (v1 again, after the rollback) fails as it did.
    expect(cli?.code).toBe(1);
    expect(cli!.stdout).toMatch(/^FAIL {2}failure [0-9a-f]{32} \(\d+ ms\): /m);
    expect(cli!.stdout).toContain("answered 500");
    expect(cli!.stdout).toContain("calculator: unsupported token 'usd'");
    expect(cli!.stdout).toMatch(/ {6}logs/);
    expect(cli!.stderr).toMatch(/version live = [0-9a-f]{12}: image moss\/e2efix:[0-9a-f]{12} reused \(the engine had it\)/);
    const human = travel["human"]!;
    expect(human.rec).toMatchObject({ state: "done", commit: humanCommit, built: true, image: `moss/e2efix:${humanCommit.slice(0, 12)}` });
    // Each stage was seen as it came (building may pass between two looks: the engine's layer cache makes it quick).
    expect(human.stages[0]).toBe("requested");
    expect(human.stages).toContain("replaying");
    expect(human.stages.at(-1)).toBe("done");
    expect(human.rec!.buildMs).toBeGreaterThan(0);
    expect(human.rec!.results).toEqual([expect.objectContaining({ passed: false, status: 500 })]);
    expect(travel["nothing"]!.rec).toMatchObject({ state: "failed", error: expect.stringContaining('"no-such-branch" names no commit of agent e2efix') });
  });

  it("bisect: of 8 versions after a failing one, finds the one whose change stops the failure, in 3 replays, printing each step", () => {
    expect(bisect.error).toBeUndefined();
    const rec = bisect.rec!;
    expect(rec).toMatchObject({ state: "done", goodCommit: humanCommit, badCommit: bisect.line[7], commits: bisect.line, first: { commit: bisect.line[4], subject: "routing: currency before calculator", author: "Human <h@example.com>" } });
    expect(rec.steps.length).toBeLessThanOrEqual(3);
    // Each step replayed the failure at a version it built: before the fix the failure happens, from it on it does not.
    for (const st of rec.steps) expect(st.failed).toBe(bisect.line.indexOf(st.commit) < 4);
    expect(rec.steps.every((st) => st.built === true)).toBe(true);
    expect(bisect.lines).toContain(`8 version(s) after ${humanCommit} up to HEAD: at most 3 replay(s)`);
    expect(bisect.lines.filter((l) => /^step \d: [0-9a-f]{12} ".*" → the failure (happens|does not happen)/.test(l))).toHaveLength(rec.steps.length);
    expect(bisect.lines.at(-1)).toMatch(new RegExp(`^first version where the failure stops happening: ${bisect.line[4]} "routing: currency before calculator" by Human`));
  });

  it("the reviewed baseline and the diff against it: the Moss commit with its batch and verdict, the changed rule by name, flagged as routing", () => {
    expect(review.error).toBeUndefined();
    expect(review.marked).toMatchObject({ state: "done", reviewed: { commit: res.v1.commit, tag: "moss/reviewed/e2efix" } });
    expect(review.tag).toBe(res.v1.commit);
    const d = review.diff!.diff!;
    expect(d).toMatchObject({ commit: res.timeline!.attempts[0]!.commit, descends: true, baseline: { commit: res.v1.commit } });
    expect(d.commits).toEqual([expect.objectContaining({ commit: res.timeline!.attempts[0]!.commit, batchId: res.batchId, attempt: 1, verdict: "promoted" })]);
    expect(d.files).toEqual([{ path: "src/router.ts", status: "changed", areas: ["routing"], symbols: [{ name: "rules", kind: "value", change: "changed", areas: ["routing"] }] }]);
    expect(d.flagged).toEqual({ routing: 1 });
    expect(review.text).toContain("  M src/router.ts   [routing]");
    expect(review.text).toContain("      ~ rules (value, changed)   ⚑ routing");
  });

  it("the batch timeline shows failures, the patch, replay results and the promotion", () => {
    const t = res.timeline!;
    expect(t.failures.length).toBe(3);
    expect(t.attempts.length).toBe(1);
    expect(t.attempts[0]!.filesChanged).toEqual(["src/router.ts"]);
    expect(t.attempts[0]!.diffText).toContain("src/router.ts");
    expect(t.attempts[0]!.replay!.every((r) => r.passed)).toBe(true);
    // The model stand-in was down during the replays: each trial's model call was answered from its cassette.
    expect(progress.some((l) => l.includes("stand-in stopped after"))).toBe(true);
    for (const r of t.attempts[0]!.replay!) expect(r.calls).toEqual([expect.objectContaining({ method: "POST", outcome: "matched", index: 0, url: expect.stringMatching(/\/v1\/chat\/completions$/) })]);
    expect(t.verdict).toBe("promoted");
    expect(t.timeline.map((e) => e.kind)).toEqual(expect.arrayContaining(["failure", "batch", "candidate", "replay", "promotion"]));
    // Who did each: the agent reported its failures; each stage's process, as it named itself, within its grant.
    const who = (kind: string) => [...new Set(t.timeline.filter((e) => e.kind === kind).map((e) => e.who))];
    expect(who("failure")).toEqual(["agent.e2efix"]);
    expect(who("batch")).toEqual([expect.stringMatching(/^curator@/)]);
    expect(who("candidate")).toEqual([expect.stringMatching(/^rewriter@/)]);
    expect(who("replay")).toEqual([expect.stringMatching(/^replayer@/)]);
    expect(who("promotion")).toEqual([expect.stringMatching(/^promoter@/)]);
    expect(t.timeline.filter((e) => e.who?.includes("unverified"))).toEqual([]);
  });

  it("the Moss commit carries a git note (refs/notes/moss) with its candidate, replay and promotion, and the commands to see the rest", () => {
    const n = MossNote.parse(JSON.parse(note));
    expect(n).toMatchObject({ batch: res.batchId, agent: "e2efix", attempt: 1, candidate: { branch: `moss/${res.batchId}/1`, filesChanged: ["src/router.ts"] }, replay: { passed: true }, promotion: { outcome: "promoted" }, links: { show: `moss show ${res.batchId}` } });
    expect(n.replay!.failures).toHaveLength(3);
  });

  it("a malformed failure event is dead-lettered with its reason, logged once, and the services keep running", () => {
    expect(badSeqLogged).toBe(1);
    const line = serviceLines.find((l) => l.includes("message dead-lettered"))!;
    expect(line).toContain("failure.v1 on moss.failure.e2efix does not match its schema");
    // The story above completed after the bad message, so every service kept running.
    expect(res.ok).toBe(true);
  });

  it("with auth on, no Moss identity was refused anything the loop needs: the grants cover it, and nothing more was tried", () => {
    expect(serviceLines.filter((l) => l.startsWith("[nats]") && /Violation|authentication error/i.test(l))).toEqual([]);
  });

  it("spans from all five services share the batch's one trace id", () => {
    expect(res.traceId).toMatch(/^[0-9a-f]{32}$/);
    const services = new Set(otlp.spans.filter((s) => s.traceId === res.traceId).map((s) => s.service));
    expect([...services].sort()).toEqual(["auditor", "curator", "promoter", "replayer", "rewriter"]);
  });
});
