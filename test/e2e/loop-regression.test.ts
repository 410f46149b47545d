// A coding agent that fixes the failure and breaks a request that worked: every failure passes its replay, but the
// agent's recorded successes, replayed against the same candidate, show "what is 2 + 3" answered by the echo tool
// instead of the calculator. Regression replay must reject it, with the before/after in `moss show`.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { renderTimeline, runDemo, type DemoResult } from "@moss/cli";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

describe("end to end: a candidate that fixes the failure but breaks another route is rejected", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "moss-e2e-overreach-"));
  let res: DemoResult;

  beforeAll(async () => {
    res = await runDemo({ dataDir, agent: "e2eover", patch: "overreach", maxAttempts: 1, out: () => undefined });
  }, 400_000);
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it("every failure passes, and the recorded successes are replayed too: the calculator one changed", () => {
    const a = res.timeline!.attempts[0]!;
    expect(a.commit).toMatch(/^[0-9a-f]{40}$/);
    expect(a.replay).toHaveLength(3);
    for (const r of a.replay!) expect(r).toMatchObject({ passed: true, verdict: "pass" });
    expect(a.verdict).toBe("replay-regressed");
    // The demo's two warm-up requests were recorded as successes (sampleRate 1), with their model calls.
    const regs = a.regressions!;
    expect(regs).toHaveLength(2);
    const calc = regs.find((r) => r.route === "calculator")!;
    expect(calc).toMatchObject({ passed: false, verdict: "fail", recorded: { status: 200 }, status: 200 });
    expect(calc.changes).toEqual([
      { check: "json", path: "$.tool", before: '"calculator"', after: '"echo"' },
      { check: "json", path: "$.answer", before: '"2 + 3 = 5"', after: '"you said: what is 2 + 3"' },
    ]);
    expect(calc.calls!.length).toBeGreaterThan(0);
    expect(calc.calls!.every((c) => c.outcome === "matched")).toBe(true);
    const remember = regs.find((r) => r.route === "remember")!;
    expect(remember).toMatchObject({ passed: true, verdict: "pass" });
  });

  it("nothing is promoted, and moss show gives the before/after of what changed", () => {
    expect(res.outcome).toBe("exhausted");
    expect(res.liveImageAfter).toBe(res.v1.image);
    const text = renderTimeline(res.timeline!);
    expect(text).toContain("regression CHANGED");
    expect(text).toContain('$.tool: before "calculator", after "echo"');
    expect(text).toContain("regression UNCHANGED");
    expect(text).toContain("1 of 2 recorded success(es) changed");
  });
});
