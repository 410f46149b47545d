import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { BlobStore } from "@moss/blob";
import { getBatch, kvKeys, kvUpdate, transitionBatch, type KV } from "@moss/bus";
import { UnknownAgentError, type Stages, type Tier } from "@moss/config";
import { isTerminal } from "@moss/errors";
import { BatchRecord, Buckets, CandidateFailed, FailureEvent, RejectedCandidate, type AttemptEvidence, type BatchReady, type BatchRetry, type BlobRef, type CandidateReady, type StageRecord } from "@moss/contracts";
import { commitSigned, type SigningConfig } from "@moss/git";
import type { Logger } from "@moss/telemetry";
import type { z } from "zod";
import type { CodingAgentAdapter } from "../adapters";
import { NoCodingAgentError } from "../errors";
import { AgentRepo } from "../git";
import type { GuardrailConfig } from "../guardrails";
import { runStages } from "../pipeline";

export interface BuildPort {
  buildImage(opts: { repoDir: string; commit: string; tag: string; labels?: Record<string, string> }): Promise<{ image: string; log: string }>;
}

export interface RewriterDeps {
  agents: Readonly<Record<string, { repo: string }>>;
  worktreesDir: string;
  /** The coding agent; undefined when none is configured (every attempt then fails with a clear error). */
  adapter?: CodingAgentAdapter;
  /** Stages and depth tier for an agent (config `rewriter`, overridden by `agents.<name>.rewrite`). */
  plan: (agent: string) => { stages: Stages; tier: Tier };
  timeoutMs: number;
  envAllow: readonly string[];
  /** Environment to take allow-listed variables from. */
  env: NodeJS.ProcessEnv;
  guardrails: Partial<GuardrailConfig>;
  signing: SigningConfig;
  blob: BlobStore;
  runtime: BuildPort;
  batches: KV;
  /** Rejected candidates (`moss_candidates`): earlier failed fixes of the same fingerprint go into the evidence. */
  candidates?: KV;
  publishReady: (msg: z.input<typeof CandidateReady>) => Promise<void>;
  publishFailed: (msg: z.input<typeof CandidateFailed>) => Promise<void>;
  log: Logger;
}

/** The evidence file handed to the coding agent. */
export interface Evidence {
  batchId: string;
  agent: string;
  attempt: number;
  fingerprint: string;
  baseVersion: string;
  /** Failures seen in all; `failures` holds the samples. */
  count: number;
  failures: FailureEvent[];
  /** Earlier attempts: their diff and how their replay went. */
  previous: Array<AttemptEvidence & { diffText?: string }>;
  /** Fixes of the same fingerprint that were tried in earlier batches and not promoted, with why. */
  rejectedBefore: Array<RejectedCandidate & { diffText?: string }>;
  prompt: string;
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
  const agentCfg = deps.agents[msg.agent];
  if (!agentCfg) throw new UnknownAgentError(msg.agent);
  if (!deps.adapter) throw new NoCodingAgentError();
  const adapter = deps.adapter;
  const previous = "previous" in msg ? msg.previous : [];
  const base = { ...msg, previous };
  const log = deps.log.child({ batch: msg.batchId, attempt: msg.attempt });

  const rec = (await getBatch(deps.batches, msg.batchId))?.value;
  const stage = attemptStage(rec, msg.attempt);
  if (stage === "past") {
    log.info("batch has moved past this attempt; redelivery ignored");
    return;
  }
  if (stage === "todo" && rec?.failedAttempt?.attempt === msg.attempt) {
    // The attempt ended without a candidate and its ack was lost: the verdict stands (JetStream drops the repeat
    // publish by its id), and the coding agent, which may be a paid tool, does not run twice.
    log.info("attempt already failed; its verdict is published again instead of rerunning the coding agent");
    await deps.publishFailed(CandidateFailed.parse(JSON.parse((await deps.blob.get(rec.failedAttempt.message.sha256)).toString("utf8"))));
    return;
  }
  // candidate → rewriting is a legal edge (the promoter's retry), so moving back here would be allowed, and would
  // race the replayer: candidate → replaying, then our rewriting → candidate fails and the batch is stuck.
  if (stage === "todo") await transitionBatch(deps.batches, msg.batchId, "rewriting", { attempt: msg.attempt });
  /** Journals the attempt's failure on the batch record, then publishes exactly what a redelivery would publish again. */
  const fail = async (m: z.input<typeof CandidateFailed>) => {
    const failed = CandidateFailed.parse(m);
    const message = await deps.blob.put(JSON.stringify(failed), { contentType: "application/json" });
    await kvUpdate(
      deps.batches,
      msg.batchId,
      BatchRecord,
      (cur) => (cur && cur.attempt === msg.attempt && cur.state === "rewriting" ? { ...cur, failedAttempt: { attempt: msg.attempt, message }, updatedAt: new Date().toISOString() } : undefined),
      Buckets.batches,
    );
    await deps.publishFailed(failed);
  };

  const repo = new AgentRepo(agentCfg.repo);
  const baseSha = await repo.resolve(msg.baseVersion);
  const branch = `moss/${msg.batchId}/${msg.attempt}`;

  const { stages: stageCfg, tier } = deps.plan(msg.agent);
  const attemptBase = { ...base, trialsPerFailure: tier.trialsPerFailure };
  let made = await repo.existingAttempt(branch, baseSha);
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
    await repo.addWorktree(worktree, branch, baseSha);
    try {
      const evidence = await buildEvidence(msg, previous, deps);
      writeFileSync(evidencePath, JSON.stringify(evidence, null, 2));
      writeFileSync(`${worktree}.prompt.md`, evidence.prompt);
      const env = agentEnv(deps, { worktree, evidencePath, promptPath: `${worktree}.prompt.md` });
      const result = await runStages(
        { worktree, base: baseSha, dir: `${worktree}.stages`, evidencePath, basePrompt: evidence.prompt },
        { adapter, stages: stageCfg, tier, timeoutMs: deps.timeoutMs, env, guardrails: deps.guardrails, blob: deps.blob, log },
      );
      stages = result.stages;
      if (!result.ok) {
        log.info("attempt produced no candidate", { verdict: result.verdict, reason: result.reason });
        await fail({ ...attemptBase, stages, verdict: result.verdict, reason: result.reason, agentOutput: lastLog(stages) });
        return;
      }
      const version = await adapter.version().catch(() => undefined);
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
      });
      made = { commit, filesChanged: result.filesChanged };
    } finally {
      await repo.removeWorktree(worktree);
    }
  }

  const diff = await deps.blob.put(await repo.diff(baseSha, made.commit), { contentType: "text/x-diff" });
  const tag = `moss/${msg.agent}:${made.commit.slice(0, 12)}`;
  let image: string;
  let buildLog: BlobRef | undefined;
  try {
    const built = await deps.runtime.buildImage({ repoDir: agentCfg.repo, commit: made.commit, tag, labels: { "moss.agent": msg.agent, "moss.batch": msg.batchId } });
    image = built.image;
    buildLog = await deps.blob.put(built.log, { contentType: "text/plain" });
  } catch (err) {
    buildLog = typeof (err as { log?: unknown }).log === "string" ? await deps.blob.put((err as { log: string }).log, { contentType: "text/plain" }) : undefined;
    // Like the bus: only an error that says retrying cannot help is terminal; an unknown one is retried.
    if (!isTerminal(err)) throw err;
    await fail({ ...attemptBase, stages, verdict: "build-failed", reason: (err as Error).message, commit: made.commit, diff, agentOutput: lastLog(stages), buildLog });
    return;
  }
  if (stage === "todo") await transitionBatch(deps.batches, msg.batchId, "candidate");
  await deps.publishReady({
    ...attemptBase,
    stages,
    commit: made.commit,
    branch,
    image,
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

async function buildEvidence(msg: BatchReady | BatchRetry, previous: AttemptEvidence[], deps: RewriterDeps): Promise<Evidence> {
  const { blob } = deps;
  const text = async (ref?: BlobRef) => (ref ? (await blob.get(ref.sha256)).toString("utf8") : undefined);
  const failures = await Promise.all(msg.failures.map(async (f) => FailureEvent.parse(JSON.parse((await text(f.event))!))));
  const prev = await Promise.all(previous.map(async (p) => ({ ...p, diffText: await text(p.diff) })));
  const rejectedBefore = await Promise.all((await rejectedCandidates(msg, deps)).map(async (c) => ({ ...c, diffText: (await text(c.diff))?.slice(0, 20_000) })));
  return {
    batchId: msg.batchId,
    agent: msg.agent,
    attempt: msg.attempt,
    fingerprint: msg.fingerprint,
    baseVersion: msg.baseVersion,
    count: msg.count,
    failures,
    previous: prev,
    rejectedBefore,
    prompt: promptFor(msg, failures, prev, rejectedBefore),
  };
}

/** Up to 5 most recent rejected candidates of this fingerprint from other batches. */
async function rejectedCandidates(msg: BatchReady | BatchRetry, deps: RewriterDeps): Promise<RejectedCandidate[]> {
  if (!deps.candidates) return [];
  const rec = await getBatch(deps.batches, msg.batchId);
  const fpKey = rec?.value.fingerprintKey;
  if (!fpKey) return [];
  const out: RejectedCandidate[] = [];
  for (const k of await kvKeys(deps.candidates, `${msg.agent}.${fpKey}.>`)) {
    const e = await deps.candidates.get(k);
    if (e?.operation !== "PUT") continue;
    const c = RejectedCandidate.safeParse(e.json());
    if (c.success && c.data.batchId !== msg.batchId) out.push(c.data);
  }
  return out.sort((a, b) => b.at.localeCompare(a.at)).slice(0, 5);
}

function promptFor(msg: BatchReady | BatchRetry, failures: FailureEvent[], previous: Evidence["previous"], rejected: Evidence["rejectedBefore"]): string {
  const first = failures[0]!;
  const lines = [
    `# Fix agent '${msg.agent}' (batch ${msg.batchId}, attempt ${msg.attempt})`,
    "",
    `${msg.count} production failure(s) share one root cause (fingerprint \`${msg.fingerprint}\`).`,
    `Example: ${first.request.method} ${first.request.path} failed with ${first.error.type}: ${first.error.message}`,
    "",
    "The full evidence (requests, errors, stacks, logs, env) is in the JSON file next to this prompt.",
    "Change the source in the current directory so that every one of these requests succeeds.",
    "Fix the root cause; do not hide the error, do not edit tests or replay fixtures.",
    "Every failing request will be replayed against your change in a fresh container before anything ships.",
  ];
  for (const p of previous) {
    lines.push("", `## Attempt ${p.attempt} did not work (${p.verdict}): ${p.reason}`);
    for (const r of p.results.filter((x) => !x.passed)) lines.push(`- failure ${r.failureId}: ${r.reason}`);
  }
  if (rejected.length) {
    lines.push("", "## Fixes of this root cause tried before and not promoted");
    for (const c of rejected) lines.push(`- batch ${c.batchId} attempt ${c.attempt}${c.commit ? ` (commit ${c.commit.slice(0, 12)}, branch ${c.branch})` : ""}: ${c.verdict}: ${c.reason}`);
  }
  return lines.join("\n") + "\n";
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
