/**
 * Consent by risk: a candidate that passed replay is promoted without an operator only when a rule of
 * `promoter.approval.rules` says so — by what the patch touches (files, lines, paths) and by the replay's evidence
 * (failures fixed, regressions replayed). The first rule that holds decides, and the verdict names it; none holding
 * leaves the batch awaiting approval, with why each rule did not hold.
 */
import picomatch from "picomatch";

export interface ApprovalRule {
  name: string;
  maxFiles?: number;
  maxLines?: number;
  /** Every changed file must match one of these. */
  paths?: string[];
  /** No changed file may match any of these. */
  denyPaths?: string[];
  minFailuresFixed?: number;
  minRegressionsReplayed?: number;
}

export interface PatchFacts {
  files: string[];
  /** Lines added plus lines removed. */
  lines: number;
  failuresFixed: number;
  regressionsReplayed: number;
}

/** Files and changed lines of a unified diff (git's). */
export function patchFacts(diff: string): { files: string[]; lines: number } {
  const files = new Set<string>();
  let lines = 0;
  for (const line of diff.split("\n")) {
    if (line.startsWith("diff --git ")) {
      const m = / b\/(.+)$/.exec(line);
      if (m) files.add(m[1]!);
    } else if ((line.startsWith("+") && !line.startsWith("+++")) || (line.startsWith("-") && !line.startsWith("---"))) lines++;
  }
  return { files: [...files].sort(), lines };
}

/** Why a rule does not hold for these facts; undefined when it holds. */
function whyNot(rule: ApprovalRule, f: PatchFacts): string | undefined {
  if (rule.maxFiles !== undefined && f.files.length > rule.maxFiles) return `${f.files.length} files changed, over ${rule.maxFiles}`;
  if (rule.maxLines !== undefined && f.lines > rule.maxLines) return `${f.lines} lines changed, over ${rule.maxLines}`;
  if (rule.paths?.length) {
    const ok = picomatch(rule.paths, { dot: true });
    const out = f.files.find((p) => !ok(p));
    if (out) return `${out} is outside ${rule.paths.join(", ")}`;
  }
  if (rule.denyPaths?.length) {
    const bad = picomatch(rule.denyPaths, { dot: true });
    const hit = f.files.find((p) => bad(p));
    if (hit) return `${hit} is under ${rule.denyPaths.join(", ")}`;
  }
  if (rule.minFailuresFixed !== undefined && f.failuresFixed < rule.minFailuresFixed) return `${f.failuresFixed} failure(s) fixed, fewer than ${rule.minFailuresFixed}`;
  if (rule.minRegressionsReplayed !== undefined && f.regressionsReplayed < rule.minRegressionsReplayed) return `${f.regressionsReplayed} recorded success(es) replayed, fewer than ${rule.minRegressionsReplayed}`;
  return undefined;
}

/** The rule that approves the candidate (its name), or why none does. */
export function decideConsent(rules: readonly ApprovalRule[], f: PatchFacts): { approvedBy: string } | { waiting: string } {
  const misses: string[] = [];
  for (const r of rules) {
    const why = whyNot(r, f);
    if (!why) return { approvedBy: `policy:${r.name}` };
    misses.push(`${r.name}: ${why}`);
  }
  return { waiting: misses.length ? `no approval rule holds (${misses.join("; ")})` : "no approval rule is configured (promoter.approval.rules)" };
}
