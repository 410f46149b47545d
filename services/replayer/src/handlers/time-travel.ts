/**
 * Time travel, the replayer's part: the stored turns of a `moss replay` against the version the rewriter made ready,
 * each in its own ephemeral trial, like a candidate's — a failure judged by the same predicates (so an old failure
 * against its own version reproduces: it fails again), a recorded success compared with its recording. The results go
 * into the request's record and out as `time-travel.done`; a case that cannot run is an `error` result with why.
 */
import type { TimeTravelStore } from "@moss/batch";
import type { HandlerContext } from "@moss/bus";
import { Consumers, Messages, type RegressionResult, type ReplayResult, type TimeTravelCase, type TimeTravelReady } from "@moss/contracts";
import { isTerminal } from "@moss/errors";
import { errorResult, regressionErrorResult, replayCase, replayOne, type ReplayerDeps, type Target } from "./replay";

export interface TimeTravelDeps extends Pick<ReplayerDeps, "agent" | "blob" | "runtime" | "publish" | "log" | "grade"> {
  travels: TimeTravelStore;
  /** Trials at once. */
  concurrency: number;
}

export async function onTimeTravelReady(msg: TimeTravelReady, deps: TimeTravelDeps, ctx?: Pick<HandlerContext, "deliveryCount" | "working">): Promise<void> {
  const log = deps.log.child({ travel: msg.id, agent: msg.agent, version: msg.version, commit: msg.commit });
  const cur = await deps.travels.get(msg.id);
  if (cur && (cur.state === "done" || cur.state === "failed")) return; // a redelivery of a finished request
  const lastDelivery = (ctx?.deliveryCount ?? 1) >= Consumers.replayerTimeTravel.maxDeliver;
  const target: Target = { agent: msg.agent, image: msg.image, commit: msg.commit, labels: { "moss.time-travel": msg.id } };
  let agent: ReturnType<ReplayerDeps["agent"]>;
  try {
    agent = deps.agent(msg.agent);
  } catch (err) {
    return finish(msg, deps, { error: `cannot replay for agent ${msg.agent}: ${(err as Error).message}` });
  }
  const run = async (c: TimeTravelCase): Promise<ReplayResult | RegressionResult> => {
    try {
      return c.kind === "failure" ? await replayOne(c.event, target, agent, deps) : await replayCase(c, target, agent, deps);
    } catch (err) {
      // The engine or the blob store away: the whole request is tried again, up to its last delivery.
      if (!isTerminal(err) && !lastDelivery) throw err;
      const reason = `could not be replayed: ${(err as Error).message}`;
      return c.kind === "failure" ? errorResult(c.id, reason) : regressionErrorResult(c.id, reason);
    } finally {
      ctx?.working();
    }
  };
  const out = await inBatches(msg.cases, Math.max(1, deps.concurrency), run);
  const results = out.filter((_, i) => msg.cases[i]!.kind === "failure") as ReplayResult[];
  const regressions = out.filter((_, i) => msg.cases[i]!.kind === "regression") as RegressionResult[];
  log.info("time-travel replay finished", { cases: msg.cases.length, passed: out.filter((r) => r.passed).length });
  await finish(msg, deps, { results, regressions });
}

async function finish(msg: TimeTravelReady, deps: TimeTravelDeps, o: { results?: ReplayResult[]; regressions?: RegressionResult[]; error?: string }): Promise<void> {
  const results = o.results ?? [];
  const regressions = o.regressions ?? [];
  await deps.travels.update(msg.id, () => ({ state: o.error ? "failed" : "done", results, regressions, ...(o.error ? { error: o.error } : {}) }));
  await deps.publish(Messages.timeTravelDone, {
    requestId: msg.id,
    agent: msg.agent,
    version: msg.version,
    commit: msg.commit,
    image: msg.image,
    built: msg.built,
    ...(o.error ? { error: o.error } : {}),
    results,
    regressions,
    at: new Date().toISOString(),
  });
}

/** `fn` over `items`, at most `n` at once, results in order. */
async function inBatches<T, R>(items: readonly T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}
