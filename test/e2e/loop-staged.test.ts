// The whole loop with every rewrite stage on (locate, plan, plan review, implement, code review), driven by the
// deterministic symbolic patcher, a signed commit, and the promoter's signature check.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FIXED_ANSWER, runDemo, type DemoResult } from "@moss/cli";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

describe("end to end: staged, signed rewriting", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "moss-e2e-staged-"));
  let res: DemoResult;
  beforeAll(async () => {
    res = await runDemo({ dataDir, agent: "e2estaged", patch: "symbolic", out: () => undefined });
  }, 400_000);
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it("promotes the fix, which answers the failing request", () => {
    expect(res.outcome).toBe("promoted");
    expect(JSON.parse(res.after!.body).answer).toBe(FIXED_ANSWER);
  });

  it("ran every stage in order, reviews approving, and shows each stage's output", () => {
    const a = res.timeline!.attempts[0]! as { stages: Array<{ stage: string; verdict: string; outputText?: string }>; signed: boolean; commit: string };
    expect(a.stages.map((s) => `${s.stage}:${s.verdict}`)).toEqual(["locate:success", "plan:success", "plan-review:approve", "implement:success", "code-review:approve"]);
    expect(a.stages[0]!.outputText).toMatch(/matches/);
    expect(a.signed).toBe(true);
  });

  it("the promoted commit is SSH-signed by an allowed signer and carries the Moss trailers", () => {
    const commit = (res.timeline!.attempts[0] as { commit: string }).commit;
    const repo = join(dataDir, "agent-repo");
    const git = (...args: string[]) => execFileSync("git", ["-C", repo, "-c", `gpg.ssh.allowedSignersFile=${join(dataDir, "keys", "allowed_signers")}`, ...args], { encoding: "utf8" });
    expect(git("log", "-1", "--format=%G?", commit).trim()).toBe("G");
    const trailers = git("log", "-1", "--format=%(trailers:only,unfold)", commit);
    expect(trailers).toMatch(new RegExp(`Moss-Batch: ${res.batchId}`));
    expect(trailers).toMatch(/Moss-Attempt: 1/);
    expect(trailers).toMatch(/Moss-Coding-Agent: symbolic/);
    expect(trailers).toMatch(/Moss-Stage-Verdicts: locate#1=success plan#1=success plan-review#1=approve implement#1=success code-review#1=approve/);
  });
});
