/**
 * `moss bisect`, run by the rewriter (it has the repository and builds the images): the versions between an older end
 * and a newer one along the newer's first-parent line, halved by replaying the failure at the middle one — one
 * time-travel replay per step, each a record of its own (`moss replay --id`) — until the first version that behaves
 * like the newer end is found: where the failure starts happening, or with `fixed` where it stops. ⌈log2 n⌉ replays
 * for n versions; the ends are taken as given, not replayed. A step whose replay cannot say (it could not run, it
 * diverged, it was flaky) ends the bisect with that step's reason.
 */
import type { BisectStore } from "@moss/batch";
import { Messages, type BisectRecord, type BisectRequest, type TimeTravelDone } from "@moss/contracts";
import { isTerminal } from "@moss/errors";
import { commitInfo, commitsBetween, isAncestor } from "@moss/git";
import { readyImage, resolveVersion, UnknownVersionError, type VersionDeps } from "./versions";

export interface BisectDeps extends VersionDeps {
  bisects: BisectStore;
}

/** Most versions one bisect walks. */
export const MAX_BISECT_VERSIONS = 5_000;

export async function onBisect(msg: BisectRequest, deps: BisectDeps): Promise<void> {
  const cur = await deps.bisects.get(msg.id);
  // Started already (a redelivery): make sure its step in flight was asked for; each step's result carries it on.
  if (cur?.state === "bisecting") return advance(cur, deps);
  if (cur && cur.state !== "requested") return;
  try {
    const { repo } = deps.agent(msg.agent);
    const goodCommit = await resolveVersion(msg.agent, msg.good, repo, deps.deployments);
    const badCommit = await resolveVersion(msg.agent, msg.bad, repo, deps.deployments);
    if (!(await isAncestor(repo, goodCommit, badCommit))) {
      throw new UnknownVersionError(`--good ${msg.good} (${goodCommit.slice(0, 12)}) is not an ancestor of --bad ${msg.bad} (${badCommit.slice(0, 12)}): --good names the older end and --bad the newer, on one line of history`);
    }
    const commits = await commitsBetween(repo, goodCommit, badCommit);
    if (commits.length === 0) throw new UnknownVersionError(`--good ${msg.good} and --bad ${msg.bad} are the same version: there is nothing between them to bisect`);
    if (commits.length > MAX_BISECT_VERSIONS) throw new UnknownVersionError(`there are ${commits.length} versions between --good ${msg.good} and --bad ${msg.bad}, over the ${MAX_BISECT_VERSIONS} one bisect walks: narrow the range`);
    const rec = await deps.bisects.update(msg.id, () => ({ state: "bisecting", goodCommit, badCommit, commits, lo: -1, hi: commits.length - 1 }));
    deps.log.info("bisect started", { bisect: msg.id, agent: msg.agent, versions: commits.length });
    if (rec) await advance(rec, deps);
  } catch (err) {
    if (!isTerminal(err)) throw err;
    await deps.bisects.update(msg.id, () => ({ state: "failed", error: (err as Error).message }));
  }
}

/** A step's replay came back: which half the failure's change is in, then the next step or the answer. */
export async function onBisectStepDone(msg: TimeTravelDone, deps: BisectDeps): Promise<void> {
  const at = msg.requestId.lastIndexOf("s");
  if (at <= 0 || !/^\d+$/.test(msg.requestId.slice(at + 1))) return; // a replay of its own, not a bisect's step
  const rec = await deps.bisects.get(msg.requestId.slice(0, at));
  const n = Number(msg.requestId.slice(at + 1));
  const step = rec?.steps[n - 1];
  if (!rec || rec.state !== "bisecting" || !step || step.replay !== msg.requestId) return;
  // Applied already (a redelivery): the step after it may not have been asked for yet.
  if (step.failed !== undefined) return advance(rec, deps);
  const r = msg.results[0];
  const decided = r && !msg.error && (r.verdict === undefined || r.verdict === "pass" || r.verdict === "fail" || r.verdict === "timeout");
  if (!decided) {
    const why = msg.error ?? (r ? `${r.verdict}: ${r.reason}` : "no result");
    await deps.bisects.update(rec.id, (cur) => ({ state: "failed", steps: cur.steps.map((s, i) => (i === n - 1 ? { ...s, reason: why.slice(0, 2_000) } : s)), error: `step ${n} at ${step.commit.slice(0, 12)} could not tell whether the failure happens there (${why}): bisect a narrower range, or replay that version (moss replay --id ${msg.requestId})` }));
    return;
  }
  const failed = !r.passed;
  // Behaves like the newer end: the failure happens (or, bisecting a fix, no longer does).
  const likeBad = rec.fixed ? !failed : failed;
  const idx = rec.commits.indexOf(step.commit);
  const next = await deps.bisects.update(rec.id, (cur) =>
    cur.steps[n - 1]?.failed !== undefined
      ? undefined
      : {
          lo: likeBad ? cur.lo : idx,
          hi: likeBad ? idx : cur.hi,
          steps: cur.steps.map((s, i) => (i === n - 1 ? { ...s, failed, ...(r.verdict ? { verdict: r.verdict } : {}), reason: r.reason.slice(0, 2_000) } : s)),
        },
  );
  deps.log.info("bisect step", { bisect: rec.id, step: n, commit: step.commit, failed });
  if (next) await advance(next, deps);
}

/**
 * The answer once the halves meet; else the step in flight (or a new one at the middle version): its image built or
 * reused, its replay asked for. Safe to call again: a step is added once, its replay's record made once, and its
 * ready message stored once.
 */
async function advance(rec: BisectRecord, deps: BisectDeps): Promise<void> {
  const { repo } = deps.agent(rec.agent);
  try {
    if (rec.hi - rec.lo <= 1) {
      const commit = rec.commits[rec.hi]!;
      const info = await commitInfoOrBlank(repo, commit);
      await deps.bisects.update(rec.id, () => ({ state: "done", first: { commit, ...info } }));
      deps.log.info("bisect done", { bisect: rec.id, first: commit, replays: rec.steps.length });
      return;
    }
    let step = rec.steps.at(-1);
    if (!step || step.failed !== undefined) {
      const commit = rec.commits[Math.floor((rec.lo + rec.hi) / 2)]!;
      const n = rec.steps.length + 1;
      const { subject } = await commitInfoOrBlank(repo, commit);
      const started = await deps.bisects.update(rec.id, (cur) => (cur.steps.length === n - 1 ? { steps: [...cur.steps, { n, commit, subject: subject.slice(0, 500), replay: `${rec.id}s${n}` }] } : undefined));
      step = started?.steps[n - 1];
      if (!step || step.failed !== undefined) return;
    }
    const { n, commit, replay } = step;
    const { image, built, buildMs } = await readyImage(rec.agent, commit, repo, deps);
    const at = new Date().toISOString();
    await deps.travels.create({ id: replay, agent: rec.agent, version: commit, by: rec.by, at, state: "replaying", cases: [rec.failure], commit, image, built, buildMs, results: [], regressions: [], updatedAt: at });
    await deps.bisects.update(rec.id, (cur) => (cur.steps[n - 1]?.built === undefined ? { steps: cur.steps.map((s, i) => (i === n - 1 ? { ...s, built } : s)) } : undefined));
    await deps.publish(Messages.timeTravelReady, { id: replay, agent: rec.agent, version: commit, cases: [rec.failure], by: rec.by, at, commit, image, built, buildMs });
  } catch (err) {
    if (!isTerminal(err)) throw err;
    await deps.bisects.update(rec.id, () => ({ state: "failed", error: `step ${rec.steps.length + 1}: ${(err as Error).message}` }));
  }
}

const commitInfoOrBlank = (repo: string, commit: string) => commitInfo(repo, commit).catch(() => ({ subject: "", author: "", date: "" }));
