import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AdapterConfigError, createAdapter, renderTemplate } from "@moss/rewriter";
import { fakeEnv, invocation, makeRepo, status, tempRoot } from "./helpers";

const root = tempRoot("adapters-command");
afterAll(() => rmSync(root, { recursive: true, force: true }));
const env = fakeEnv(root);
const node = process.execPath;

describe("command preset", () => {
  it("renders every placeholder, once", () => {
    const inv = invocation(root, "/wt/{stage}", "plan", env);
    expect(renderTemplate(["tool", "--in={prompt}", "{evidence}", "-o", "{output}", "{stage}:{worktree}"], inv)).toEqual([
      "tool",
      `--in=${inv.promptPath}`,
      inv.evidencePath,
      "-o",
      inv.outputPath,
      "plan:/wt/{stage}",
    ]);
  });

  it("takes what the command wrote to {output} as its answer", async () => {
    const wt = makeRepo(root, "a");
    const a = createAdapter({ preset: "command", command: [node, "-e", "require('fs').writeFileSync(process.argv[1], 'plan: ' + process.argv[2]); console.log('log line')", "{output}", "{stage}"] });
    const inv = invocation(root, wt, "plan", env);
    const r = await a.run(inv);
    expect(r).toMatchObject({ outcome: "success", exitCode: 0, message: "plan: plan" });
    expect(readFileSync(inv.outputPath, "utf8")).toBe("plan: plan");
    expect(r.output).toContain("log line");
  });

  it("takes its stdout as the answer when it wrote no output file, and gives it the paths in MOSS_* variables", async () => {
    const wt = makeRepo(root, "b");
    const script = "const fs = require('fs'); fs.writeFileSync('fixed.txt', 'x'); console.log([process.env.MOSS_STAGE, fs.readFileSync(process.env.MOSS_PROMPT, 'utf8').length > 0, process.env.MOSS_OUTPUT].join(' '))";
    const a = createAdapter({ preset: "command", command: [node, "-e", script] });
    const inv = invocation(root, wt, "implement", env);
    const r = await a.run(inv);
    expect(r.outcome, r.reason).toBe("success");
    expect(r.message).toBe(`implement true ${inv.outputPath}`);
    expect(readFileSync(inv.outputPath, "utf8")).toBe(r.message);
    expect(status(wt)).toBe("?? fixed.txt");
  });

  it("reports a non-zero exit as a failure with the last line", async () => {
    const a = createAdapter({ preset: "command", command: ["sh", "-c", "echo working; echo 'fatal: quota exceeded' >&2; exit 3"] });
    const r = await a.run(invocation(root, makeRepo(root, "c"), "implement", env));
    expect(r).toMatchObject({ outcome: "failure", exitCode: 3, reason: "command exited 3: fatal: quota exceeded" });
  });

  it("times out a command that hangs", async () => {
    const a = createAdapter({ preset: "command", command: ["sh", "-c", "sleep 30"] });
    const r = await a.run(invocation(root, makeRepo(root, "d"), "implement", env, { timeoutMs: 800 }));
    expect(r.outcome).toBe("timeout");
    expect(r.durationMs).toBeLessThan(5_000);
  });

  it("has no version, and does not run the command to find one", async () => {
    const a = createAdapter({ preset: "command", command: [join(root, "would-fail-if-run")] });
    expect(await a.version()).toBeUndefined();
  });

  it("rejects an empty command and an unknown preset with a config error", () => {
    expect(() => createAdapter({ preset: "command", command: [] })).toThrow(AdapterConfigError);
    expect(() => createAdapter({ preset: "devin" } as never)).toThrow(/unknown coding-agent preset 'devin'/);
  });
});
