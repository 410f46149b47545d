import type { LoadedConfig } from "@moss/config";
import { ReviewRecord, type ReviewDiff, type ReviewReconcile } from "@moss/contracts";
import { followRecord, operatorGet, operatorPost, type Command } from "../shared";

/**
 * Asks the operator API to mark a version reviewed, or for the diff of a version against the reviewed baseline, and
 * follows the request until the rewriter answered it. Throws when the API refuses or nothing ends within `timeoutMs`.
 */
export async function requestReview(cfg: Readonly<LoadedConfig>, kind: ReviewRecord["kind"], agent: string, version: string, o: { timeoutMs?: number } = {}): Promise<ReviewRecord> {
  const a = encodeURIComponent(agent);
  const asked = kind === "diff" ? operatorGet(cfg, `/v1/agents/${a}/diff?version=${encodeURIComponent(version)}`) : operatorPost(cfg, `/v1/agents/${a}/${kind === "reconcile" ? "reconcile" : "reviewed"}`, { version });
  return followRecord(cfg, ReviewRecord.parse(await asked), {
    path: (id) => `/v1/reviews/${id}`,
    parse: (v) => ReviewRecord.parse(v),
    timeoutMs: o.timeoutMs ?? 120_000,
    pollMs: 200,
    stuck: (rec) => `${kind} ${rec.id} was not answered in time: is the rewriter running (moss status)?`,
  });
}

const MARK: Record<string, string> = { added: "+", removed: "-", changed: "~" };

/** A commit in a review's list: Moss's with its batch, attempt and verdict; a person's with its author. */
const commitLine = (c: ReviewDiff["commits"][number]) => `${c.commit.slice(0, 12)}  ${c.batchId ? `moss  batch ${c.batchId} attempt ${c.attempt ?? "?"} ${c.verdict ?? ""}`.trimEnd() : `human ${c.author}`}  "${c.subject}"`;

/**
 * `moss diff` and `moss reconcile`: the rewriter's answer for AGENT (and --version, default live), as text or `--json`;
 * a request it could not answer exits 2, else `code` of the answer.
 */
async function answerReview<K extends "diff" | "reconcile">(kind: K, { args, values, config }: Parameters<Command["run"]>[0], render: (agent: string, answer: NonNullable<ReviewRecord[K]>) => string[], code: (answer: NonNullable<ReviewRecord[K]>) => number): Promise<number> {
  const [agent] = args;
  if (!agent) throw new Error(`usage: moss ${kind} AGENT [--version VERSION]`);
  const rec = await requestReview(config(), kind, agent, (values["version"] as string | undefined) ?? "live");
  if (rec.state === "failed") {
    console.error(`${kind} failed: ${rec.error}`);
    return 2;
  }
  const answer = rec[kind]!;
  if (values["json"]) console.log(JSON.stringify(answer, null, 2));
  else for (const l of render(agent, answer)) console.log(l);
  return code(answer);
}

/** The diff as an operator reads it: what changed since the reviewed version, by whom, and what is flagged. */
export function renderDiff(agent: string, d: ReviewDiff): string[] {
  const b = d.baseline;
  const out = [`${agent}: ${d.version}${d.version.startsWith(d.commit.slice(0, 7)) ? "" : ` (${d.commit.slice(0, 12)})`} against the reviewed ${b.commit.slice(0, 12)} (marked by ${b.by}, ${b.at})`];
  if (!d.descends) out.push(`  note: ${d.commit.slice(0, 12)} does not descend from the reviewed version; commits are listed from their merge base`);
  const moss = d.commits.filter((c) => c.batchId);
  out.push("", `Commits since (${d.commits.length}: ${moss.length} by Moss, ${d.commits.length - moss.length} by people):`);
  for (const c of d.commits) out.push(`  ${commitLine(c)}`);
  out.push("", `Files (${d.files.length}):`);
  for (const f of d.files) {
    out.push(`  ${f.status === "added" ? "A" : f.status === "removed" ? "D" : "M"} ${f.path}${f.areas.length ? `   [${f.areas.join(", ")}]` : ""}${f.note ? `   (${f.note})` : ""}`);
    for (const u of f.symbols ?? []) out.push(`      ${MARK[u.change]} ${u.name} (${u.kind}, ${u.change})${u.areas.length ? `   ⚑ ${u.areas.join(", ")}` : ""}`);
  }
  const flagged = Object.entries(d.flagged);
  out.push("", flagged.length ? `Flagged: ${flagged.map(([a, n]) => `${n} change(s) in ${a}`).join(", ")} — review these first` : "Flagged: nothing in the areas agents.<name>.review.areas names");
  if (d.truncated) out.push("(more files or units than shown: at most 300 files and 200 units a file)");
  return out;
}

export const markReviewed: Command = {
  name: "mark-reviewed",
  help: "  mark-reviewed AGENT VERSION  record VERSION (a commit, tag, branch, live) as the last one a human reviewed: in KV, audited, tagged moss/reviewed/AGENT",
  async run({ args, config }) {
    const [agent, version] = args;
    if (!agent || !version) throw new Error("usage: moss mark-reviewed AGENT VERSION");
    const rec = await requestReview(config(), "mark-reviewed", agent, version);
    if (rec.state === "failed") {
      console.error(`mark-reviewed failed: ${rec.error}`);
      return 2;
    }
    console.log(`${agent}: ${rec.reviewed!.commit} is the reviewed baseline, marked by ${rec.reviewed!.by} at ${rec.reviewed!.at} (tag ${rec.reviewed!.tag})`);
    return 0;
  },
};

export const diffCmd: Command = {
  name: "diff",
  help: [
    "  diff AGENT [--version V]     the live version (or V) against the reviewed baseline: Moss and human commits, files,",
    "                               the functions, classes and methods changed, and what falls in review.areas",
    "      --json                     the answer as JSON",
  ].join("\n"),
  options: { version: { type: "string" }, json: { type: "boolean" } },
  run: (ctx) => answerReview("diff", ctx, renderDiff, () => 0),
};

/** A reconcile as an operator reads it: what main lacks, and the branch prepared or the conflicts to look at. */
export function renderReconcile(agent: string, r: ReviewReconcile): string[] {
  const out = [`${agent}: live ${r.live.slice(0, 12)} against ${r.main.branch} (${r.main.commit.slice(0, 12)})`];
  if (!r.commits.length) out.push(`  ${r.main.branch} already has everything that is live`);
  else {
    out.push(`  ${r.main.branch} lacks ${r.commits.length} commit(s):`);
    for (const c of r.commits) out.push(`    ${commitLine(c)}`);
  }
  if (r.commits.length && r.clean) out.push("", `Clean: branch ${r.branch} (${r.branchCommit?.slice(0, 12)}) is ${r.main.branch} with them merged in; merge it when you have read it. Merge request:`, ...(r.mergeRequest ?? "").split("\n").map((l) => `  | ${l}`));
  if (!r.clean) {
    out.push("", `CONFLICT: ${r.conflicts.length} file(s) — nothing was changed; resolve by hand:`);
    for (const c of r.conflicts) out.push(`    ${c.path}   live: ${c.live.map((x) => x.slice(0, 12)).join(", ") || "-"}   ${r.main.branch}: ${c.main.map((x) => x.slice(0, 12)).join(", ") || "-"}`);
  }
  if (r.flagged.length) {
    out.push("", `Flagged: human commits on ${r.main.branch} touching files Moss changed since the reviewed baseline:`);
    for (const f of r.flagged) out.push(`    ${f.commit.slice(0, 12)}  ${f.author}  "${f.subject}": ${f.files.join(", ")}`);
  }
  return out;
}

export const reconcileCmd: Command = {
  name: "reconcile",
  help: "  reconcile AGENT [--version V]  the live Moss line (or V) against the human main branch: a branch prepared off main when it merges cleanly, else the conflicts listed (nothing changed)",
  options: { version: { type: "string" }, json: { type: "boolean" } },
  run: (ctx) => answerReview("reconcile", ctx, renderReconcile, (r) => (r.clean ? 0 : 1)),
};
