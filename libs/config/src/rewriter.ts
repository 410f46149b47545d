import { z } from "zod";

/** The coding agent: a preset for a known tool's headless mode, any command, or the deterministic symbolic patcher. */
export const AdapterConfig = z.discriminatedUnion("preset", [
  z.object({
    preset: z.literal("command"),
    /** argv template: `{worktree}`, `{evidence}`, `{prompt}`, `{output}`, `{stage}` are replaced. */
    command: z.array(z.string().min(1)).min(1),
  }),
  z.object({
    preset: z.enum(["claude-code", "codex", "aider", "opencode"]),
    /** The tool's executable. Default: the tool's usual name on PATH. */
    bin: z.string().optional(),
    extraArgs: z.array(z.string()).default([]),
    model: z.string().optional(),
  }),
  z.object({
    preset: z.literal("symbolic"),
    /** Directory of rule files (JSON) matching fingerprints to patches or codemods. */
    rulesDir: z.string().min(1),
  }),
]);
export type AdapterConfig = z.infer<typeof AdapterConfig>;

/** What one depth of rewriting may spend. */
export const Tier = z.object({
  /** Attempts per batch before giving up. */
  maxAttempts: z.number().int().min(1).max(20),
  /** Plan → plan review rounds before the attempt is given up. */
  planRounds: z.number().int().min(1).max(10),
  /** Implement → code review rounds (the worktree is reset between rounds). 0: no code review. */
  reviewRounds: z.number().int().min(0).max(10),
  /** Replays per failure; every one must pass (a flaky pass is no pass). */
  trialsPerFailure: z.number().int().min(1).max(10),
});
export type Tier = z.infer<typeof Tier>;

export const DEFAULT_TIERS = {
  shallow: { maxAttempts: 1, planRounds: 1, reviewRounds: 0, trialsPerFailure: 1 },
  standard: { maxAttempts: 3, planRounds: 2, reviewRounds: 1, trialsPerFailure: 1 },
  deep: { maxAttempts: 5, planRounds: 3, reviewRounds: 2, trialsPerFailure: 3 },
} as const satisfies Record<string, Tier>;

/** Stages of an attempt besides `implement`, which always runs. All off: a plain "implement only" flow. */
export const Stages = z.object({
  /** Diagnosis only (the worktree is reset after it). Default true. */
  locate: z.boolean().default(true),
  /** Root cause, files to change, what to leave alone. Default true. */
  plan: z.boolean().default(true),
  /** Approve / reject the plan with a reason (bounded by the tier's planRounds). Default true. */
  planReview: z.boolean().default(true),
  /** Diff vs plan, approve / reject (bounded by the tier's reviewRounds). Default true. */
  codeReview: z.boolean().default(true),
});
export type Stages = z.infer<typeof Stages>;

/** Limits on what a coding agent may hand back; checked before anything is committed. */
export const Guardrails = z.object({
  /** If non-empty, every changed path must match one of these globs. Default: none. */
  allow: z.array(z.string()).default([]),
  /** Extra forbidden globs, on top of the built-in ones (.git, Moss config, CI files, replay fixtures, evaluators). */
  forbid: z.array(z.string()).default([]),
  /** Max changed files. Default 10. */
  maxFiles: z.number().int().min(1).default(10),
  /** Max changed lines (added + deleted). Default 400. */
  maxLines: z.number().int().min(1).default(400),
  /** Accept binary files. Default false. */
  allowBinary: z.boolean().default(false),
  /** Extra secret patterns (regexes) on top of the built-in ones. */
  secretPatterns: z.array(z.string()).default([]),
});
export type Guardrails = z.infer<typeof Guardrails>;

export const Signing = z.object({
  /** SSH private key that signs Moss commits. Unset: commits are unsigned, and a promoter that requires signatures refuses them. */
  key: z.string().optional(),
  /** allowed_signers file (ssh-keygen format) the promoter verifies candidate commits against. */
  allowedSigners: z.string().optional(),
  /** Refuse to promote a commit whose signature is not good for an allowed signer. Default true. */
  required: z.boolean().default(true),
});
export type Signing = z.infer<typeof Signing>;
