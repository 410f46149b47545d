/**
 * The reviewed baseline and the semantic diff, answered by the rewriter (it has the repository): `moss mark-reviewed`
 * records the version a human reviewed (KV `moss_reviewed`, and the tag `moss/reviewed/<agent>` in the agent's
 * repository); `moss diff` compares a version (default the live one) with it — the Moss commits in between with their
 * batch, attempt and verdict, the human ones, the files, and the functions, classes and methods changed, each flagged
 * with the review areas of the agent's config it falls in.
 */
import { execFile } from "node:child_process";
import type { BatchStore, ProgressStore } from "@moss/batch";
import { kvGet, type KV } from "@moss/bus";
import { Messages, ReviewedBaseline, type ReviewDiff, type ReviewReconcile, type ReviewRecord, type ReviewRequest } from "@moss/contracts";
import { isTerminal } from "@moss/errors";
import { commitInfo, commitsBetween, commitTrailers, GitCommandError, isAncestor, runGit } from "@moss/git";
import { semanticDiff, type ReviewAreas } from "@moss/review";
import { resolveVersion, UnknownVersionError, type VersionDeps } from "./versions";

export interface ReviewDeps extends Omit<VersionDeps, "agent"> {
  agent(name: string): { repo: string; areas: ReviewAreas; mainBranch: string };
  reviewed: KV;
  reviews: ProgressStore<ReviewRecord>;
  batches: Pick<BatchStore, "get">;
}

const MAX_FILES = 300;
const MAX_UNITS = 200;

/** The tag that marks an agent's reviewed baseline in its repository. */
export const reviewedTag = (agent: string) => `moss/reviewed/${agent}`;

export async function onReview(msg: ReviewRequest, deps: ReviewDeps): Promise<void> {
  const cur = await deps.reviews.get(msg.id);
  if (cur && cur.state !== "requested") return; // answered already
  const log = deps.log.child({ review: msg.id, kind: msg.kind, agent: msg.agent });
  try {
    const { repo, areas, mainBranch } = deps.agent(msg.agent);
    const commit = await resolveVersion(msg.agent, msg.version, repo, deps.deployments);
    const baseline = msg.kind === "mark-reviewed" ? undefined : (await kvGet(deps.reviewed, msg.agent, ReviewedBaseline))?.value;
    let summary: string;
    if (msg.kind === "mark-reviewed") {
      const tag = reviewedTag(msg.agent);
      await runGit(repo, ["tag", "-f", tag, commit]);
      const reviewed: ReviewedBaseline = { agent: msg.agent, commit, by: msg.by, at: msg.at, tag };
      await deps.reviewed.put(msg.agent, JSON.stringify(ReviewedBaseline.parse(reviewed)));
      await deps.reviews.update(msg.id, () => ({ state: "done", reviewed }));
      summary = `${commit.slice(0, 12)} marked reviewed by ${msg.by} (tag ${tag})`;
    } else if (msg.kind === "reconcile") {
      const r = await reconcile(repo, msg.agent, mainBranch, commit, baseline, deps);
      await deps.reviews.update(msg.id, () => ({ state: "done", reconcile: r }));
      summary = r.commits.length === 0
        ? `${mainBranch} already has everything in ${commit.slice(0, 12)}`
        : r.clean
          ? `${mainBranch} takes ${r.commits.length} commit(s) cleanly: branch ${r.branch} prepared`
          : `${r.conflicts.length} file(s) conflict between ${mainBranch} and ${commit.slice(0, 12)}: listed for review, nothing changed`;
      if (r.flagged.length) summary += `; ${r.flagged.length} human commit(s) on ${mainBranch} touch files Moss changed since the reviewed baseline`;
    } else {
      if (!baseline) throw new UnknownVersionError(`agent ${msg.agent} has no reviewed baseline yet: \`moss mark-reviewed ${msg.agent} COMMIT\` records the last version a human reviewed`);
      const diff = await diffAgainst(repo, baseline, msg.version, commit, areas, deps);
      await deps.reviews.update(msg.id, () => ({ state: "done", diff }));
      const flagged = Object.entries(diff.flagged).map(([a, n]) => `${n} in ${a}`);
      summary = `${diff.commits.filter((c) => c.batchId).length} Moss commit(s), ${diff.commits.filter((c) => !c.batchId).length} human, ${diff.files.length} file(s) since ${baseline.commit.slice(0, 12)}${flagged.length ? `; flagged: ${flagged.join(", ")}` : ""}`;
    }
    log.info(summary);
    await deps.publish(Messages.reviewDone, { requestId: msg.id, kind: msg.kind, agent: msg.agent, version: msg.version, commit, by: msg.by, summary, at: new Date().toISOString() });
  } catch (err) {
    if (!isTerminal(err)) throw err;
    const error = (err as Error).message;
    await deps.reviews.update(msg.id, () => ({ state: "failed", error }));
    await deps.publish(Messages.reviewDone, { requestId: msg.id, kind: msg.kind, agent: msg.agent, version: msg.version, by: msg.by, error, summary: `failed: ${error}`.slice(0, 2_000), at: new Date().toISOString() });
  }
}

async function diffAgainst(repo: string, baseline: ReviewedBaseline, version: string, commit: string, areas: ReviewAreas, deps: ReviewDeps): Promise<ReviewDiff> {
  const descends = await isAncestor(repo, baseline.commit, commit);
  const from = descends ? baseline.commit : (await runGit(repo, ["merge-base", baseline.commit, commit])).trim();
  const commits = await commitRows(repo, await commitsBetween(repo, from, commit), deps);
  const all = await semanticDiff(repo, baseline.commit, commit, areas);
  const truncated = all.length > MAX_FILES || all.some((f) => (f.symbols?.length ?? 0) > MAX_UNITS);
  const files = all.slice(0, MAX_FILES).map((f) => ({ ...f, ...(f.symbols ? { symbols: f.symbols.slice(0, MAX_UNITS) } : {}) }));
  const flagged: Record<string, number> = {};
  for (const f of files) {
    for (const a of f.areas) flagged[a] = (flagged[a] ?? 0) + 1;
    for (const u of f.symbols ?? []) for (const a of u.areas) if (!f.areas.includes(a)) flagged[a] = (flagged[a] ?? 0) + 1;
  }
  return { baseline, version, commit, descends, commits, files, flagged, truncated };
}

/** Each commit as a review lists it: a Moss one (its trailers) with its batch, attempt and the batch's state now. */
async function commitRows(repo: string, shas: readonly string[], deps: Pick<ReviewDeps, "batches">): Promise<ReviewDiff["commits"]> {
  const rows: ReviewDiff["commits"] = [];
  for (const sha of shas.slice(-500)) {
    const [info, trailers] = await Promise.all([commitInfo(repo, sha), commitTrailers(repo, sha)]);
    const batchId = trailers["Moss-Batch"]?.[0];
    const attempt = Number(trailers["Moss-Attempt"]?.[0]);
    const rec = batchId ? await deps.batches.get(batchId).catch(() => undefined) : undefined;
    rows.push({ commit: sha, ...info, ...(batchId ? { batchId } : {}), ...(attempt > 0 ? { attempt } : {}), ...(rec ? { verdict: rec.state } : {}) });
  }
  return rows;
}

/** A commit Moss made: it carries the batch it was made for. */
const isMossCommit = async (repo: string, sha: string) => Boolean((await commitTrailers(repo, sha))["Moss-Batch"]?.length);
const revList = async (repo: string, range: string, paths: readonly string[] = []) =>
  (await runGit(repo, ["rev-list", "--reverse", range, ...(paths.length ? ["--", ...paths] : [])])).split("\n").filter(Boolean);
const filesOf = async (repo: string, sha: string) => (await runGit(repo, ["diff-tree", "--no-commit-id", "--name-only", "-r", "--root", "-m", sha])).split("\n").filter(Boolean);

/** The branch `moss reconcile` prepares for an agent: off main, bringing the live line in. */
export const reconcileBranch = (agent: string) => `moss/reconcile/${agent}`;

/**
 * The live line against main: what main lacks; whether a merge would be clean (`git merge-tree`, no worktree touched);
 * clean, a branch off main with the merge, and its merge request; in conflict, the files and the commits on each side,
 * with nothing changed. And the human commits on main since the reviewed baseline that touch what Moss changed since.
 */
async function reconcile(repo: string, agent: string, mainBranch: string, live: string, baseline: ReviewedBaseline | undefined, deps: ReviewDeps): Promise<ReviewReconcile> {
  const main = await resolveVersion(agent, `refs/heads/${mainBranch}`, repo, deps.deployments).catch(() => {
    throw new UnknownVersionError(`agent ${agent}'s repository ${repo} has no branch ${mainBranch}: set agents.${agent}.review.mainBranch to the branch people maintain it on`);
  });
  const lacking = await revList(repo, `${main}..${live}`);
  const commits = await commitRows(repo, lacking, deps);
  // Where main and the live line parted; what Moss changed since the reviewed baseline (or, without one, since then).
  const mb = (await runGit(repo, ["merge-base", main, live])).trim();
  const since = baseline?.commit ?? mb;
  const mossFiles = new Set<string>();
  for (const sha of await revList(repo, `${since}..${live}`)) if (await isMossCommit(repo, sha)) for (const f of await filesOf(repo, sha)) mossFiles.add(f);
  const flagged: ReviewReconcile["flagged"] = [];
  for (const sha of await revList(repo, `${since}..${main}`)) {
    if (await isMossCommit(repo, sha)) continue;
    const touched = (await filesOf(repo, sha)).filter((f) => mossFiles.has(f));
    if (touched.length) {
      const { subject, author } = await commitInfo(repo, sha);
      flagged.push({ commit: sha, subject, author, files: touched });
    }
  }
  const base = { main: { branch: mainBranch, commit: main }, live, commits, flagged };
  if (lacking.length === 0) return { ...base, clean: true, conflicts: [] };
  const merged = await mergeTree(repo, main, live);
  if (merged.code === 1) {
    // Exit 1: conflicts. The first line is the tree, then the conflicting paths (NUL-separated with -z).
    const paths = merged.out.split("\0").slice(1).filter(Boolean);
    const conflicts = [];
    for (const path of paths) conflicts.push({ path, live: await revList(repo, `${mb}..${live}`, [path]), main: await revList(repo, `${mb}..${main}`, [path]) });
    return { ...base, clean: false, conflicts };
  }
  if (merged.code !== 0) throw new GitCommandError(["merge-tree", "--write-tree", main, live], repo, merged.err || merged.out);
  const tree = merged.out.split("\0")[0]!.trim();
  const message = mergeRequest(agent, mainBranch, live, commits, flagged);
  const who = ["-c", "user.name=Moss", "-c", "user.email=moss@localhost"];
  const branchCommit = (await runGit(repo, [...who, "commit-tree", tree, "-p", main, "-p", live, "-m", message.split("\n")[0]!, "-m", message.split("\n").slice(2).join("\n")])).trim();
  await runGit(repo, ["branch", "-f", reconcileBranch(agent), branchCommit]);
  return { ...base, clean: true, branch: reconcileBranch(agent), branchCommit, mergeRequest: message, conflicts: [] };
}

/** `git merge-tree --write-tree` (no worktree, no index touched): exit 0 clean, 1 with conflicts, else an error. */
function mergeTree(repo: string, ours: string, theirs: string): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile("git", ["-C", repo, "-c", "core.hooksPath=/dev/null", "merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", ours, theirs], { maxBuffer: 16 * 2 ** 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 2) : 0, out: stdout, err: stderr });
    });
  });
}

function mergeRequest(agent: string, mainBranch: string, live: string, commits: ReviewDiff["commits"], flagged: ReviewReconcile["flagged"]): string {
  const lines = [`Bring ${agent}'s live version ${live.slice(0, 12)} into ${mainBranch}`, "", `${commits.length} commit(s) ${mainBranch} does not have yet:`];
  for (const c of commits) lines.push(`- ${c.commit.slice(0, 12)} ${c.subject}${c.batchId ? ` (Moss: batch ${c.batchId}, attempt ${c.attempt ?? "?"}, ${c.verdict ?? "verdict unknown"})` : ` (${c.author})`}`);
  if (flagged.length) {
    lines.push("", `Human commits on ${mainBranch} that touch files Moss changed since the reviewed baseline — look at these together:`);
    for (const f of flagged) lines.push(`- ${f.commit.slice(0, 12)} ${f.subject} (${f.author}): ${f.files.join(", ")}`);
  }
  lines.push("", `Prepared by moss reconcile as branch ${reconcileBranch(agent)}; merging it changes nothing live — the next deployment from ${mainBranch} is an explicit \`moss deploy ${agent}\`.`);
  return lines.join("\n");
}
