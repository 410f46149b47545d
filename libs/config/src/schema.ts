import { AgentName, Expectation, JsonPath } from "@moss/contracts";
import { z } from "zod";
import { isCredentialVariable, isLoaderVariable } from "./env";
import { FingerprintConfig } from "./fingerprint";
import { AdapterConfig, DEFAULT_TIERS, Guardrails, Signing, Stages, Tier } from "./rewriter";

/** One managed agent: where its source lives and how it runs. */
export const AgentConfig = z.object({
  /** Path of the agent's git repository (the source Moss rewrites). Relative paths resolve against the config file's directory (the working directory without a file). */
  repo: z.string().min(1),
  /** Port the agent listens on inside a trial container (it gets env PORT). Default 8080. */
  port: z.number().int().min(1).max(65535).default(8080),
  /**
   * The agent's public port on the host. With `serve: "gateway"` the gateway listens there and the versions behind it
   * listen on `port` on the live network; in place, the live container itself takes it (host networking). Default 8080.
   */
  livePort: z.number().int().min(1).max(65535).default(8080),
  /**
   * How the live agent is served. `gateway` (default, for HTTP agents): each version runs on Moss's live network, the
   * gateway is the agent's address, and a swap or a rollback is one route change — no request fails. `in-place` (for
   * agents that serve no HTTP): the live container runs on the host network and a new version replaces it (same name,
   * same volumes), the old one stopped and kept.
   */
  serve: z.enum(["gateway", "in-place"]).default("gateway"),
  /**
   * The state directory on a rollback behind the gateway: `keep` (default) leaves it as the candidate left it; `restore`
   * puts back what it held at the swap (saved from the previous version's container before the candidate started), for
   * agents whose new version rewrites state the old one cannot read.
   */
  rollbackState: z.enum(["keep", "restore"]).default("keep"),
  /**
   * Canary steps behind the gateway: the share of new sessions the candidate gets at each step (ascending, 1–99), each
   * held for `stepMs` with the bake's analysis, before all of the traffic and the bake. With `stickyHeader`, requests
   * carrying that header go by its value's hash, so one conversation stays on one version. Default: none (straight to
   * 100 %, then the bake).
   */
  canary: z
    .object({
      steps: z
        .array(z.number().int().min(1).max(99))
        .min(1)
        .refine((xs) => xs.every((x, i) => i === 0 || x > xs[i - 1]!), "steps must be ascending"),
      stepMs: z.number().int().min(100).default(10_000),
      stickyHeader: z.string().regex(/^[A-Za-z0-9-]+$/, "an HTTP header name").optional(),
    })
    .optional(),
  /** Health probe path of the live agent. Default `/health`. */
  healthPath: z.string().startsWith("/").default("/health"),
  /** The agent's state directory inside its container; the live agent keeps it on a volume across versions. */
  stateDir: z.string().startsWith("/").optional(),
  /** Per-agent overrides of the rewriter: depth and stages. */
  rewrite: z
    .object({ depth: z.enum(["shallow", "standard", "deep"]), stages: Stages.partial() })
    .partial()
    .default({}),
  /** Per-agent overrides of the curator's batching policy. */
  curation: z
    .object({
      batchSize: z.number().int().min(1),
      batchWindowMs: z.number().int().min(100),
      maxSamples: z.number().int().min(1),
      maxRewrites: z.number().int().min(1),
      rateWindowMs: z.number().int().min(1_000),
      breakerThreshold: z.number().int().min(1),
      maxOpenFingerprints: z.number().int().min(1),
    })
    .partial()
    .default({}),
  /** Extra env for the live agent and its trials. */
  env: z.record(z.string(), z.string()).default({}),
  /** How its failures are replayed. What a failure event says is evidence, never an instruction. */
  replay: z
    .object({
      /**
       * The variables a failure's recorded env may set in its replay (on top of `env`); any other the event carries is
       * ignored. Loader variables (NODE_OPTIONS, LD_*, PYTHON*, ...) can never be taken from an event. Default: none.
       */
      envAllow: z
        .array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "an environment variable name"))
        .default([])
        .superRefine((names, ctx) => {
          for (const [i, n] of names.entries()) {
            if (isLoaderVariable(n)) ctx.addIssue({ code: "custom", path: [i], message: `${n} changes how the agent's runtime loads code; it can never be taken from a failure event` });
            if (isCredentialVariable(n)) ctx.addIssue({ code: "custom", path: [i], message: `${n} is the agent's NATS credential; a trial never gets one` });
          }
        }),
      /** Trials of this agent may use the network (Docker's default bridge). Default false: offline. */
      network: z.boolean().default(false),
      /**
       * Offline trials answer the agent's outbound calls from the failure's cassette; a call it does not hold
       * diverges the trial. A call whose URL starts with one of these base URLs (a staging model, a sandbox service)
       * is forwarded there instead — through an egress proxy that lets through only their hosts — and answered with
       * the real response, listed as `forwarded`. Nothing ever reaches any other address. Default: none.
       */
      forward: z.array(z.string().regex(/^https?:\/\/[^\s/?#]+(\/\S*)?$/, "a base URL: http(s)://host[:port][/path]")).default([]),
      /**
       * What a replay must answer to pass, for every failure of this agent (a failure's own `expect` narrows it: its
       * status range wins, its JSON checks add to these). Default: a 2xx answer (a command agent: exit 0), no JSON checks.
       */
      expect: Expectation.extend({
        /**
         * A grader, run by the replayer from this config (never from the agent's repository, so a patch cannot grade
         * itself): `command` (argv, no shell; relative paths resolve against the config file's directory) gets
         * `{request, response, recorded, failure}` as JSON on stdin and exits 0 for a pass; its output is the reason.
         */
        grader: z
          .object({ command: z.array(z.string().min(1)).min(1), timeoutMs: z.number().int().min(100).max(300_000).default(10_000) })
          .optional(),
      }).prefault({}),
    })
    .prefault({}),
  /**
   * Its regression set: successful turns its SDK records (`sampleRate`), kept by the curator and replayed against
   * every candidate; a candidate that changes one's outcome is rejected.
   */
  /**
   * What `moss diff` flags: per area, the code that is it — a path glob (`src/router.ts`, `prompts/**`) or a
   * glob and a symbol (`src/server.ts#handle`, a class or object and its members: `src/state.ts#StateStore`). A change
   * in one is listed under the area's name. Default: none.
   */
  review: z
    .object({
      areas: z
        .object({
          routing: z.array(z.string().min(1)).default([]),
          exceptions: z.array(z.string().min(1)).default([]),
          state: z.array(z.string().min(1)).default([]),
          prompts: z.array(z.string().min(1)).default([]),
        })
        .strict()
        .prefault({}),
      /** The branch people maintain the agent on, which `moss reconcile` compares the live Moss line with. Default `main`. */
      mainBranch: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$/, "a branch name").default("main"),
      /** Reconcile on a schedule too, every this many ms (each result is a `moss.review.done.v1` record in the audit trail, by `schedule`). Default: only when asked. */
      reconcileEveryMs: z.number().int().min(60_000).optional(),
    })
    .strict()
    .prefault({}),
  regressions: z
    .object({
      /** Most recorded successes kept (spread over routes, newest kept). Default 50. */
      size: z.number().int().min(1).max(1_000).default(50),
      /** How many of them every candidate replays (all pinned ones, then spread over routes, newest first). Default 20. */
      replay: z.number().int().min(0).max(1_000).default(20),
      /**
       * The JSON paths of a response that are its meaning (`$.tool`, `$.answer`): a candidate must answer what the
       * recorded success answered there. Its status class must always stay the same. Default: none (status class only).
       */
      paths: z.array(JsonPath).max(50).default([]),
    })
    .prefault({}),
});
export type AgentConfig = z.infer<typeof AgentConfig>;

const FsBlob = z.object({
  kind: z.literal("fs"),
  /** Default `<dataDir>/blobs`. */
  dir: z.string().optional(),
});
const S3Blob = z.object({
  kind: z.literal("s3"),
  endPoint: z.string().min(1),
  port: z.number().int().optional(),
  useSSL: z.boolean().default(false),
  accessKey: z.string().min(1),
  secretKey: z.string().min(1),
  bucket: z.string().min(3).default("moss"),
  region: z.string().optional(),
});

export const MossConfig = z.object({
  /**
   * Where Moss keeps its data (blobs, worktrees, audit log, nats store). A relative path (here or in MOSS_DATA_DIR)
   * resolves against the config file's directory when there is one (MOSS_CONFIG), else against the working
   * directory. Default `.moss`.
   */
  dataDir: z.string().default(".moss"),
  nats: z
    .object({
      /** Default `nats://127.0.0.1:4222`. */
      url: z.string().default("nats://127.0.0.1:4222"),
      /**
       * `nkey` (default): every Moss process and agent connects as its own identity, proved by the nkey seed in
       * `credentialsDir/<identity>.nk`, and nats-server grants each only its subjects (`moss up` writes both; for your
       * own nats-server, `moss credentials`). `none`: anonymous, for a nats-server without auth — then any client that
       * reaches it can forge verdicts, records and consent.
       */
      auth: z.enum(["nkey", "none"]).default("nkey"),
      /** Where the nkey seeds are, one `<identity>.nk` per identity (mode 600). Default `<dataDir>/credentials/nats`. */
      credentialsDir: z.string().optional(),
      /**
       * Copies of every stream and KV bucket JetStream keeps: 1 (default) for one nats-server, 3 (or 5) on a cluster,
       * so losing a node loses nothing. List every node in `url` (comma separated) so a process reconnects to another.
       */
      replicas: z.union([z.literal(1), z.literal(3), z.literal(5)]).default(1),
    })
    .prefault({}),
  /** Blob store: `fs` (default, under dataDir) or `s3` (MinIO, S3, R2...). */
  blob: z.discriminatedUnion("kind", [FsBlob, S3Blob]).default({ kind: "fs" }),
  telemetry: z
    .object({
      /** OTLP/HTTP traces URL (e.g. Jaeger `http://localhost:4318/v1/traces`). Unset: no export. */
      otlpEndpoint: z.string().url().optional(),
      /**
       * Where the traces can be read back: a Jaeger query API (e.g. `http://localhost:16686`). Set, `moss trace`
       * draws a batch's waterfall from its spans (every service's, with their own durations); unset, from the audit
       * records.
       */
      jaegerQuery: z.string().url().optional(),
    })
    .prefault({}),
  curator: z
    .object({
      /** Close a batch at this many failures. Default 3. */
      batchSize: z.number().int().min(1).default(3),
      /** ...or this long after its first failure, whichever comes first. Default 10 s. */
      batchWindowMs: z.number().int().min(100).default(10_000),
      /** Failure events kept as evidence per batch (the rest are counted). Default 20. */
      maxSamples: z.number().int().min(1).default(20),
      /** At most this many batches go to the rewriter per agent per `rateWindowMs`; the rest wait as `queued`. Default 10. */
      maxRewrites: z.number().int().min(1).default(10),
      /** Rate-limit window. Default 1 h. */
      rateWindowMs: z.number().int().min(1_000).default(3_600_000),
      /** Consecutive rejected candidates after which a fingerprint needs a human. Default 3. */
      breakerThreshold: z.number().int().min(1).default(3),
      /**
       * Distinct fingerprints one agent may have waiting at once (open, closing or queued batches); failures of any
       * further fingerprint go to the agent's overflow batch, so a storm that does not group cannot grow the
       * curator's state past what one KV entry holds. Default 100.
       */
      maxOpenFingerprints: z.number().int().min(1).max(1_000).default(100),
      /** How failures are grouped by root cause (frames, in-app paths, rules). Defaults: see FingerprintConfig. */
      fingerprint: FingerprintConfig.prefault({}),
      /** Failure events filed per KV write. Default 500. */
      maxChunk: z.number().int().min(1).max(10_000).default(500),
      /** HTTP ingest (`POST /v1/failures`, `POST /v1/flags`) for agents without a NATS client. */
      http: z
        .object({
          /** Default true. */
          enabled: z.boolean().default(true),
          /** Default 127.0.0.1. Anything else requires a token. */
          host: z.string().default("127.0.0.1"),
          /** Default 7421. */
          port: z.number().int().min(0).max(65535).default(7421),
          /** Bearer token agents must send. Unset: no auth (loopback only). */
          token: z.string().min(16, "curator.http.token: at least 16 characters").optional(),
          /** Largest accepted event, bytes. Default 2 MiB. */
          bodyLimitBytes: z.number().int().min(1_024).default(2 * 1024 * 1024),
        })
        .prefault({})
        .refine((h) => !h.enabled || h.token || ["127.0.0.1", "localhost", "::1"].includes(h.host), {
          message: "curator.http listens beyond loopback without a token: set curator.http.token",
        }),
    })
    .prefault({}),
  rewriter: z
    .object({
      /**
       * The coding agent, as an argv template: `{worktree}`, `{evidence}` (JSON file path) and `{prompt}` (prompt
       * file path) are replaced. Runs with the worktree as its working directory. Required to rewrite anything.
       */
      command: z.array(z.string().min(1)).min(1).optional(),
      /** The coding agent (a preset, a command, or the symbolic patcher). `command` above is shorthand for `{preset: "command"}`. */
      adapter: AdapterConfig.optional(),
      /** Kill the coding agent after this long, per stage. Default 10 min. */
      timeoutMs: z.number().int().min(1_000).default(600_000),
      /** Cancel a candidate's image build after this long (a verdict of its own: build-failed). Default 10 min. */
      buildTimeoutMs: z.number().int().min(1_000).default(600_000),
      /** Env variables passed through to the coding agent (its environment is otherwise empty but PATH/HOME). */
      envAllow: z.array(z.string()).default([]),
      /**
       * Where the coding agent runs. Every kind but `none` hands it a private copy of the worktree with a git
       * repository of its own and runs it as a fresh unprivileged uid from `uidRange` (the rewriter must run as root);
       * its files come back without following links once everything it started is gone. `container` (default): in a
       * container from `image` that holds that copy and nothing else of the host (plus `mounts`, read-only), with no
       * network, or only the destinations in `allow` through an egress proxy. `user`: as that uid on the host; it
       * cannot read Moss's data directory (signing key, NATS credentials, blob store, other repositories), but the
       * network is open. `none`: as the rewriter's own user, which can read all of that.
       */
      sandbox: z
        .object({
          kind: z.enum(["container", "user", "none"]).default("container"),
          /** uids (and equal gids) used by nothing else on the host. Default 200000-265535. */
          uidRange: z
            .tuple([z.number().int().min(1_000), z.number().int().max(4_294_967_294)])
            .default([200_000, 265_535])
            .refine(([a, b]) => a <= b, "the first uid must not be above the last"),
          /**
           * `container`: the image the tool runs in. Default `moss/coding-agent:latest` (node, git, bash, coreutils;
           * `npm run setup` builds it): build your own FROM it with your tool installed, or mount the tool's files.
           */
          image: z.string().min(1).default("moss/coding-agent:latest"),
          /** `container`: absolute host paths mounted read-only at the same path, e.g. the tool's installation. */
          mounts: z.array(z.string().startsWith("/", "a mount is an absolute host path")).default([]),
          /**
           * `container`: the destinations the tool may reach, `host:port` (a bare host means port 443), e.g.
           * `api.anthropic.com`. It reaches them through a proxy (HTTPS_PROXY / HTTP_PROXY are set for it); nothing
           * else is reachable, the bus included. Default: none — no network at all.
           */
          allow: z.array(z.string().regex(/^[A-Za-z0-9.\-_]+(:\d{1,5})?$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, "host:port, or a bare host for port 443")).default([]),
          /** `container`: memory limit, MiB. Default 4096. */
          memoryMiB: z.number().int().min(64).default(4096),
          /** `container`: most processes at once. Default 1024. */
          pids: z.number().int().min(16).default(1024),
        })
        .prefault({}),
      /** Which stages run besides implement. Default: all (locate, plan, plan review, code review). */
      stages: Stages.prefault({}),
      /** Depth tier. Default `standard`. */
      depth: z.enum(["shallow", "standard", "deep"]).default("standard"),
      /** What each depth may spend. Defaults: DEFAULT_TIERS. */
      tiers: z
        .object({ shallow: Tier.default(DEFAULT_TIERS.shallow), standard: Tier.default(DEFAULT_TIERS.standard), deep: Tier.default(DEFAULT_TIERS.deep) })
        .prefault({}),
      guardrails: Guardrails.prefault({}),
      signing: Signing.prefault({}),
    })
    .prefault({}),
  replayer: z
    .object({
      /** Trials run at once per replayer. Default 2. */
      concurrency: z.number().int().min(1).max(64).default(2),
      /** Memory limit per trial container, MiB. Default 256. */
      memoryMb: z.number().int().min(16).default(256),
      /** Process limit per trial container. Default 128. */
      pidsLimit: z.number().int().min(8).default(128),
      /**
       * Trial sidecars (Moss's driver) each replica keeps created and started ahead, so an offline trial pays neither
       * their create nor their start. 0 turns it off. Default: the replica's concurrency.
       */
      warmPool: z.number().int().min(0).max(64).optional(),
    })
    .prefault({}),
  promoter: z
    .object({
      /** Promote a candidate that passed replay without waiting for `moss approve`. Default false. */
      autoApprove: z.boolean().default(false),
      /**
       * Consent by risk: a candidate that passed replay is promoted without an operator when one of these rules holds
       * for it (the first that holds is named in the verdict, as `policy:<name>`); otherwise it waits for `moss approve`.
       * Rollback never needs consent.
       */
      approval: z
        .object({
          rules: z
            .array(
              z
                .object({
                  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, "letters, digits, '_', '.', '-'"),
                  /** At most this many files changed. */
                  maxFiles: z.number().int().min(1).optional(),
                  /** At most this many lines added plus removed. */
                  maxLines: z.number().int().min(1).optional(),
                  /** Every changed file matches one of these globs (e.g. `src/tools/**`). */
                  paths: z.array(z.string().min(1)).optional(),
                  /** No changed file matches any of these (e.g. `src/core/**`). */
                  denyPaths: z.array(z.string().min(1)).optional(),
                  /** The replay fixed at least this many failures. */
                  minFailuresFixed: z.number().int().min(1).optional(),
                  /** At least this many recorded successes were replayed (and none changed: a changed one never passes replay). */
                  minRegressionsReplayed: z.number().int().min(0).optional(),
                })
                .strict(),
            )
            .default([]),
        })
        .prefault({}),
      /** Attempts per batch before giving up, for every agent. Default: each agent's depth tier (`agents.<name>.rewrite.depth`, else `rewriter.depth`; `standard`: 3). */
      maxAttempts: z.number().int().min(1).optional(),
      /** Health-probe the new live agent this long before calling it promoted. Default 5 s. */
      bakeMs: z.number().int().min(0).default(5_000),
      /** Interval between probes. Default 500 ms. */
      probeIntervalMs: z.number().int().min(50).default(500),
      /** Timeout of one probe. Default 1 s. */
      probeTimeoutMs: z.number().int().min(50).default(1_000),
      /** Roll back after this many failed probes in the bake window. Default 2. */
      maxFailedProbes: z.number().int().min(1).default(2),
      /** Wait this long for the new container to answer its first probe. Default 15 s. */
      startupMs: z.number().int().min(100).default(15_000),
      /** Behind the gateway: how long requests already on the old version may take to finish after a swap. Default 10 s. */
      drainMs: z.number().int().min(0).default(10_000),
      /**
       * A promoter's lease on an agent lasts this long unless renewed (it renews every third of it): a promoter that
       * died mid-bake is taken over by another replica this long after its last renewal. Default 10 s.
       */
      leaseTtlMs: z.number().int().min(1_000).default(10_000),
      /**
       * A recurrence of a promoted batch's fingerprint on its version (the curator's `moss.regression.v1`) rolls the
       * agent back when it comes within this long of the promotion; 0: never. During the bake it always does. Default 1 h.
       */
      rollbackOnRecurrenceMs: z.number().int().min(0).default(3_600_000),
      /** Stopped versions kept per agent for a rollback (behind the gateway). Default 3. */
      keepVersions: z.number().int().min(1).max(50).default(3),
      /**
       * Analysis of live traffic during the bake (behind the gateway), on the gateway's numbers. A probe fails when the
       * candidate's window (since the last probe, at least `minRequests` requests) crosses a threshold; `maxFailedProbes`
       * failed probes in a row roll back.
       */
      analysis: z
        .object({
          /** Requests a probe's window must hold before its error rate and latency are judged. Default 3. */
          minRequests: z.number().int().min(1).default(3),
          /** Error rate (5xx and connection failures) above which a probe fails, whatever the previous version did. Default 0.05. */
          maxErrorRate: z.number().min(0).max(1).default(0.05),
          /**
           * ... or above this many times the previous version's (its rate before the swap) and above `minErrorRate`. The
           * absolute limit holds even when the previous version failed more (it may have been failing the very way the
           * batch fixes). Default 2.
           */
          errorRateFactor: z.number().min(1).default(2),
          /** The relative check ignores rates up to this. Default 0.01. */
          minErrorRate: z.number().min(0).max(1).default(0.01),
          /** p95 latency above which a probe fails, ms. Default: none (only the relative check). */
          maxP95Ms: z.number().int().min(1).optional(),
          /** ... or above this many times the previous version's p95 plus `p95SlackMs`. Default 2. */
          p95Factor: z.number().min(1).default(2),
          /** Default 100 ms: a fast agent's p95 may double without meaning anything. */
          p95SlackMs: z.number().int().min(0).default(100),
        })
        .prefault({}),
    })
    .prefault({}),
  gateway: z
    .object({
      /** Where the gateway listens for the agents' traffic (each agent's `livePort`). Default 127.0.0.1. */
      host: z.string().default("127.0.0.1"),
      /** How often each gateway writes its per-version counters for the promoter. Default 250 ms. */
      statsIntervalMs: z.number().int().min(20).default(250),
      /** An upstream that has not answered within this long is a failed request (504). Default 120 s. */
      upstreamTimeoutMs: z.number().int().min(100).default(120_000),
      /** Largest request body the gateway takes (it holds a body to retry a request a stopped upstream refused). Default 8 MiB. */
      maxBodyBytes: z.number().int().min(1_024).default(8 * 1024 * 1024),
    })
    .prefault({}),
  auditor: z
    .object({
      /**
       * Webhooks the auditor calls (POST, JSON, `X-Moss-Signature: sha256=<HMAC of the body with secret>`), retried
       * with backoff until they answer 2xx: for the events each names (default all of them).
       */
      webhooks: z
        .array(
          z
            .object({
              url: z.string().url(),
              secret: z.string().min(16).optional(),
              events: z.array(z.enum(["awaiting-approval", "promoted", "rolled-back", "failed", "breaker-open"])).min(1).default(["awaiting-approval", "promoted", "rolled-back", "failed", "breaker-open"]),
            })
            .strict(),
        )
        .default([]),
      host: z.string().default("127.0.0.1"),
      /** Operator HTTP API port. Default 7420. */
      port: z.number().int().min(0).max(65535).default(7420),
      /** Records between two checkpoints of the audit log (a signed chain head and the segment since the last, in the blob store). Default 1000. */
      checkpointEvery: z.number().int().min(1).default(1_000),
    })
    .prefault({}),
  operatorApi: z
    .object({
      /** The operator API: approve, reject, reset. Default 127.0.0.1. */
      host: z.string().default("127.0.0.1"),
      /** Default 7422. */
      port: z.number().int().min(0).max(65535).default(7422),
      /**
       * Who may act: a JSON file `{ "operators": [{ "name": "alice", "tokenSha256": "<hex>" }] }` (`moss operator add`
       * writes it). Default `<dataDir>/credentials/operators.json`.
       */
      operatorsFile: z.string().optional(),
    })
    .prefault({}),
  /**
   * Every service's operations listener: `/healthz` (alive), `/readyz` (bus connected, consumers bound, last error) and
   * `/metrics` (Prometheus). `port` 0 (the default) takes a free port, said in the service's log; in a pod of its own
   * set it (`MOSS_OPS__PORT=9464`); several services on one machine take `ports.<service>` (a replica `curator#2`
   * takes that port + 1, and so on).
   */
  ops: z
    .object({
      host: z.string().default("127.0.0.1"),
      port: z.number().int().min(0).max(65535).default(0),
      ports: z.record(z.string(), z.number().int().min(1).max(65535)).default({}),
    })
    .prefault({}),
  /** Managed agents by name. */
  agents: z.record(AgentName, AgentConfig).default({}),
});
export type MossConfig = z.infer<typeof MossConfig>;
export type MossConfigInput = z.input<typeof MossConfig>;
