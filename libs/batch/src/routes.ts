/** The gateway's routes (`moss_routes`): read and written whole; every gateway watches them. */
import { kvGet, type KV } from "@moss/bus";
import { Route, type RouteTarget } from "@moss/contracts";

export interface RouteStore {
  get(agent: string): Promise<Route | undefined>;
  /** Sends all of the agent's traffic to one version. */
  point(agent: string, target: Omit<RouteTarget, "weight">, reason: string, stickyHeader?: string): Promise<Route>;
}

export function routeStore(kv: KV): RouteStore {
  return {
    async get(agent) {
      return (await kvGet(kv, agent, Route))?.value;
    },
    async point(agent, target, reason, stickyHeader) {
      const route = Route.parse({ agent, targets: [{ ...target, weight: 100 }], ...(stickyHeader ? { stickyHeader } : {}), reason, updatedAt: new Date().toISOString() });
      await kv.put(agent, JSON.stringify(route));
      return route;
    },
  };
}
