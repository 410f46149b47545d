import { chownSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { abnormal, composePrompt, editsFiles, MAX_PROMPT_ARG, once, prepareOutput, probeVersion, readIfExists, removeDroppings, rootEntries, writeText } from "./common";
import { runProcess, type ProcessRun } from "./process";
import type { AdapterResult, CodingAgentAdapter, StageInvocation, ToolPreset } from "./types";

/** What a preset builds a run from. */
export interface ToolContext {
  inv: StageInvocation;
  bin: string;
  model?: string;
  extraArgs: readonly string[];
  /** The composed prompt (stage prompt + footer). */
  prompt: string;
  /** The same prompt, in a file outside the worktree (for tools that take a message file, or stdin). */
  promptFile: string;
  /** Whether the prompt is too long to pass as one argument. */
  bigPrompt: boolean;
  /** A private scratch directory outside the worktree, removed after the run. */
  scratch: string;
  /** Whether the stage must not change files. */
  readOnly: boolean;
}

/** How a preset reads a finished run (the process exited by itself; spawn errors and timeouts never get here). */
export interface Verdict {
  outcome: "success" | "failure" | "no-change";
  reason: string;
  /** The tool's final answer, when the preset found one in its output. */
  message?: string;
}

/** One tool's headless mode: its flags per stage, and how it says done, failed or nothing to do. */
export interface ToolSpec {
  name: ToolPreset;
  defaultBin: string;
  /** Worktree-root names the tool creates for its own bookkeeping; removed after the run when they are new. */
  droppings?: RegExp;
  build(ctx: ToolContext): { argv: string[]; stdinFile?: string };
  interpret(run: ProcessRun, ctx: ToolContext): Verdict;
}

export interface ToolOptions {
  bin?: string;
  extraArgs?: string[];
  model?: string;
  /** Environment of the `--version` probe (it runs outside any invocation). */
  versionEnv: Record<string, string>;
}

export function toolAdapter(spec: ToolSpec, opts: ToolOptions): CodingAgentAdapter {
  const bin = opts.bin ?? spec.defaultBin;
  const version = once(() => probeVersion(bin, opts.versionEnv, tmpdir()));
  return {
    name: spec.name,
    version,
    async run(inv: StageInvocation): Promise<AdapterResult> {
      const started = Date.now();
      let scratch: string | undefined;
      try {
        prepareOutput(inv.outputPath);
        const promptText = readIfExists(inv.promptPath);
        if (promptText === undefined) return failed(started, `cannot read the prompt file ${inv.promptPath}`);
        // A sandboxed tool gets its scratch next to its answer file, and owns it; otherwise a private temp directory.
        scratch = mkdtempSync(join(inv.runAs ? dirname(inv.outputPath) : tmpdir(), `moss-${spec.name}-`));
        const prompt = composePrompt(inv, promptText);
        const promptFile = join(scratch, "prompt.md");
        writeFileSync(promptFile, prompt);
        if (inv.runAs) for (const p of [scratch, promptFile]) chownSync(p, inv.runAs.uid, inv.runAs.gid);
        const ctx: ToolContext = {
          inv,
          bin,
          model: opts.model,
          extraArgs: opts.extraArgs ?? [],
          prompt,
          promptFile,
          bigPrompt: Buffer.byteLength(prompt) > MAX_PROMPT_ARG,
          scratch,
          readOnly: !editsFiles(inv.stage),
        };
        const { argv, stdinFile } = spec.build(ctx);
        const before = rootEntries(inv.worktree);
        const run = await (inv.exec ?? runProcess)(argv, { cwd: inv.worktree, env: inv.env, timeoutMs: inv.timeoutMs, stdinFile, runAs: inv.runAs });
        const removed = removeDroppings(inv.worktree, before, spec.droppings);
        const early = abnormal(run, bin, inv.timeoutMs);
        if (early) return early;

        const v = spec.interpret(run, ctx);
        // A tool that writes the answer file itself (codex -o) wins over what the preset read from its output.
        const written = readIfExists(inv.outputPath);
        const message = written?.trim() ? written : (v.message ?? written);
        if (message !== undefined && message !== written) writeText(inv.outputPath, message);
        let { outcome, reason } = v;
        if (outcome === "success" && ctx.readOnly && !message?.trim()) {
          outcome = "failure";
          reason = `${reason}; but it gave no final answer for the ${inv.stage} stage`;
        }
        if (removed.length) reason += ` (removed its bookkeeping files from the worktree: ${removed.join(", ")})`;
        return { outcome, reason, output: run.output, ...(message !== undefined ? { message } : {}), exitCode: run.exitCode, durationMs: run.durationMs };
      } catch (err) {
        return failed(started, `${spec.name} adapter error: ${(err as Error).message}`);
      } finally {
        if (scratch) rmSync(scratch, { recursive: true, force: true });
      }
    },
  };
}

function failed(started: number, reason: string): AdapterResult {
  return { outcome: "failure", reason, output: "", exitCode: null, durationMs: Date.now() - started };
}
