// Stage prompts. The coding agent is a black box: Moss only says what each stage is for and where the evidence is.

export interface PromptContext {
  /** The attempt's base prompt (failures, previous attempts, rejected candidates). */
  base: string;
  evidencePath: string;
}

const footer = (c: PromptContext) => `\nThe full evidence (requests, errors, stacks, logs, env, earlier attempts) is in ${c.evidencePath}.\n`;

export function locatePrompt(c: PromptContext): string {
  return `${c.base}\n## Stage: locate (diagnosis only)\nFind the root cause and the code responsible. Do NOT edit any file: any change is discarded.\nAnswer with: the root cause in one paragraph, then the files and functions involved.\n${footer(c)}`;
}

export function planPrompt(c: PromptContext, diagnosis: string, rejection?: string): string {
  return [
    `${c.base}\n## Stage: plan`,
    diagnosis ? `Diagnosis from the locate stage:\n\n${diagnosis.trim()}\n` : "",
    rejection ? `Your previous plan was rejected by review: ${rejection.trim()}\nWrite a better plan.\n` : "",
    "Do NOT edit any file. Answer with a plan: the root cause, the files to change and how, and what to leave alone.",
    footer(c),
  ].join("\n");
}

export function planReviewPrompt(c: PromptContext, plan: string): string {
  return `${c.base}\n## Stage: plan review\nReview this plan against the evidence. Do NOT edit any file.\n\n${plan.trim()}\n\nAnswer on the FIRST line with exactly \`APPROVE\` or \`REJECT: <reason>\`; details may follow.\n${footer(c)}`;
}

export function implementPrompt(c: PromptContext, plan: string, reviewFeedback?: string): string {
  return [
    `${c.base}\n## Stage: implement`,
    plan ? `Implement this approved plan, and nothing beyond it:\n\n${plan.trim()}\n` : "Fix the root cause with the smallest change that makes every failing request succeed.",
    reviewFeedback ? `A code review rejected the previous implementation (the worktree was reset): ${reviewFeedback.trim()}\n` : "",
    "Edit the files in the current directory. Do not commit. Do not touch tests, replay fixtures, evaluators, CI files or Moss configuration.",
    footer(c),
  ].join("\n");
}

export function codeReviewPrompt(c: PromptContext, plan: string, diff: string): string {
  return `${c.base}\n## Stage: code review\nReview this diff${plan ? " against the plan" : ""}. Do NOT edit any file.\n${plan ? `\nPlan:\n\n${plan.trim()}\n` : ""}\nDiff:\n\n\`\`\`diff\n${diff}\n\`\`\`\n\nAnswer on the FIRST line with exactly \`APPROVE\` or \`REJECT: <reason>\`; details may follow.\n${footer(c)}`;
}

/** A review's verdict from the first non-empty line of its answer. Anything else is a rejection that says so. */
export function parseReview(text: string): { approve: boolean; reason: string } {
  const lines = text.split("\n").map((l) => l.trim());
  const first = lines.find((l) => l.length > 0) ?? "";
  const clean = first.replace(/^[#>*`\s-]+/, "");
  if (/^(APPROVE|APPROVED|LGTM)\b/i.test(clean)) return { approve: true, reason: clean };
  const m = /^(REJECT|REJECTED)\b[:\s-]*(.*)$/i.exec(clean);
  if (m) {
    const rest = lines.slice(lines.indexOf(first) + 1).filter(Boolean).join(" ");
    return { approve: false, reason: (m[2] || rest || "rejected without a reason").slice(0, 2_000) };
  }
  return { approve: false, reason: `the review gave no verdict (expected APPROVE or REJECT: <reason> on its first line): ${first.slice(0, 200)}` };
}
