import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { BlobStore } from "@moss/blob";
import type { Stages, Tier } from "@moss/config";
import type { CandidateFailed, StageRecord } from "@moss/contracts";
import { resetWorktree, restoreStaged, stagedChange, worktreeState } from "@moss/git";
import type { Logger } from "@moss/telemetry";
import type { AdapterResult, CodingAgentAdapter, Stage } from "./adapters";
import { checkGuardrails, guardrailsReason, type GuardrailConfig } from "./guardrails";
import { codeReviewPrompt, implementPrompt, locatePrompt, parseReview, planPrompt, planReviewPrompt, type PromptContext } from "./prompts";

export interface PipelineDeps {
  adapter: CodingAgentAdapter;
  stages: Stages;
  tier: Tier;
  timeoutMs: number;
  env: Record<string, string>;
  guardrails: Partial<GuardrailConfig>;
  blob: BlobStore;
  log: Logger;
  /**
   * Asked before every stage: throws when the attempt is no longer wanted (its batch was rejected meanwhile), so a
   * paid coding agent is not run again for a batch that has ended.
   */
  stillWanted?: () => Promise<void>;
}

export interface AttemptContext {
  worktree: string;
  /** The commit the attempt starts from: every reset goes back here. */
  base: string;
  /** Where this attempt's stage prompts and outputs are written (outside the worktree). */
  dir: string;
  evidencePath: string;
  basePrompt: string;
}

export type PipelineResult =
  | { ok: true; stages: StageRecord[]; filesChanged: string[]; tree: string }
  | { ok: false; verdict: CandidateFailed["verdict"]; reason: string; stages: StageRecord[] };

/**
 * One attempt's stages: locate → plan ⇄ plan review → implement ⇄ code review, each an invocation of the coding
 * agent with its own prompt and output file. Diagnosis and review stages may not change the code (the worktree is
 * put back after them); every implementation passes the guardrails before review sees it; a rejected
 * implementation is thrown away (worktree reset to the attempt's start) before the next round.
 * On `ok`, the worktree holds the approved change, staged.
 */
export async function runStages(ctx: AttemptContext, deps: PipelineDeps): Promise<PipelineResult> {
  mkdirSync(ctx.dir, { recursive: true });
  const stages: StageRecord[] = [];
  const pc: PromptContext = { base: ctx.basePrompt, evidencePath: ctx.evidencePath };
  const fail = (verdict: CandidateFailed["verdict"], reason: string): PipelineResult => ({ ok: false, verdict, reason, stages });
  const toolFailed = (r: AdapterResult, stage: Stage) =>
    fail(r.outcome === "timeout" ? "agent-timeout" : "agent-failed", `${stage}: ${r.reason}`);

  /** Runs one stage; records it; returns the tool's result and its answer text. */
  const call = async (stage: Stage, round: number, prompt: string): Promise<{ r: AdapterResult; text: string }> => {
    const stem = join(ctx.dir, `${stage}-${round}`);
    const promptPath = `${stem}.prompt.md`;
    const outputPath = `${stem}.out.md`;
    writeFileSync(promptPath, prompt);
    await deps.stillWanted?.();
    deps.log.info("stage", { stage, round });
    const r = await deps.adapter.run({ stage, worktree: ctx.worktree, evidencePath: ctx.evidencePath, promptPath, outputPath, timeoutMs: deps.timeoutMs, env: deps.env });
    const text = r.message ?? (existsSync(outputPath) ? readFileSync(outputPath, "utf8") : "");
    stages.push({
      stage,
      round,
      verdict: r.outcome,
      reason: r.reason,
      output: text ? await deps.blob.put(text, { contentType: "text/markdown" }) : undefined,
      log: r.output ? await deps.blob.put(r.output, { contentType: "text/plain" }) : undefined,
      durationMs: r.durationMs,
    });
    return { r, text };
  };
  /** A review stage's verdict replaces the tool's outcome in the record. */
  const judged = (approve: boolean, reason: string) => {
    const last = stages[stages.length - 1]!;
    last.verdict = approve ? "approve" : "reject";
    last.reason = reason;
  };

  let diagnosis = "";
  if (deps.stages.locate) {
    const { r, text } = await call("locate", 1, locatePrompt(pc));
    await restore(ctx, "locate", stages);
    if (r.outcome === "failure" || r.outcome === "timeout") return toolFailed(r, "locate");
    diagnosis = text;
  }

  let plan = "";
  if (deps.stages.plan) {
    let rejection: string | undefined;
    for (let round = 1; round <= deps.tier.planRounds; round++) {
      const p = await call("plan", round, planPrompt(pc, diagnosis, rejection));
      await restore(ctx, "plan", stages);
      if (p.r.outcome === "failure" || p.r.outcome === "timeout") return toolFailed(p.r, "plan");
      plan = p.text;
      if (!deps.stages.planReview) break;
      const rv = await call("plan-review", round, planReviewPrompt(pc, plan));
      await restore(ctx, "plan-review", stages);
      if (rv.r.outcome === "failure" || rv.r.outcome === "timeout") return toolFailed(rv.r, "plan-review");
      const v = parseReview(rv.text);
      judged(v.approve, v.reason);
      if (v.approve) break;
      rejection = v.reason;
      if (round === deps.tier.planRounds) return fail("plan-rejected", `plan rejected ${round} time(s); last: ${v.reason}`);
    }
  }

  const reviewRounds = deps.stages.codeReview ? deps.tier.reviewRounds : 0;
  let feedback: string | undefined;
  for (let round = 1; round <= Math.max(1, reviewRounds); round++) {
    if (round > 1) await resetWorktree(ctx.worktree, ctx.base);
    const impl = await call("implement", round, implementPrompt(pc, plan, feedback));
    if (impl.r.outcome === "failure" || impl.r.outcome === "timeout") return toolFailed(impl.r, "implement");
    const report = await checkGuardrails(ctx.worktree, ctx.base, deps.guardrails);
    if (report.files.length === 0) {
      return fail("no-change", impl.r.outcome === "no-change" ? `the coding agent reported no change: ${impl.r.reason}` : "the coding agent finished but changed no file");
    }
    if (!report.ok) return fail("guardrail", `the change breaks the guardrails: ${guardrailsReason(report)}`);
    const filesChanged = report.files.map((f) => f.path);
    if (reviewRounds === 0) return { ok: true, stages, filesChanged, tree: report.tree };

    // The reviewer must not change what it reviews: remember the staged tree and put it back afterwards.
    const { tree, diff } = await stagedChange(ctx.worktree, ctx.base);
    const rv = await call("code-review", round, codeReviewPrompt(pc, plan, diff));
    // Even a reviewer that committed is undone: HEAD back to the base, the reviewed tree back in place.
    await restoreStaged(ctx.worktree, ctx.base, tree);
    if (rv.r.outcome === "failure" || rv.r.outcome === "timeout") return toolFailed(rv.r, "code-review");
    const v = parseReview(rv.text);
    judged(v.approve, v.reason);
    if (v.approve) return { ok: true, stages, filesChanged, tree: report.tree };
    feedback = v.reason;
    if (round === reviewRounds) return fail("review-rejected", `code review rejected ${round} implementation(s); last: ${v.reason}`);
  }
  return fail("error", "no implementation round ran");
}

/** After a diagnosis or review stage: anything it changed is thrown away, and the record says so. */
async function restore(ctx: AttemptContext, stage: Stage, stages: StageRecord[]): Promise<void> {
  // A stage that committed its edits leaves a clean status but a moved HEAD.
  const { head, dirty } = await worktreeState(ctx.worktree);
  if (!dirty && head === ctx.base) return;
  await resetWorktree(ctx.worktree, ctx.base);
  const last = stages[stages.length - 1];
  if (last?.stage === stage) last.reason = `${last.reason} (its edits were discarded: ${stage} may not change the code)`;
}
