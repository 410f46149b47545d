// A coding agent that hides the bug instead of fixing it: the 500 becomes a polite 400. Replay's default predicate
// (a 2xx answer) must reject it, naming the check, and nothing is promoted.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { renderTimeline, runDemo, type DemoResult } from "@moss/cli";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

describe("end to end: a patch that turns the 500 into a 4xx is rejected", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "moss-e2e-polite-"));
  let res: DemoResult;

  beforeAll(async () => {
    res = await runDemo({ dataDir, agent: "e2epolite", patch: "polite", maxAttempts: 1, out: () => undefined });
  }, 400_000);
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it("the candidate answers 400 where the failure answered 500, and every replay fails the status check", () => {
    const a = res.timeline!.attempts[0]!;
    expect(a.commit).toMatch(/^[0-9a-f]{40}$/);
    expect(a.verdict).toBe("replay-failed");
    expect(a.replay).toHaveLength(3);
    for (const r of a.replay!) {
      expect(r).toMatchObject({ passed: false, verdict: "fail", status: 400, failed: { check: "status", expected: "200-299", actual: "400" } });
      expect(r.reason).toMatch(/^answered 400 \(expected 200-299\)/);
    }
  });

  it("nothing is promoted: the live agent is still v1, and moss show names the check that failed", () => {
    expect(res.outcome).toBe("exhausted");
    expect(res.liveImageAfter).toBe(res.v1.image);
    expect(res.timeline!.timeline.some((e) => e.kind === "promotion")).toBe(false);
    expect(renderTimeline(res.timeline!)).toContain("check status: expected 200-299, got 400");
  });
});
