import { errorText, isObject, jsonLines, str } from "./common";
import { firstLine, lastLine, type ProcessRun } from "./process";
import type { ToolContext, ToolSpec, Verdict } from "./tool";

/** OpenCode tools that only read; any other tool (edit, write, patch, bash, task, ...) may change files. */
const READING_TOOLS = new Set(["read", "glob", "grep", "list", "ls", "todoread", "todowrite", "webfetch", "websearch", "codesearch", "lsp", "skill"]);

/**
 * OpenCode, non-interactive: `opencode run <message> --format json` prints JSON lines —
 * `{type: "step_start"|"text"|"tool_use"|"step_finish"|"error", timestamp, sessionID, part|error}`.
 *
 * - read-only stages: `--agent plan` (its permissions deny edits);
 * - implement: the default `build` agent.
 *
 * The message goes first: `--file` takes several values and would swallow a message placed after it. A prompt
 * too long for one argument is attached with `--file` under a short message.
 *
 * Signals: an `error` event is a failure even when the exit code is 0; an implement run with no tool use that can
 * change files is `no-change`. The answer is the text of the last assistant message.
 */
export const opencode: ToolSpec = {
  name: "opencode",
  defaultBin: "opencode",
  // Its plan agent may keep plans in .opencode/plans/.
  droppings: /^\.opencode$/,
  build(ctx: ToolContext) {
    const argv = [ctx.bin, "run", ctx.bigPrompt ? "Follow the instructions in the attached file." : ctx.prompt, "--format", "json"];
    if (ctx.readOnly) argv.push("--agent", "plan");
    if (ctx.model) argv.push("--model", ctx.model);
    argv.push(...ctx.extraArgs);
    if (ctx.bigPrompt) argv.push("--file", ctx.promptFile);
    return { argv };
  },
  interpret(run: ProcessRun, ctx: ToolContext): Verdict {
    const events = jsonLines(run.stdout).filter((e) => typeof e["type"] === "string");
    if (!events.length) {
      if (run.exitCode !== 0) return { outcome: "failure", reason: `opencode exited ${run.exitCode ?? run.signal}: ${lastLine(run.output)}` };
      const what = run.stdout.trim() ? `'${firstLine(run.stdout)}'` : "nothing";
      return { outcome: "failure", reason: `opencode run was asked for --format json but printed ${what} on stdout; is this OpenCode, in a version with 'run --format json'?` };
    }
    // Text parts arrive once per part id (a later copy replaces an earlier one); the answer is the last message's text.
    const parts = new Map<string, { messageID: string; text: string }>();
    let lastMessageID = "";
    const errors: string[] = [];
    const tools: string[] = [];
    for (const e of events) {
      const part = isObject(e["part"]) ? e["part"] : undefined;
      if (e["type"] === "error") errors.push(errorText(e["error"]) ?? errorText(e["message"]) ?? "error");
      else if (e["type"] === "text" && part) {
        const messageID = str(part["messageID"]) ?? "";
        lastMessageID = messageID;
        parts.set(str(part["id"]) ?? `#${parts.size}`, { messageID, text: str(part["text"]) ?? "" });
      } else if (e["type"] === "tool_use" && part) tools.push(str(part["tool"]) ?? "unknown");
    }
    const text = [...parts.values()].filter((p) => p.messageID === lastMessageID).map((p) => p.text).join("\n").trim();
    const msg = text ? { message: text } : {};
    if (errors.length) return { outcome: "failure", reason: `opencode reported an error: ${errors[errors.length - 1]}`, ...msg };
    if (run.exitCode !== 0) return { outcome: "failure", reason: `opencode exited ${run.exitCode ?? run.signal}: ${lastLine(run.output)}`, ...msg };
    const changing = tools.filter((t) => !READING_TOOLS.has(t));
    if (!ctx.readOnly && !changing.length) return { outcome: "no-change", reason: "opencode finished without using a tool that can change files", ...msg };
    return { outcome: "success", reason: `opencode finished (${tools.length} tool call(s)${changing.length ? `: ${[...new Set(changing)].join(", ")}` : ""})`, ...msg };
  },
};
