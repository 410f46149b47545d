// The whole loop with the Python example agent, in its own image (FROM moss/python-base: no Node in it), as
// `moss demo --python` runs it: real nats-server with its generated auth, the service processes, real Docker. The
// agent reports over the curator's HTTP ingest; the coding agent runs in the default container sandbox.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runDemo, type DemoResult } from "@moss/cli";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

describe("end to end: a Python agent's failure is fixed, replayed in its own image and promoted", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "moss-e2e-py-"));
  const progress: string[] = [];
  const serviceLines: string[] = [];
  let res: DemoResult;

  beforeAll(async () => {
    res = await runDemo({ dataDir, agent: "e2epy", example: "python", out: (l) => progress.push(l), serviceLog: (s, l) => serviceLines.push(`[${s}] ${l}`) });
  }, 300_000);
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it("v1 raises KeyError on a note without tags; after promotion the same message is noted", () => {
    if (!res.ok) console.log(`${progress.join("\n")}\n${serviceLines.filter((l) => /"level":"(warn|error)"/.test(l)).join("\n")}`);
    expect(res.before.map((b) => b.status)).toEqual([500, 500, 500]);
    expect(res.outcome).toBe("promoted");
    expect(res.after?.status).toBe(200);
    expect(JSON.parse(res.after!.body)).toEqual({ tool: "remember", answer: "noted #2: call mom" });
    expect(res.ok).toBe(true);
  });

  it("the timeline holds the Python tracebacks, the patch to agent.py and replays that passed in the agent's image", () => {
    const t = res.timeline!;
    expect(t.failures).toHaveLength(3);
    expect(t.failures.every((f) => f.error?.type === "KeyError" && /tool_remember/.test(f.error.stack ?? ""))).toBe(true);
    const a = t.attempts.at(-1)!;
    expect(a.filesChanged).toEqual(["agent.py"]);
    expect(a.diffText).toContain('args.get("tags", [])');
    expect(a.replay?.every((r) => r.passed)).toBe(true);
  });
});
