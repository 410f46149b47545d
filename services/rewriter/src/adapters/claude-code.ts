import { dirname } from "node:path";
import { isObject, jsonLines, str } from "./common";
import { firstLine, lastLine, type ProcessRun } from "./process";
import type { ToolContext, ToolSpec, Verdict } from "./tool";

/**
 * Tools a read-only stage may not use. Deny rules hold in every permission mode, so this does not depend on the
 * user's settings; Bash is denied too, as a shell can edit anything.
 */
export const CLAUDE_READ_ONLY_DENY = "Bash,Edit,Write,MultiEdit,NotebookEdit";

/**
 * Claude Code in print mode: `claude -p <prompt> --output-format json`, which prints one JSON object when the run
 * ends — `{type: "result", subtype, is_error, result, num_turns, total_cost_usd, permission_denials, ...}`.
 *
 * - implement: `--permission-mode acceptEdits` (file edits are approved; a shell command that is not pre-approved is
 *   denied, as nobody is there to ask; allow more through `extraArgs`, e.g. `--allowedTools "Bash(npm test:*)"`);
 * - other stages: `--permission-mode default --disallowedTools Bash,Edit,Write,MultiEdit,NotebookEdit`. Not
 *   `--permission-mode plan`: in plan mode the model is told to end by calling ExitPlanMode, which needs an
 *   approver a headless run does not have — the plan then sits in a denied tool call instead of in `result`.
 * - `--add-dir <evidence dir>` lets its Read tool open the evidence file, which lives outside the worktree.
 *
 * A prompt too long for one argument goes on stdin (`claude -p` reads its prompt from stdin when none is given).
 */
export const claudeCode: ToolSpec = {
  name: "claude-code",
  defaultBin: "claude",
  build(ctx: ToolContext) {
    const argv = [ctx.bin, "-p"];
    if (!ctx.bigPrompt) argv.push(ctx.prompt);
    argv.push("--output-format", "json", "--add-dir", dirname(ctx.inv.evidencePath));
    if (ctx.readOnly) argv.push("--permission-mode", "default", "--disallowedTools", CLAUDE_READ_ONLY_DENY);
    else argv.push("--permission-mode", "acceptEdits");
    if (ctx.model) argv.push("--model", ctx.model);
    argv.push(...ctx.extraArgs);
    return { argv, ...(ctx.bigPrompt ? { stdinFile: ctx.promptFile } : {}) };
  },
  interpret(run: ProcessRun): Verdict {
    const result = resultObject(run.stdout);
    if (!result) {
      if (run.exitCode !== 0) return { outcome: "failure", reason: `claude exited ${run.exitCode ?? run.signal}: ${lastLine(run.output)}` };
      const what = run.stdout.trim() ? `'${firstLine(run.stdout)}'` : "nothing";
      const cut = run.stdoutTruncated ? " (its output was cut at the capture limit)" : "";
      return { outcome: "failure", reason: `claude was asked for --output-format json but printed ${what} on stdout${cut}; is this Claude Code, in a version that supports -p?` };
    }
    const subtype = str(result["subtype"]) ?? "";
    const text = str(result["result"]);
    const details = [text, ...(Array.isArray(result["errors"]) ? result["errors"].map((e) => (typeof e === "string" ? e : JSON.stringify(e))) : [])]
      .filter((s): s is string => !!s && !!s.trim())
      .join("; ")
      .slice(0, 500);
    // Exit 0 is no proof: an API error (unknown model, auth, quota) still exits 0, with is_error and the error in `result`.
    if (result["is_error"] === true || subtype.startsWith("error")) {
      return { outcome: "failure", reason: `claude reported an error (${subtype || "is_error"}): ${details || "no details"}`, ...(text ? { message: text } : {}) };
    }
    if (run.exitCode !== 0) return { outcome: "failure", reason: `claude exited ${run.exitCode ?? run.signal}: ${details || lastLine(run.output)}` };
    const turns = typeof result["num_turns"] === "number" ? `${result["num_turns"]} turn(s)` : "";
    const denied = Array.isArray(result["permission_denials"]) ? result["permission_denials"].length : 0;
    const notes = [turns, denied ? `${denied} tool call(s) denied` : ""].filter(Boolean).join(", ");
    return { outcome: "success", reason: `claude finished (${subtype || "success"}${notes ? `, ${notes}` : ""})`, ...(text !== undefined ? { message: text } : {}) };
  },
};

/** The result object: the whole stdout as one JSON object, or else its last line that is one (a warning may precede it). */
function resultObject(stdout: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(stdout.trim());
    if (isObject(v)) return v;
  } catch {
    // not one object: look for the result line
  }
  const objs = jsonLines(stdout).filter((o) => o["type"] === "result" || "is_error" in o);
  return objs[objs.length - 1];
}
