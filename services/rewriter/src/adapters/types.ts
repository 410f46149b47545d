/**
 * The coding-agent adapter layer: one interface in front of every tool the rewriter can hand a batch to.
 * A preset knows its tool's headless flags and how the tool says "done", "failed" or "nothing to do";
 * the rewriter only sees {@link AdapterResult}.
 */

import type { AdapterConfig as AdapterConfigSchema } from "@moss/config";
import { StageName } from "@moss/contracts";
import type { z } from "zod";
import type { ProcessOptions, ProcessRun, runProcess } from "./process";

/** The rewriter's stages, in order (the contracts' `StageName`). Only `implement` may change files. */
export type Stage = StageName;

export const STAGES: readonly Stage[] = StageName.options;

/** One run of a tool for one stage. */
export interface StageInvocation {
  stage: Stage;
  /** The git worktree the tool works in (its cwd). */
  worktree: string;
  /** The evidence JSON file (outside the worktree). */
  evidencePath: string;
  /** The stage's prompt, markdown (outside the worktree). */
  promptPath: string;
  /**
   * Where the stage's final answer text ends up. Removed before the run (a stale answer must not pass for this
   * run's); the adapter writes the tool's final message there when the tool does not write it itself.
   */
  outputPath: string;
  /** Hard limit: the tool's whole process group is killed when it runs out. */
  timeoutMs: number;
  /** The tool's entire environment, already allow-listed by the caller. */
  env: Record<string, string>;
  /** The unprivileged uid/gid the tool runs as (the sandbox's); unset: the rewriter's own. */
  runAs?: { uid: number; gid: number };
  /** How the tool's process is run (the container sandbox runs it in a container); unset: {@link runProcess}. */
  exec?: (argv: readonly string[], opts: ProcessOptions) => Promise<ProcessRun>;
}

export interface AdapterResult {
  /**
   * `success`: the tool says it did the stage; `failure`: it could not start, exited non-zero, reported an error
   * (even with exit 0), or printed something its preset cannot read; `no-change`: the tool's own "nothing to do"
   * signal; `timeout`: killed at `timeoutMs`.
   */
  outcome: "success" | "failure" | "no-change" | "timeout";
  /** In words, for the audit trail. */
  reason: string;
  /** Captured stdout+stderr, interleaved, capped (head and tail kept). */
  output: string;
  /** The tool's final answer text (also written to `outputPath`). */
  message?: string;
  exitCode: number | null;
  durationMs: number;
}

export interface CodingAgentAdapter {
  /** "command", "claude-code", "codex", "aider", "opencode" or "symbolic". */
  readonly name: string;
  /** The tool's version (`<bin> --version`, run once and cached); undefined when unknown. */
  version(): Promise<string | undefined>;
  /** Runs one stage. Never throws for anything the tool does; every problem is an outcome with a reason. */
  run(inv: StageInvocation): Promise<AdapterResult>;
}

/** Presets that drive an LLM coding CLI in its headless mode. */
export type ToolPreset = "claude-code" | "codex" | "aider" | "opencode";

/**
 * A coding-agent configuration as `rewriter.adapter` takes it (@moss/config's schema, documented there; defaulted
 * fields may be left out): a preset for a known tool's headless mode, any command (argv template with `{worktree}`
 * `{evidence}` `{prompt}` `{output}` `{stage}`), or the deterministic symbolic patcher (a directory of rule files,
 * applied in file-name order).
 */
export type AdapterConfig = z.input<typeof AdapterConfigSchema>;
