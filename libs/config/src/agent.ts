import { UnknownAgentError } from "./errors";
import type { Stages, Tier } from "./rewriter";
import type { AgentConfig, MossConfig } from "./schema";

/** How the curator batches one agent's failures (`curator`, overridden by `agents.<name>.curation`). */
export interface CurationPolicy {
  /** Close a batch at this many failures... */
  batchSize: number;
  /** ...or this long after its first failure. */
  batchWindowMs: number;
  /** Evidence samples kept per batch; the rest are counted. */
  maxSamples: number;
  /** At most this many batches go to the rewriter per agent per window... */
  maxRewrites: number;
  rateWindowMs: number;
  /** Consecutive rejected candidates after which a fingerprint needs a human. */
  breakerThreshold: number;
  /**
   * Distinct fingerprints one agent may have waiting at once (open, closing or queued batches). A failure of yet
   * another fingerprint joins the agent's overflow batch instead: a storm of failures that do not group must not
   * grow the agent's state without bound (it is one KV entry, and NATS caps its size).
   */
  maxOpenFingerprints: number;
}

/** Everything Moss decides per agent, resolved once from the global settings and the agent's own overrides. */
export interface ResolvedAgent {
  name: string;
  /** The agent's entry in `agents`; undefined for an agent the config does not name (its failures are still curated). */
  entry: AgentConfig | undefined;
  curation: CurationPolicy;
  /** Depth tier and stages of its rewrites (`rewriter`, overridden by `agents.<name>.rewrite`). */
  rewrite: { depth: "shallow" | "standard" | "deep"; stages: Stages; tier: Tier };
  /** Attempts per batch before giving up: `promoter.maxAttempts` when set, else the agent's depth tier's. */
  maxAttempts: number;
}

const cache = new WeakMap<object, Map<string, ResolvedAgent>>();

/** The settings of agent `name` (for any agent: one the config does not name gets the global ones). */
export function resolveAgent(config: Readonly<MossConfig>, name: string): ResolvedAgent {
  let byName = cache.get(config);
  if (!byName) cache.set(config, (byName = new Map()));
  let r = byName.get(name);
  if (!r) {
    const entry = config.agents[name];
    const depth = entry?.rewrite.depth ?? config.rewriter.depth;
    const tier = config.rewriter.tiers[depth];
    const { fingerprint: _fp, maxChunk: _chunk, http: _http, ...globalCuration } = config.curator;
    r = Object.freeze({
      name,
      entry,
      curation: Object.freeze({ ...globalCuration, ...entry?.curation }),
      rewrite: Object.freeze({ depth, stages: Object.freeze({ ...config.rewriter.stages, ...entry?.rewrite.stages }), tier }),
      maxAttempts: config.promoter.maxAttempts ?? tier.maxAttempts,
    });
    byName.set(name, r);
  }
  return r;
}

/** The settings of an agent the config must name (to build, replay or run it): UnknownAgentError otherwise. */
export function knownAgent(config: Readonly<MossConfig>, name: string): ResolvedAgent & { entry: AgentConfig } {
  const r = resolveAgent(config, name);
  if (!r.entry) throw new UnknownAgentError(name);
  return r as ResolvedAgent & { entry: AgentConfig };
}
