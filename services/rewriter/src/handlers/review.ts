/**
 * The reviewed baseline and the semantic diff, answered by the rewriter (it has the repository): `moss mark-reviewed`
 * records the version a human reviewed (KV `moss_reviewed`, and the tag `moss/reviewed/<agent>` in the agent's
 * repository); `moss diff` compares a version (default the live one) with it — the Moss commits in between with their
 * batch, attempt and verdict, the human ones, the files, and the functions, classes and methods changed, each flagged
 * with the review areas of the agent's config it falls in.
 */
import { type BatchStore } from "@moss/batch";
import type { KV } from "@moss/bus";
import { kvGet } from "@moss/bus";
import { Messages, ReviewedBaseline, type ReviewDiff, type ReviewRequest } from "@moss/contracts";
import { isTerminal } from "@moss/errors";
import { commitInfo, commitTrailers, isAncestor, runGit } from "@moss/git";
import { semanticDiff, type ReviewAreas } from "@moss/review";
import type { ReviewRecord } from "@moss/contracts";
import type { ProgressStore } from "@moss/batch";
import { resolveVersion, UnknownVersionError, type VersionDeps } from "./versions";

export interface ReviewDeps extends Omit<VersionDeps, "agent"> {
  agent(name: string): { repo: string; areas: ReviewAreas };
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
    const { repo, areas } = deps.agent(msg.agent);
    const commit = await resolveVersion(msg.agent, msg.version, repo, deps.deployments);
    let summary: string;
    if (msg.kind === "mark-reviewed") {
      const tag = reviewedTag(msg.agent);
      await runGit(repo, ["tag", "-f", tag, commit]);
      const baseline: ReviewedBaseline = { agent: msg.agent, commit, by: msg.by, at: msg.at, tag };
      await deps.reviewed.put(msg.agent, JSON.stringify(ReviewedBaseline.parse(baseline)));
      await deps.reviews.update(msg.id, () => ({ state: "done", reviewed: baseline }));
      summary = `${commit.slice(0, 12)} marked reviewed by ${msg.by} (tag ${tag})`;
    } else {
      const baseline = (await kvGet(deps.reviewed, msg.agent, ReviewedBaseline))?.value;
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
  const shas = (await runGit(repo, ["rev-list", "--first-parent", "--reverse", `${from}..${commit}`])).split("\n").filter(Boolean);
  const commits: ReviewDiff["commits"] = [];
  for (const sha of shas.slice(-500)) {
    const [info, trailers] = await Promise.all([commitInfo(repo, sha), commitTrailers(repo, sha)]);
    const batchId = trailers["Moss-Batch"]?.[0];
    const attempt = Number(trailers["Moss-Attempt"]?.[0]);
    const rec = batchId ? await deps.batches.get(batchId).catch(() => undefined) : undefined;
    commits.push({ commit: sha, ...info, ...(batchId ? { batchId } : {}), ...(attempt > 0 ? { attempt } : {}), ...(rec ? { verdict: rec.state } : {}) });
  }
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
