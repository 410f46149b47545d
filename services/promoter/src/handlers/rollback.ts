/**
 * An operator's rollback (`moss rollback AGENT [--to VERSION]`): no consent, under the agent's lease, audited by its
 * request and its outcome on the bus. Behind the gateway: the kept version starts again, passes its readiness probe,
 * the route moves to it, the version it replaces finishes what it has in flight and stops (kept). In place: the kept
 * previous container is put back. A request older than the agent's last deployment is stale and changes nothing, so a
 * repeated or late message can never roll back into a loop.
 */
import { Messages, type RollbackDone, type RollbackRequest } from "@moss/contracts";
import { Codes } from "@moss/errors";
import { waitDrained } from "@moss/batch";
import type { ServedVersion } from "@moss/runtime";
import { targetOf, waitReady } from "../promotion/gateway";
import type { PromotionDeps } from "../deps";

export async function onRollbackRequest(msg: RollbackRequest, deps: PromotionDeps): Promise<void> {
  const held = deps.leases ? await deps.leases.acquire(`promoter.${msg.agent}`, `rollback ${msg.id}`, deps.leaseTtlMs ?? 10_000) : undefined;
  try {
    const done = await rollBackAgent(msg, held ? { ...deps, held } : deps);
    await deps.publish(Messages.rollbackDone, done);
    deps.log[done.outcome === "rolled-back" ? "info" : "warn"]("operator rollback", { agent: msg.agent, by: msg.by, outcome: done.outcome, reason: done.reason });
  } finally {
    await held?.release();
  }
}

async function rollBackAgent(msg: RollbackRequest, deps: PromotionDeps): Promise<RollbackDone> {
  const base = { requestId: msg.id, agent: msg.agent, by: msg.by };
  const refuse = (reason: string): RollbackDone => ({ ...base, outcome: "refused", reason });
  const dep = await deps.deployments.get(msg.agent);
  if (!dep) return refuse(`${msg.agent} has no deployment to roll back (moss deploy ${msg.agent} makes the first)`);
  const why = msg.reason ? `: ${msg.reason}` : "";
  const stale = Date.parse(dep.updatedAt) > Date.parse(msg.at) ? `stale: ${msg.agent} was deployed again at ${dep.updatedAt}, after this request (${msg.at}); nothing was changed` : undefined;

  if (deps.serve(msg.agent).mode !== "gateway") {
    // In place there is one kept version: the one before the live one.
    if (msg.to && !dep.previous?.version.startsWith(msg.to)) return refuse(`in place only the previous version (${dep.previous?.version.slice(0, 12) ?? "none"}) is kept; ${msg.to} is not it`);
    if (stale) return refuse(stale);
    try {
      const r = await deps.runtime.rollbackLive(msg.agent);
      await deps.deployments.record(msg.agent, (cur) => ({ agent: msg.agent, lastGood: cur?.lastGood ?? [], image: r.image, version: dep.previous!.version, container: r.container, previous: { image: dep.image, version: dep.version, container: dep.container }, updatedAt: new Date().toISOString() }));
      return { ...base, outcome: "rolled-back", from: { version: dep.version, image: dep.image }, to: { version: dep.previous!.version, image: r.image }, reason: `rolled back by ${msg.by}${why}` };
    } catch (err) {
      if ((err as { code?: string }).code === Codes.NO_PREVIOUS_VERSION.code) return refuse((err as Error).message);
      throw err;
    }
  }

  const route = await deps.routes.get(msg.agent);
  const current = route?.targets[0];
  const kept = await deps.runtime.servedVersions(msg.agent);
  // Without --to: the newest last-known-good version that is not the live one (else the version before the live one).
  const good = dep.lastGood.find((g) => g.version !== current?.version && kept.some((v) => v.container === g.container));
  const target: ServedVersion | undefined = msg.to
    ? kept.find((v) => v.version.startsWith(msg.to!) && v.container !== current?.container)
    : (good ? kept.find((v) => v.container === good.container) : undefined) ?? kept.find((v) => v.container === dep.previous?.container) ?? kept.find((v) => v.version === dep.previous?.version);
  // A redelivery of a request already done: the route is on the version it asked for.
  if (current && target && current.container === target.container) return { ...base, outcome: "rolled-back", from: dep.previous ? { version: dep.previous.version, image: dep.previous.image } : undefined, to: { version: target.version, image: target.image }, reason: `already on ${target.version.slice(0, 12)}` };
  if (stale) return refuse(stale);
  if (!target) {
    const list = kept.filter((v) => v.container !== current?.container).map((v) => v.version.slice(0, 12));
    return refuse(msg.to ? `no kept version of ${msg.agent} matches ${msg.to} (kept: ${list.join(", ") || "none"})` : `${msg.agent} has no previous version kept to roll back to`);
  }
  const up = target.running ? target : await deps.runtime.resumeVersion(target.container);
  const notReady = await waitReady(deps, up, deps.serve(msg.agent).healthPath);
  if (notReady !== undefined) {
    await deps.runtime.stopVersion(up.container);
    return refuse(`${up.version.slice(0, 12)} did not pass its readiness probe within ${deps.bake.startupMs} ms (${notReady}); the route was not changed`);
  }
  deps.held?.check();
  await deps.routes.point(msg.agent, targetOf(up), `moss rollback by ${msg.by}${why}`);
  if (current) {
    await waitDrained(() => deps.liveStats(msg.agent), current.version, deps.bake.drainMs, deps.statsIntervalMs, deps.sleep);
    await deps.runtime.stopVersion(current.container);
  }
  await deps.deployments.record(msg.agent, (cur) => ({
    agent: msg.agent,
    lastGood: cur?.lastGood ?? [],
    image: up.image,
    version: up.version,
    container: up.container,
    ...(current ? { previous: { image: current.image, version: current.version, container: current.container } } : {}),
    updatedAt: new Date().toISOString(),
  }));
  return { ...base, outcome: "rolled-back", ...(current ? { from: { version: current.version, image: current.image } } : {}), to: { version: up.version, image: up.image }, reason: `rolled back by ${msg.by}${why}` };
}
