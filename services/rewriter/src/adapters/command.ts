import { abnormal, prepareOutput, readIfExists, writeText } from "./common";
import { lastLine, runProcess } from "./process";
import type { AdapterResult, CodingAgentAdapter, StageInvocation } from "./types";

/** Replaces `{worktree}` `{evidence}` `{prompt}` `{output}` `{stage}` in every argument of the template. */
export function renderTemplate(template: readonly string[], inv: StageInvocation): string[] {
  const vars: Record<string, string> = {
    worktree: inv.worktree,
    evidence: inv.evidencePath,
    prompt: inv.promptPath,
    output: inv.outputPath,
    stage: inv.stage,
  };
  // One pass, so a value that happens to contain "{stage}" is not expanded again.
  return template.map((a) => a.replace(/\{(worktree|evidence|prompt|output|stage)\}/g, (_, k: string) => vars[k]!));
}

/**
 * Any command, as a black box: exit 0 is success, anything else failure. Its final answer is what it wrote to
 * `{output}`, or else its stdout. It also finds the paths in `MOSS_WORKTREE`, `MOSS_EVIDENCE`, `MOSS_PROMPT`,
 * `MOSS_OUTPUT` and the stage in `MOSS_STAGE`. Its version is unknown: running an arbitrary command with
 * `--version` could just as well start it.
 */
export function commandAdapter(template: readonly string[]): CodingAgentAdapter {
  return {
    name: "command",
    version: () => Promise.resolve(undefined),
    async run(inv: StageInvocation): Promise<AdapterResult> {
      const started = Date.now();
      const argv = renderTemplate(template, inv);
      try {
        prepareOutput(inv.outputPath);
      } catch (err) {
        return { outcome: "failure", reason: `cannot prepare the output file ${inv.outputPath}: ${(err as Error).message}`, output: "", exitCode: null, durationMs: Date.now() - started };
      }
      const env = { ...inv.env, MOSS_STAGE: inv.stage, MOSS_WORKTREE: inv.worktree, MOSS_EVIDENCE: inv.evidencePath, MOSS_PROMPT: inv.promptPath, MOSS_OUTPUT: inv.outputPath };
      const run = await (inv.exec ?? runProcess)(argv, { cwd: inv.worktree, env, timeoutMs: inv.timeoutMs, runAs: inv.runAs });
      const early = abnormal(run, argv[0] ?? "", inv.timeoutMs);
      if (early) return early;
      const written = readIfExists(inv.outputPath);
      const stdout = run.stdout.trim();
      const message = written ?? (stdout ? stdout : undefined);
      try {
        if (written === undefined && message !== undefined) writeText(inv.outputPath, message);
      } catch (err) {
        return { outcome: "failure", reason: `cannot write the output file ${inv.outputPath}: ${(err as Error).message}`, output: run.output, exitCode: run.exitCode, durationMs: run.durationMs };
      }
      const base = { output: run.output, ...(message !== undefined ? { message } : {}), exitCode: run.exitCode, durationMs: run.durationMs };
      if (run.exitCode === 0) return { ...base, outcome: "success", reason: "exited 0" };
      return { ...base, outcome: "failure", reason: `command exited ${run.exitCode ?? run.signal}: ${lastLine(run.output)}` };
    },
  };
}
