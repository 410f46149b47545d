import { aider } from "./aider";
import { claudeCode } from "./claude-code";
import { codex } from "./codex";
import { commandAdapter } from "./command";
import { AdapterConfigError } from "../errors";
import { opencode } from "./opencode";
import { symbolicAdapter } from "./symbolic";
import { toolAdapter, type ToolSpec } from "./tool";
import type { AdapterConfig, CodingAgentAdapter, ToolPreset } from "./types";

export type { AdapterConfig, AdapterResult, CodingAgentAdapter, Stage, StageInvocation, ToolPreset } from "./types";
export { STAGES } from "./types";
export { AdapterConfigError } from "../errors";
export { renderTemplate } from "./command";
export { runProcess, type ProcessRun, type ProcessOptions } from "./process";

const TOOLS: Record<ToolPreset, ToolSpec> = { "claude-code": claudeCode, codex, aider, opencode };

export interface CreateAdapterOptions {
  /**
   * Environment of the one-off `<bin> --version` probe, which runs outside any invocation (default: this
   * process's PATH and HOME, enough to find and start the tool).
   */
  versionEnv?: Record<string, string>;
}

/**
 * The adapter for a configuration. Throws {@link AdapterConfigError} for a configuration that cannot work;
 * nothing is started until `version()` or `run()` is called.
 */
export function createAdapter(cfg: AdapterConfig, opts: CreateAdapterOptions = {}): CodingAgentAdapter {
  switch (cfg.preset) {
    case "command":
      if (!Array.isArray(cfg.command) || !cfg.command.length || !cfg.command[0]) {
        throw new AdapterConfigError("the 'command' preset needs a non-empty argv template, e.g. [\"my-agent\", \"--prompt\", \"{prompt}\"]");
      }
      return commandAdapter(cfg.command);
    case "symbolic":
      if (!cfg.rulesDir) throw new AdapterConfigError("the 'symbolic' preset needs 'rulesDir', the directory of its rule files");
      return symbolicAdapter(cfg.rulesDir);
    case "claude-code":
    case "codex":
    case "aider":
    case "opencode": {
      if (cfg.bin !== undefined && !cfg.bin) throw new AdapterConfigError(`'bin' of the '${cfg.preset}' preset is empty`);
      if (cfg.extraArgs !== undefined && (!Array.isArray(cfg.extraArgs) || cfg.extraArgs.some((a) => typeof a !== "string"))) {
        throw new AdapterConfigError(`'extraArgs' of the '${cfg.preset}' preset must be an array of strings`);
      }
      return toolAdapter(TOOLS[cfg.preset], {
        ...(cfg.bin !== undefined ? { bin: cfg.bin } : {}),
        ...(cfg.extraArgs !== undefined ? { extraArgs: cfg.extraArgs } : {}),
        ...(cfg.model !== undefined ? { model: cfg.model } : {}),
        versionEnv: opts.versionEnv ?? defaultVersionEnv(),
      });
    }
    default: {
      const preset: unknown = (cfg as { preset?: unknown }).preset;
      throw new AdapterConfigError(`unknown coding-agent preset '${String(preset)}': use command, claude-code, codex, aider, opencode or symbolic`);
    }
  }
}

function defaultVersionEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of ["PATH", "HOME"]) {
    const v = process.env[k];
    if (v !== undefined) env[k] = v;
  }
  return env;
}
