import { Buckets, Consumers, failureSubject, Messages, Queries, Streams, successSubject, type ConsumerDef, type MessageDef, type QueryDef } from "./topology";

/**
 * Who may do what on the bus: the one table every NATS permission is derived from (libs/bus turns it into
 * nats-server users). A service may publish only the messages it announces, read only through its own durable
 * consumers, and touch only its KV buckets; an agent may only report its own failures; only the operator API
 * may approve, reject or reset. Anything not granted here is refused by the server, and the refusal is in
 * nats-server's log.
 */
export type BucketAccess = "read" | "write";

export interface Grant {
  /** Messages this identity publishes (on the concrete subjects of their definitions). */
  readonly publishes: readonly MessageDef[];
  /** Narrows a publish grant to one concrete subject (an agent publishes only its own failures). */
  readonly publishSubjects?: readonly string[];
  /** Durable consumers it reads through (and may create or update, and dead-letters from). */
  readonly consumers: readonly ConsumerDef[];
  /** KV buckets it reads, or reads and writes. */
  readonly buckets: Readonly<Partial<Record<(typeof Buckets)[keyof typeof Buckets], BucketAccess>>>;
  /** Queries it answers (it subscribes to them and may reply to whoever asked, nobody else). */
  readonly serves?: readonly QueryDef[];
  /** Queries it asks. */
  readonly asks?: readonly QueryDef[];
  /** Messages it watches as they are published (a core subscription, no consumer): to answer with an outcome. */
  readonly watches?: readonly MessageDef[];
  /** Streams whose messages it may read by sequence (the auditor: to hold its records to the streams' own copies). */
  readonly readsStreams?: readonly string[];
}

/** The identities Moss's own processes connect as. Agents connect as `agent.<name>` (see {@link agentIdentity}). */
export const ServiceIdentities = ["curator", "rewriter", "replayer", "promoter", "auditor", "operator-api", "gateway"] as const;
export type ServiceIdentity = (typeof ServiceIdentities)[number];

/**
 * `admin` provisions streams, consumers and buckets, reports `moss up`'s services, deploys a first version and
 * watches the bus (`moss demo`, `moss status`); it may not approve, reject or reset, and may not report failures
 * in an agent's name.
 */
export const ADMIN = "admin";

export const Grants: Readonly<Record<ServiceIdentity, Grant>> = Object.freeze({
  curator: {
    // `failure`, `success`: the HTTP ingest publishes what agents without a NATS client report.
    publishes: [Messages.failure, Messages.success, Messages.batchReady, Messages.batchVerdict, Messages.regression],
    consumers: [Consumers.curator, Consumers.curatorSuccesses],
    buckets: { [Buckets.curator]: "write", [Buckets.batches]: "write", [Buckets.fingerprints]: "read", [Buckets.regressions]: "write" },
  },
  rewriter: {
    // `timeTravelDone`: a version it cannot find or build ends a `moss replay` with the reason.
    publishes: [Messages.candidateReady, Messages.candidateFailed, Messages.timeTravelReady, Messages.timeTravelDone, Messages.reviewDone],
    consumers: [Consumers.rewriter, Consumers.rewriterVersions, Consumers.rewriterBisect, Consumers.rewriterNotes],
    buckets: { [Buckets.batches]: "write", [Buckets.candidates]: "read", [Buckets.deployments]: "read", [Buckets.timeTravel]: "write", [Buckets.bisects]: "write", [Buckets.reviewed]: "write", [Buckets.reviews]: "write" },
  },
  replayer: {
    publishes: [Messages.replayTrial, Messages.replayCompleted, Messages.timeTravelDone],
    consumers: [Consumers.replayer, Consumers.replayerTrials, Consumers.replayerTimeTravel],
    buckets: { [Buckets.batches]: "write", [Buckets.replays]: "write", [Buckets.regressions]: "read", [Buckets.timeTravel]: "write" },
  },
  promoter: {
    publishes: [Messages.batchVerdict, Messages.promotion, Messages.batchRetry, Messages.rollbackDone],
    consumers: [Consumers.promoter],
    buckets: { [Buckets.batches]: "write", [Buckets.fingerprints]: "write", [Buckets.candidates]: "write", [Buckets.deployments]: "write", [Buckets.routes]: "write", [Buckets.gatewayStats]: "read", [Buckets.leases]: "write" },
  },
  auditor: {
    publishes: [Messages.auditCheckpoint],
    consumers: [Consumers.auditorFailures, Consumers.auditorPipeline, Consumers.auditorDlq, Consumers.auditorWebhooks],
    buckets: { [Buckets.audit]: "write" },
    serves: [Queries.audit],
    readsStreams: [Streams.FAILURES, Streams.PIPELINE, Streams.DLQ],
  },
  "operator-api": {
    // The operator API: consent and breaker resets, each with the identity its token authenticated.
    publishes: [Messages.approval, Messages.breakerReset, Messages.rollback, Messages.timeTravel, Messages.bisect, Messages.review, Messages.regressionCase],
    consumers: [],
    // A reset closes the breaker and releases the batches it held; an operator pins or drops regression cases.
    buckets: { [Buckets.batches]: "write", [Buckets.fingerprints]: "write", [Buckets.candidates]: "read", [Buckets.deployments]: "read", [Buckets.regressions]: "write", [Buckets.timeTravel]: "write", [Buckets.bisects]: "write", [Buckets.reviewed]: "read", [Buckets.reviews]: "write", [Buckets.services]: "read" },
    asks: [Queries.audit],
    watches: [Messages.rollbackDone],
  },
  gateway: {
    // The agents' public address: it follows the routes and reports what it sees; it decides nothing.
    publishes: [],
    consumers: [],
    buckets: { [Buckets.routes]: "read", [Buckets.gatewayStats]: "write" },
  },
});

/** Messages only the operator API may publish: no other identity, admin included, is ever granted them. */
export const OperatorOnly: readonly MessageDef[] = Object.freeze([Messages.approval, Messages.breakerReset, Messages.rollback, Messages.timeTravel, Messages.bisect, Messages.review, Messages.regressionCase]);

/** Replies to an identity's requests come back under its own inbox prefix, which only it may subscribe to. */
export function inboxPrefix(identity: string): string {
  return `_INBOX.${identity}`;
}

/** The bus identity of an agent: what its SDK connects as. */
export function agentIdentity(agent: string): string {
  return `agent.${agent}`;
}

/** An agent may publish its own failures and recorded successes, and nothing else. */
export function agentGrant(agent: string): Grant {
  return { publishes: [Messages.failure, Messages.success], publishSubjects: [failureSubject(agent), successSubject(agent)], consumers: [], buckets: {} };
}

/** The streams every identity may look up (their config, never their messages). */
export const AllStreams: readonly string[] = Object.values(Streams);

/** The identities whose grants may publish a message kind (an agent's own failures and successes: `agent.<name>`). */
export function publishersOf(def: MessageDef): string[] {
  const services: string[] = ServiceIdentities.filter((id) => Grants[id].publishes.includes(def));
  return def === Messages.failure || def === Messages.success ? [...services, "agent.<name>"] : services;
}
