/**
 * The rewriter's message handler: one attempt of a batch (batch.ready, batch.retry) → worktree at the failing version
 * → the coding agent's stages → guardrails → signed commit with trailers → candidate image.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BatchEndedError, branchName, imageTag, isFinal, type BatchStore, type CandidateStore } from "@moss/batch";
import type { BlobStore } from "@moss/blob";
import type { Guardrails, ResolvedAgent } from "@moss/config";
import { CandidateFailed, Messages, type BatchReady, type BatchRecord, type BatchRetry, type BlobRef, type Publish, type StageRecord } from "@moss/contracts";
import { isTerminal } from "@moss/errors";
import { NothingToCommitError, addWorktree, branchHead, changedFiles, commitSigned, diffBetween, foldOnto, removeWorktree, resetWorktree, resolveCommit, treeOf, type SigningConfig } from "@moss/git";
import type { Runtime } from "@moss/runtime";
import type { Logger } from "@moss/telemetry";
import type { z } from "zod";
import type { CodingAgentAdapter } from "../adapters";
import { NoCodingAgentError } from "../errors";
import { buildEvidence } from "../evidence";
import { runStages } from "../pipeline";

/** What the rewriter builds with: the runtime's image build. */
export type BuildPort = Pick<Runtime, "buildImage">;

/** What the rewriter needs of an agent: its repository, and the stages and depth tier of its rewrites (resolveAgent). */
export type RewriteAgent = { repo: string } & Pick<ResolvedAgent["rewrite"], "stages" | "tier">;

export interface RewriterDeps {
  /** The agent's repository and rewrite plan; throws UnknownAgentError for an agent the config does not name. */
  agent(name: string): RewriteAgent;
  worktreesDir: string;
  /** The coding agent; undefined when none is configured (every attempt then fails with a clear error). */
  adapter?: CodingAgentAdapter;
  timeoutMs: number;
  envAllow: readonly string[];
  /** Environment to take allow-listed variables from. */
  env: NodeJS.ProcessEnv;
  guardrails: Partial<Guardrails>;
  signing: SigningConfig;
  blob: BlobStore;
  runtime: BuildPort;
  batches: BatchStore;
  /** Rejected candidates (`moss_candidates`): earlier failed fixes of the same fingerprint go into the evidence. */
  candidates?: CandidateStore;
  publish: Publish;
  log: Logger;
}

/**
 * Where a batch stands relative to one attempt of it, as a redelivered batch.ready / batch.retry finds it:
 * - `todo`: not started, or started and not finished (a crash mid-attempt): do (or redo) the attempt;
 * - `candidate`: this attempt's candidate is committed and built, but its publish may not have happened (the state
 *   moves first): publish it again (JetStream drops the repeat by msgId), and leave the state where it is;
 * - `past`: the batch has moved on (the replayer took the candidate, the promoter judged the attempt, or a later
 *   attempt started): touching the state would drag the batch back, and republishing is useless at best.
 */
export function attemptStage(rec: BatchRecord | undefined, attempt: number): "todo" | "candidate" | "past" {
  if (!rec || rec.attempt < attempt) return "todo";
  if (rec.attempt > attempt) return "past";
  if (rec.state === "rewriting") return "todo";
  if (rec.state === "candidate") return "candidate";
  return "past";
}

/**
 * One attempt: worktree at the failing version → coding agent → commit with trailers → candidate image.
 * Idempotent: a redelivered attempt whose commit exists reuses it (the coding agent is not run twice), and one the
 * batch has moved past changes nothing.
 */
export async function rewrite(msg: BatchReady | BatchRetry, deps: RewriterDeps): Promise<void> {
  const agent = deps.agent(msg.agent);
  if (!deps.adapter) throw new NoCodingAgentError();
  const adapter = deps.adapter;
  const previous = "previous" in msg ? msg.previous : [];
  const base = { ...msg, previous };
  const log = deps.log.child({ batch: msg.batchId, attempt: msg.attempt });

  const rec = await deps.batches.get(msg.batchId);
  const stage = attemptStage(rec, msg.attempt);
  if (stage === "past") {
    log.info("batch has moved past this attempt; redelivery ignored");
    return;
  }
  if (stage === "todo" && rec?.failedAttempt?.attempt === msg.attempt) {
    // The attempt ended without a candidate and its ack was lost: the verdict stands (JetStream drops the repeat
    // publish by its id), and the coding agent, which may be a paid tool, does not run twice.
    log.info("attempt already failed; its verdict is published again instead of rerunning the coding agent");
    await deps.publish(Messages.candidateFailed, CandidateFailed.parse(JSON.parse((await deps.blob.get(rec.failedAttempt.message.sha256)).toString("utf8"))));
    return;
  }
  // candidate → rewriting is a legal edge (the promoter's retry), so moving back here would be allowed, and would
  // race the replayer: candidate → replaying, then our rewriting → candidate fails and the batch is stuck.
  if (stage === "todo") await deps.batches.transition(msg.batchId, "rewriting", { attempt: msg.attempt });
  /** Journals the attempt's failure on the batch record, then publishes exactly what a redelivery would publish again. */
  const fail = async (m: z.input<typeof CandidateFailed>) => {
    const failed = CandidateFailed.parse(m);
    const message = await deps.blob.put(JSON.stringify(failed), { contentType: "application/json" });
    await deps.batches.patch(msg.batchId, (cur) => (cur.attempt === msg.attempt && cur.state === "rewriting" ? { failedAttempt: { attempt: msg.attempt, message } } : undefined));
    await deps.publish(Messages.candidateFailed, failed);
  };

  /** Throws (moot: the bus drops the message) once the batch has ended, e.g. an operator rejected it meanwhile. */
  const stillWanted = async () => {
    const now = await deps.batches.get(msg.batchId);
    if (now && isFinal(now.state)) throw new BatchEndedError(msg.batchId, now.state, "candidate", now.reason);
  };

  const baseSha = await resolveCommit(agent.repo, msg.baseVersion);
  const branch = branchName(msg.batchId, msg.attempt);

  const { stages: stageCfg, tier } = agent;
  const attemptBase = { ...base, trialsPerFailure: tier.trialsPerFailure };
  let made = await existingAttempt(agent.repo, branch, baseSha);
  let stages: StageRecord[] = [];
  if (made) {
    log.info("attempt already committed; reusing it", { commit: made.commit });
  } else if (stage === "candidate") {
    // The record says built, git says no commit (the branch was deleted by hand?): nothing to republish, and a
    // fresh run would only race the replayer for a batch the record says is done.
    log.warn("batch is a candidate for this attempt but its commit is gone; redelivery ignored", { branch });
    return;
  } else {
    const worktree = join(deps.worktreesDir, `${msg.batchId}-${msg.attempt}`);
    const evidencePath = `${worktree}.evidence.json`;
    mkdirSync(deps.worktreesDir, { recursive: true });
    await addWorktree(agent.repo, worktree, branch, baseSha);
    try {
      const evidence = await buildEvidence(msg, previous, { blob: deps.blob, candidates: deps.candidates, log });
      writeFileSync(evidencePath, JSON.stringify(evidence, null, 2));
      writeFileSync(`${worktree}.prompt.md`, evidence.prompt);
      const env = agentEnv(deps, { worktree, evidencePath, promptPath: `${worktree}.prompt.md` });
      const result = await runStages(
        { worktree, base: baseSha, dir: `${worktree}.stages`, evidencePath, basePrompt: evidence.prompt },
        { adapter, stages: stageCfg, tier, timeoutMs: deps.timeoutMs, env, guardrails: deps.guardrails, blob: deps.blob, log, stillWanted },
      );
      // Rejected while the coding agent worked: nothing is committed or built for it.
      await stillWanted();
      stages = result.stages;
      if (!result.ok) {
        log.info("attempt produced no candidate", { verdict: result.verdict, reason: result.reason });
        await fail({ ...attemptBase, stages, verdict: result.verdict, reason: result.reason, agentOutput: lastLog(stages) });
        return;
      }
      const version = await adapter.version().catch(() => undefined);
      // Whatever the coding agent committed itself is folded into the one signed commit, on the attempt's base.
      await foldOnto(worktree, baseSha);
      const commit = await commitSigned(worktree, {
        message: commitMessage(msg, stages),
        trailers: {
          "Moss-Batch": msg.batchId,
          "Moss-Attempt": String(msg.attempt),
          "Moss-Failures": msg.failures.map((f) => f.id).join(","),
          "Moss-Coding-Agent": `${adapter.name}${version ? ` ${version}` : ""}`,
          "Moss-Stage-Verdicts": stages.map((st) => `${st.stage}#${st.round}=${st.verdict}`).join(" "),
        },
        signing: deps.signing,
      }).catch((err: unknown) => {
        if (err instanceof NothingToCommitError) return undefined;
        throw err;
      });
      if (!commit) {
        await fail({ ...attemptBase, stages, verdict: "no-change", reason: "the coding agent's commits add up to no change against the attempt's base", agentOutput: lastLog(stages) });
        return;
      }
      // The commit must hold exactly the tree the guardrails checked: nothing may slip in between.
      if ((await treeOf(worktree, commit)) !== result.tree) {
        await resetWorktree(worktree, baseSha);
        await fail({ ...attemptBase, stages, verdict: "guardrail", reason: "the commit does not hold the tree the guardrails checked (the worktree changed after the check); nothing was kept", agentOutput: lastLog(stages) });
        return;
      }
      made = { commit, filesChanged: result.filesChanged };
    } finally {
      await removeWorktree(agent.repo, worktree);
    }
  }

  const diff = await deps.blob.put(await diffBetween(agent.repo, baseSha, made.commit), { contentType: "text/x-diff" });
  const tag = imageTag(msg.agent, made.commit);
  let image: string;
  let imageId: string;
  let buildLog: BlobRef | undefined;
  try {
    const result = await deps.runtime.buildImage({ repoDir: agent.repo, commit: made.commit, tag, labels: { "moss.agent": msg.agent, "moss.batch": msg.batchId } });
    image = result.image;
    imageId = result.imageId;
    buildLog = await deps.blob.put(result.log, { contentType: "text/plain" });
  } catch (err) {
    buildLog = typeof (err as { log?: unknown }).log === "string" ? await deps.blob.put((err as { log: string }).log, { contentType: "text/plain" }) : undefined;
    // Like the bus: only an error that says retrying cannot help is terminal; an unknown one is retried.
    if (!isTerminal(err)) throw err;
    await fail({ ...attemptBase, stages, verdict: "build-failed", reason: (err as Error).message, commit: made.commit, diff, agentOutput: lastLog(stages), buildLog });
    return;
  }
  // What was built for this attempt, on the record: what the promoter will promote, whatever a message names.
  const built = { attempt: msg.attempt, commit: made.commit, image, imageId, diff };
  if (stage === "todo") await deps.batches.transition(msg.batchId, "candidate", { built });
  else await deps.batches.patch(msg.batchId, (cur) => (cur.attempt === msg.attempt ? { built } : undefined));
  await deps.publish(Messages.candidateReady, {
    ...attemptBase,
    stages,
    commit: made.commit,
    branch,
    image,
    imageId,
    diff,
    agentOutput: lastLog(stages),
    buildLog,
    filesChanged: made.filesChanged,
    codingAgent: adapter.name,
    signed: Boolean(deps.signing.key),
  });
  log.info("candidate ready", { commit: made.commit, image, files: made.filesChanged });
}

/** The captured output of the last implementation, or of the last stage that ran if none implemented. */
function lastLog(stages: StageRecord[]): BlobRef | undefined {
  return [...stages].reverse().find((st) => st.stage === "implement")?.log ?? stages[stages.length - 1]?.log;
}

function agentEnv(deps: RewriterDeps, p: { worktree: string; evidencePath: string; promptPath: string }): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of ["PATH", "HOME", "LANG", ...deps.envAllow]) {
    const v = deps.env[k];
    if (v !== undefined) env[k] = v;
  }
  return { ...env, MOSS_WORKTREE: p.worktree, MOSS_EVIDENCE: p.evidencePath, MOSS_PROMPT: p.promptPath };
}

function commitMessage(msg: BatchReady | BatchRetry, stages: StageRecord[]): string {
  const took = stages.reduce((t, st) => t + st.durationMs, 0);
  // The body is prose on purpose: "Key: value" lines there would read as trailers of the commit.
  return `moss: fix ${msg.agent} failures of batch ${msg.batchId} (attempt ${msg.attempt})\n\nFixes the root cause fingerprinted as ${msg.fingerprint}, after the stages ${stages.map((st) => st.stage).join(" → ")} (${Math.round(took)} ms).`;
}

/** The commit an earlier delivery of this attempt already made on its branch, if there is one. */
async function existingAttempt(repo: string, branch: string, base: string): Promise<{ commit: string; filesChanged: string[] } | undefined> {
  const sha = await branchHead(repo, branch);
  if (!sha || sha.startsWith(base)) return undefined;
  return { commit: sha, filesChanged: await changedFiles(repo, base, sha) };
}
