// A coding agent whose patch does not fix the bug: replay must catch it, and nothing is ever promoted.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runDemo, type DemoResult } from "@moss/cli";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

describe("end to end: a patch that does not fix the bug is rejected and never promoted", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "moss-e2e-bad-"));
  let res: DemoResult;

  beforeAll(async () => {
    res = await runDemo({ dataDir, agent: "e2ebad", patch: "bad", maxAttempts: 2, out: () => undefined });
  }, 400_000);
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it("gives up after the configured attempts; the live agent is still v1 and still fails", () => {
    expect(res.outcome).toBe("exhausted");
    expect(res.ok).toBe(false);
    expect(res.liveImageAfter).toBe(res.v1.image);
    expect(res.after?.status).toBe(500);
  });

  it("each attempt was a real commit that replay rejected, and the second attempt saw the first one's failures", () => {
    const t = res.timeline!;
    expect(t.attempts.map((a) => a.attempt)).toEqual([1, 2]);
    for (const a of t.attempts) {
      expect(a.commit).toMatch(/^[0-9a-f]{40}$/);
      expect(a.verdict).toBe("replay-failed");
      expect(a.replay!.every((r) => !r.passed)).toBe(true);
    }
    expect(t.timeline.some((e) => e.kind === "promotion")).toBe(false);
    const evidence2 = JSON.parse(readFileSync(join(dataDir, "worktrees", `${res.batchId}-2.evidence.json`), "utf8"));
    expect(evidence2.previous[0].attempt).toBe(1);
    expect(evidence2.previous[0].verdict).toBe("replay-failed");
    expect(evidence2.previous[0].results.length).toBe(3);
    expect(evidence2.previous[0].diffText).toContain("src/");
    expect(t.verdict).toBe("exhausted");
  });
});
