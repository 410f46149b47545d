/** The gateway's routes (`moss_routes`): read and written whole; every gateway watches them. */
import { kvGet, type KV } from "@moss/bus";
import { Route, type RouteTarget } from "@moss/contracts";

export interface RouteStore {
  get(agent: string): Promise<Route | undefined>;
  /** Sends all of the agent's traffic to one version. */
  point(agent: string, target: Omit<RouteTarget, "weight">, reason: string, stickyHeader?: string): Promise<Route>;
  /** Splits new sessions between two versions by weight (a canary step); with `stickyHeader`, a session stays on one. */
  split(agent: string, targets: [RouteTarget, RouteTarget], reason: string, stickyHeader?: string): Promise<Route>;
}

export function routeStore(kv: KV): RouteStore {
  const write = async (agent: string, targets: RouteTarget[], reason: string, stickyHeader?: string) => {
    const route = Route.parse({ agent, targets, ...(stickyHeader ? { stickyHeader } : {}), reason, updatedAt: new Date().toISOString() });
    await kv.put(agent, JSON.stringify(route));
    return route;
  };
  return {
    async get(agent) {
      return (await kvGet(kv, agent, Route))?.value;
    },
    point(agent, target, reason, stickyHeader) {
      return write(agent, [{ ...target, weight: 100 }], reason, stickyHeader);
    },
    split(agent, targets, reason, stickyHeader) {
      return write(agent, targets, reason, stickyHeader);
    },
  };
}
