import { join } from "node:path";
import { readIfExists } from "./common";
import { lastLine, type ProcessRun } from "./process";
import type { ToolContext, ToolSpec, Verdict } from "./tool";

const APPLIED = /^Applied edit to (.+)$/gm;
const EDITS_FAILED = /SEARCH\/REPLACE blocks? failed to match|did not conform to the edit format/;
const API_ERROR = /\blitellm\.[A-Za-z]*(Error|Exception)\b[^\n]*/;
const BANNER = /^Aider v\d/m;

/**
 * Aider, scripted: `aider --message-file <prompt> --yes-always ...` does the one message and exits.
 *
 * - `--no-auto-commits --no-dirty-commits`: the rewriter commits, not aider;
 * - `--no-gitignore`, and both history files in a scratch directory: aider would otherwise add `.aider*` to
 *   `.gitignore` and write its histories into the worktree (the repo-map cache `.aider.tags.cache.*` has no flag;
 *   the adapter removes it when the run created it);
 * - `--no-check-update --no-analytics --no-show-model-warnings --no-pretty --no-stream`: no network detours, no
 *   questions, plain text;
 * - `--read <evidence>` puts the evidence in the chat read-only;
 * - read-only stages: `--chat-mode ask` (aider answers and edits nothing).
 *
 * Signals: every applied edit prints `Applied edit to <file>`; none means aider made no change (`no-change`),
 * unless its edit blocks failed to match or the model call failed (litellm errors) — those are failures. Output
 * without aider's `Aider v…` banner is not trusted to mean anything.
 */
export const aider: ToolSpec = {
  name: "aider",
  defaultBin: "aider",
  droppings: /^\.aider/,
  build(ctx: ToolContext) {
    const argv = [
      ctx.bin,
      "--message-file", ctx.promptFile,
      "--yes-always",
      "--no-auto-commits", "--no-dirty-commits", "--no-gitignore",
      "--no-check-update", "--no-analytics", "--no-show-model-warnings",
      "--no-pretty", "--no-stream",
      "--input-history-file", join(ctx.scratch, "input.history"),
      "--chat-history-file", join(ctx.scratch, "chat.history.md"),
      "--read", ctx.inv.evidencePath,
    ];
    if (ctx.readOnly) argv.push("--chat-mode", "ask");
    if (ctx.model) argv.push("--model", ctx.model);
    argv.push(...ctx.extraArgs);
    return { argv };
  },
  interpret(run: ProcessRun, ctx: ToolContext): Verdict {
    const out = run.output;
    const message = lastReply(readIfExists(join(ctx.scratch, "chat.history.md"))) ?? replyFromStdout(run.stdout);
    const msg = message !== undefined ? { message } : {};
    if (run.exitCode !== 0) return { outcome: "failure", reason: `aider exited ${run.exitCode ?? run.signal}: ${lastLine(out)}`, ...msg };
    const applied = [...new Set([...out.matchAll(APPLIED)].map((m) => m[1]!.trim()))];
    const apiError = API_ERROR.exec(out)?.[0];
    if (applied.length) {
      const partial = EDITS_FAILED.test(out) ? "; some of its edit blocks did not match" : "";
      return { outcome: "success", reason: `aider applied edits to ${applied.join(", ")}${partial}`, ...msg };
    }
    if (apiError) return { outcome: "failure", reason: `aider's model call failed: ${apiError.slice(0, 300)}`, ...msg };
    if (!BANNER.test(out)) return { outcome: "failure", reason: `the output does not look like aider's (no 'Aider v…' banner): ${lastLine(out) || "no output"}`, ...msg };
    if (ctx.readOnly) return { outcome: "success", reason: "aider answered (ask mode)", ...msg };
    if (EDITS_FAILED.test(out)) return { outcome: "failure", reason: "aider's edit blocks did not match the files; nothing was applied", ...msg };
    return { outcome: "no-change", reason: "aider finished without applying any edit", ...msg };
  },
};

/**
 * The last assistant reply in aider's markdown chat history: the text after the last user message (`#### ` lines),
 * without aider's own notes (`> ` lines).
 */
export function lastReply(history: string | undefined): string | undefined {
  if (!history) return undefined;
  const lines = history.split("\n");
  let i = lines.length - 1;
  while (i >= 0 && !lines[i]!.startsWith("#### ")) i--;
  if (i < 0) return undefined;
  const reply = lines.slice(i + 1).filter((l) => !l.startsWith(">")).join("\n").trim();
  return reply || undefined;
}

/** Aider's stdout without its status lines, when no chat history was written. */
function replyFromStdout(stdout: string): string | undefined {
  const noise = /^(Aider v|Main model:|Weak model:|Editor model:|Model:|Git repo:|Repo-map:|Added .* to the chat|Tokens:|Cost:|Applied edit to|Use \/help|https?:\/\/)/;
  const text = stdout.split("\n").filter((l) => !noise.test(l.trim())).join("\n").trim();
  return text || undefined;
}
