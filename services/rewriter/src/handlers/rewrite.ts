import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { BlobStore } from "@moss/blob";
import { getBatch, transitionBatch, type KV } from "@moss/bus";
import { FailureEvent, MossError, isTerminal, type AttemptEvidence, type BatchReady, type BatchRecord, type BatchRetry, type BlobRef, type CandidateFailed, type CandidateReady } from "@moss/contracts";
import type { Logger } from "@moss/telemetry";
import { renderCommand, runCodingAgent, type CodingAgentRun } from "../coding-agent";
import { AgentRepo } from "../git";

export interface BuildPort {
  buildImage(opts: { repoDir: string; commit: string; tag: string; labels?: Record<string, string> }): Promise<{ image: string; log: string }>;
}

export interface RewriterDeps {
  agents: Readonly<Record<string, { repo: string }>>;
  worktreesDir: string;
  command?: readonly string[];
  timeoutMs: number;
  envAllow: readonly string[];
  /** Environment to take allow-listed variables from. */
  env: NodeJS.ProcessEnv;
  blob: BlobStore;
  runtime: BuildPort;
  batches: KV;
  publishReady: (msg: CandidateReady) => Promise<void>;
  publishFailed: (msg: CandidateFailed) => Promise<void>;
  log: Logger;
}

export class UnknownAgentError extends MossError {
  override name = "UnknownAgentError";
  constructor(agent: string) {
    super("MOSS_E_UNKNOWN_AGENT", `agent '${agent}' is not in the Moss config (agents.${agent}.repo); add it or fix the agent name it publishes`, false);
  }
}

export class NoCodingAgentError extends MossError {
  override name = "NoCodingAgentError";
  constructor() {
    super("MOSS_E_NO_CODING_AGENT", "no coding agent configured: set rewriter.command (an argv template with {worktree} {evidence} {prompt})", false);
  }
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
  if (!deps.command) throw new NoCodingAgentError();
  const previous = "previous" in msg ? msg.previous : [];
  const base = { ...msg, previous };
  const log = deps.log.child({ batch: msg.batchId, attempt: msg.attempt });

  const stage = attemptStage((await getBatch(deps.batches, msg.batchId))?.value, msg.attempt);
  if (stage === "past") {
    log.info("batch has moved past this attempt; redelivery ignored");
    return;
  }
  // candidate → rewriting is a legal edge (the promoter's retry), so moving back here would be allowed, and would
  // race the replayer: candidate → replaying, then our rewriting → candidate fails and the batch is stuck.
  if (stage === "todo") await transitionBatch(deps.batches, msg.batchId, "rewriting", { attempt: msg.attempt });

  const repo = new AgentRepo(agentCfg.repo);
  const baseSha = await repo.resolve(msg.baseVersion);
  const branch = `moss/${msg.batchId}/${msg.attempt}`;

  let made = await repo.existingAttempt(branch, baseSha);
  let agentOutput: BlobRef | undefined;
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
    const promptPath = `${worktree}.prompt.md`;
    mkdirSync(deps.worktreesDir, { recursive: true });
    await repo.addWorktree(worktree, branch, baseSha);
    try {
      const evidence = await buildEvidence(msg, previous, deps.blob);
      writeFileSync(evidencePath, JSON.stringify(evidence, null, 2));
      writeFileSync(promptPath, evidence.prompt);
      const argv = renderCommand(deps.command, { worktree, evidence: evidencePath, prompt: promptPath });
      log.info("running coding agent", { argv });
      const run = await runCodingAgent(argv, { cwd: worktree, env: agentEnv(deps, { worktree, evidencePath, promptPath }), timeoutMs: deps.timeoutMs });
      agentOutput = await deps.blob.put(run.output, { contentType: "text/plain" });
      if (run.outcome !== "ok") {
        await deps.publishFailed({ ...base, verdict: run.outcome === "timeout" ? "agent-timeout" : "agent-failed", reason: run.reason, agentOutput });
        return;
      }
      made = await repo.commitAll(worktree, commitMessage(msg, run), {
        "Moss-Batch": msg.batchId,
        "Moss-Attempt": String(msg.attempt),
        "Moss-Failures": msg.failures.map((f) => f.id).join(","),
        "Moss-Coding-Agent": deps.command[0] ?? "",
      });
      if (!made) {
        await deps.publishFailed({ ...base, verdict: "no-change", reason: "the coding agent exited 0 but changed no file", agentOutput });
        return;
      }
    } finally {
      await repo.removeWorktree(worktree);
    }
  }

  const diff = await deps.blob.put(await repo.diff(baseSha, made.commit), { contentType: "text/x-diff" });
  const tag = `moss/${msg.agent}:${made.commit.slice(0, 12)}`;
  let image: string;
  try {
    image = (await deps.runtime.buildImage({ repoDir: agentCfg.repo, commit: made.commit, tag, labels: { "moss.agent": msg.agent, "moss.batch": msg.batchId } })).image;
  } catch (err) {
    const buildLog = typeof (err as { log?: unknown }).log === "string" ? await deps.blob.put((err as { log: string }).log, { contentType: "text/plain" }) : undefined;
    // Like the bus: only an error that says retrying cannot help is terminal; an unknown one is retried.
    if (!isTerminal(err)) throw err;
    await deps.publishFailed({ ...base, verdict: "build-failed", reason: (err as Error).message, commit: made.commit, diff, agentOutput, buildLog });
    return;
  }
  if (stage === "todo") await transitionBatch(deps.batches, msg.batchId, "candidate");
  await deps.publishReady({ ...base, commit: made.commit, branch, image, diff, agentOutput, filesChanged: made.filesChanged });
  log.info("candidate ready", { commit: made.commit, image, files: made.filesChanged });
}

async function buildEvidence(msg: BatchReady | BatchRetry, previous: AttemptEvidence[], blob: BlobStore): Promise<Evidence> {
  const failures = await Promise.all(msg.failures.map(async (f) => FailureEvent.parse(JSON.parse((await blob.get(f.event.sha256)).toString("utf8")))));
  const prev = await Promise.all(previous.map(async (p) => ({ ...p, diffText: p.diff ? (await blob.get(p.diff.sha256)).toString("utf8") : undefined })));
  return {
    batchId: msg.batchId,
    agent: msg.agent,
    attempt: msg.attempt,
    fingerprint: msg.fingerprint,
    baseVersion: msg.baseVersion,
    count: msg.count,
    failures,
    previous: prev,
    prompt: promptFor(msg, failures, prev),
  };
}

function promptFor(msg: BatchReady | BatchRetry, failures: FailureEvent[], previous: Evidence["previous"]): string {
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

function commitMessage(msg: BatchReady | BatchRetry, run: CodingAgentRun): string {
  return `moss: fix ${msg.agent} failures of batch ${msg.batchId} (attempt ${msg.attempt})\n\nFingerprint: ${msg.fingerprint}\nCoding agent finished in ${run.durationMs} ms.`;
}
