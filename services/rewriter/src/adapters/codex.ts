import { errorText, isObject, jsonLines, str } from "./common";
import { firstLine, lastLine, type ProcessRun } from "./process";
import type { ToolContext, ToolSpec, Verdict } from "./tool";

/** Item types through which codex can change the worktree. */
const CHANGING_ITEMS = new Set(["file_change", "command_execution", "mcp_tool_call"]);

/**
 * OpenAI Codex CLI, non-interactive: `codex exec --json ... <prompt>`. `exec` never asks for approvals; what it
 * may do is set by its sandbox: `--sandbox workspace-write` to implement, `--sandbox read-only` for every other
 * stage. `--output-last-message <outputPath>` makes codex write its final message itself; `--json` prints JSONL
 * events on stdout: `thread.started`, `turn.started`, `item.started|updated|completed` (items `agent_message`,
 * `reasoning`, `command_execution`, `file_change`, `mcp_tool_call`, `web_search`, `todo_list`, `error`),
 * `turn.completed`, `turn.failed {error: {message}}`, `error {message}`.
 *
 * `--skip-git-repo-check` because a linked worktree's `.git` is a file; `--cd` repeats the cwd so codex's
 * workspace root is the worktree whatever its config says. A prompt too long for one argument is read from
 * stdin (`-`).
 */
export const codex: ToolSpec = {
  name: "codex",
  defaultBin: "codex",
  build(ctx: ToolContext) {
    const argv = [ctx.bin, "exec", "--json", "--sandbox", ctx.readOnly ? "read-only" : "workspace-write", "--skip-git-repo-check", "--cd", ctx.inv.worktree, "--output-last-message", ctx.inv.outputPath];
    if (ctx.model) argv.push("--model", ctx.model);
    argv.push(...ctx.extraArgs);
    argv.push(ctx.bigPrompt ? "-" : ctx.prompt);
    return { argv, ...(ctx.bigPrompt ? { stdinFile: ctx.promptFile } : {}) };
  },
  interpret(run: ProcessRun, ctx: ToolContext): Verdict {
    const events = jsonLines(run.stdout);
    if (!events.length) {
      if (run.exitCode !== 0) return { outcome: "failure", reason: `codex exited ${run.exitCode ?? run.signal}: ${lastLine(run.output)}` };
      const what = run.stdout.trim() ? `'${firstLine(run.stdout)}'` : "nothing";
      return { outcome: "failure", reason: `codex exec was asked for --json events but printed ${what} on stdout; is this the Codex CLI, in a version with 'exec --json'?` };
    }
    let message: string | undefined;
    let final: "completed" | "failed" | undefined;
    let lastError: string | undefined;
    let changes = 0;
    let commands = 0;
    for (const e of events) {
      const type = str(e["type"]);
      const item = isObject(e["item"]) ? e["item"] : undefined;
      if (type === "turn.completed") final = "completed";
      else if (type === "turn.failed") {
        final = "failed";
        lastError = errorText(e["error"]) ?? "turn failed";
      } else if (type === "error") lastError = errorText(e["message"]) ?? errorText(e) ?? "error";
      else if (type === "item.completed" && item) {
        const it = str(item["type"]);
        if (it === "agent_message") message = str(item["text"]) ?? message;
        if (it === "file_change") changes++;
        if (it && CHANGING_ITEMS.has(it) && it !== "file_change") commands++;
      } else if (isObject(e["msg"])) {
        // The event format of codex versions before `thread.*`/`item.*`: {id, msg: {type, ...}}.
        const msg = e["msg"];
        const mt = str(msg["type"]);
        if (mt === "agent_message") message = str(msg["message"]) ?? message;
        else if (mt === "task_complete") {
          final = "completed";
          message = str(msg["last_agent_message"]) ?? message;
        } else if (mt === "error") lastError = str(msg["message"]) ?? "error";
      }
    }
    const msg = message !== undefined ? { message } : {};
    // A stream error codex recovered from is followed by a completed turn; one it did not recover from is not.
    if (final === "failed" || (final !== "completed" && lastError)) return { outcome: "failure", reason: `codex reported an error: ${lastError ?? "turn failed"}`, ...msg };
    if (run.exitCode !== 0) return { outcome: "failure", reason: `codex exited ${run.exitCode ?? run.signal}: ${lastError ?? lastLine(run.output)}`, ...msg };
    if (final !== "completed") return { outcome: "failure", reason: "codex exited 0 without completing its turn (no turn.completed event)", ...msg };
    const sawItems = events.some((e) => str(e["type"])?.startsWith("item."));
    if (!ctx.readOnly && sawItems && changes === 0 && commands === 0) {
      return { outcome: "no-change", reason: "codex completed its turn without changing a file or running a command", ...msg };
    }
    return { outcome: "success", reason: `codex completed its turn (${changes} file change(s), ${commands} command(s))`, ...msg };
  },
};
