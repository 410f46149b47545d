import type { ProbeResult } from "@moss/runtime";
import type { BatchStore, BreakerStore, CandidateStore, DeploymentStore, HeldLease, LeaseStore, RouteStore, StatsReading } from "@moss/batch";
import type { ResolvedAgent } from "@moss/config";
import type { BlobRef, Publish } from "@moss/contracts";
import type { ApprovalRule } from "./policy/consent";
import type { Runtime } from "@moss/runtime";
import type { Logger } from "@moss/telemetry";

/** What the promoter swaps, watches and rolls back with: the runtime's live containers. */
export type LivePort = Pick<Runtime, "deployLive" | "rollbackLive" | "liveStatus" | "serveVersion" | "resumeVersion" | "stopVersion" | "versionStatus" | "servedVersions" | "pruneVersions" | "saveState" | "restoreState">;

/** What the promotion procedure works with (swap, bake, rollback); main.ts wires it. */
export interface PromotionDeps {
  batches: BatchStore;
  /** The promoter counts every outcome of an attempt into its fingerprint's circuit breaker. */
  breakers: Pick<BreakerStore, "count">;
  deployments: DeploymentStore;
  runtime: LivePort;
  /** An agent's settings (resolveAgent): attempts per batch, breaker threshold. */
  agent(name: string): ResolvedAgent;
  /** One health probe of the live agent: whether it is healthy, and what it saw. */
  probe: (agent: string) => Promise<ProbeResult>;
  /** Env of the live agent at a version: port, name, the bus and the agent's own credential (never a service's). */
  liveEnv: (agent: string, version: string) => Record<string, string>;
  /** The agent's state directory, kept on a volume across versions. */
  stateDir: (agent: string) => string | undefined;
  bake: { bakeMs: number; probeIntervalMs: number; maxFailedProbes: number; startupMs: number; drainMs: number; keepVersions: number };
  /** How the agent is served: behind the gateway (its versions listen on `port`, probed at `healthPath`), or in place. */
  serve: (agent: string) => { mode: "gateway" | "in-place"; port: number; healthPath: string };
  /** `agents.<name>.rollbackState`: what a rollback does with the state directory. Default keep. */
  rollbackState?: (agent: string) => "keep" | "restore";
  /** Where a state directory saved at the swap is kept (the blob store). */
  stateBlobs?: { put(tar: Buffer): Promise<BlobRef>; get(ref: BlobRef): Promise<Buffer> };
  /** The agent's canary steps (`agents.<name>.canary`), if it has any. */
  canary?: (agent: string) => { steps: number[]; stepMs: number; stickyHeader?: string } | undefined;
  /** The gateway's routes: a swap and a rollback are a write here. */
  routes: RouteStore;
  /** One reading of every gateway's counters for the agent. */
  liveStats: (agent: string) => Promise<StatsReading>;
  /** How often the gateways write their counters (a reading is that late). */
  statsIntervalMs: number;
  /** A readiness probe of a version's own address (behind the gateway). */
  probeUrl: (url: string) => Promise<ProbeResult>;
  /** Thresholds of the live-traffic analysis (config `promoter.analysis`). */
  analysis: { minRequests: number; maxErrorRate: number; errorRateFactor: number; minErrorRate: number; maxP95Ms?: number; p95Factor: number; p95SlackMs: number };
  /**
   * Whether a candidate commit may be promoted: it and every commit from the batch's base to it signed, each signature
   * good for an allowed signer (config `rewriter.signing`). Checked when replay passes and again before the swap.
   * Undefined: no check.
   */
  verifySignature?: (agent: string, commit: string, base: string) => Promise<{ ok: boolean; reason: string }>;
  /** Leases (`moss_leases`): one promoter per agent at a time. Undefined: no lease (a single promoter, or a test). */
  leases?: LeaseStore;
  /** How long a promoter's lease lasts unless renewed (every third of it). Default 10 s. */
  leaseTtlMs?: number;
  /** The lease `promote()` holds for the call; every act checks it is still held. */
  held?: HeldLease;
  publish: Publish;
  log: Logger;
  sleep?: (ms: number) => Promise<void>;
}

/** What the promoter's handlers work with: the promotion's, plus what judging an attempt needs. */
export interface PromoterDeps extends PromotionDeps {
  /** Rejected candidates (`moss_candidates`): kept for later batches of the same fingerprint. */
  candidates?: CandidateStore;
  /** Promote a candidate that passed replay without waiting for an operator's approval. */
  autoApprove: boolean;
  /** Consent by risk (config `promoter.approval.rules`): the first rule that holds approves, and is named. */
  approvalRules?: readonly ApprovalRule[];
  /** The text of a diff blob (for the approval rules). */
  diffText?: (ref: BlobRef) => Promise<string>;
  /** A recurrence within this long of a promotion rolls back (0: never). */
  rollbackOnRecurrenceMs?: number;
}
