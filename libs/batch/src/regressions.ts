/**
 * An agent's regression set: the recorded successes every candidate of it is replayed on. Bounded and diverse — the
 * newest recording of each question kept, spread over routes, the oldest of the most-recorded route evicted first,
 * never a pinned case — and changed only by compare-and-set, here (the curator admits, operators pin and drop).
 */
import { createHash } from "node:crypto";
import { kvGet, kvUpdate, type KV } from "@moss/bus";
import { Buckets, describeInput, RegressionSet, type BlobRef, type RegressionCase, type SuccessEvent } from "@moss/contracts";

/** What an agent's config says of its regression set. */
export interface RegressionPolicy {
  /** Most cases kept. */
  size: number;
}

/** The route a recorded success counts under: its own, else its method and path (no query), else its command. */
export function routeOf(ev: Pick<SuccessEvent, "route" | "request" | "invocation">): string {
  if (ev.route) return ev.route;
  if (ev.request) return `${ev.request.method} ${ev.request.path.split("?")[0]}`;
  return `run ${ev.invocation?.args[0] ?? ""}`.trim();
}

/** The same question asked again: same route, same request (method, path, body) or invocation (args, stdin). */
export function questionKey(ev: Pick<SuccessEvent, "route" | "request" | "invocation">): string {
  const q = ev.request ? [ev.request.method, ev.request.path, ev.request.body ?? ""] : [...(ev.invocation?.args ?? []), "\0", ev.invocation?.stdin ?? ""];
  return createHash("sha256").update(JSON.stringify([routeOf(ev), ...q])).digest("hex").slice(0, 32);
}

/** A recorded success as a case of the set, its event stored at `event`. */
export function caseOf(ev: SuccessEvent, event: BlobRef): RegressionCase {
  const body = ev.request?.body ?? ev.invocation?.stdin;
  const input = `${describeInput(ev)}${body ? ` ${body.replace(/\s+/g, " ").slice(0, 120)}` : ""}`;
  return { id: ev.id, route: routeOf(ev).slice(0, 200), input: input.slice(0, 300), key: questionKey(ev), status: ev.response.status, version: ev.version, occurredAt: ev.occurredAt, event };
}

/** What admitting a case did: kept (replacing an older recording of the same question, or evicting one), or not. */
export type Admission = { kept: true; replaced?: string; evicted?: string } | { kept: false; why: string };

/**
 * The set with `c` admitted. The same question recorded again replaces its older case (a pin moves with it); a full
 * set makes room by evicting the oldest unpinned case of the route with the most cases — so every route keeps some —
 * unless the new case's own route is that one and the new case is the oldest; a set of pinned cases only takes no more.
 */
export function admit(cases: readonly RegressionCase[], c: RegressionCase, policy: RegressionPolicy): { cases: RegressionCase[]; admission: Admission } {
  if (cases.some((x) => x.id === c.id)) return { cases: [...cases], admission: { kept: false, why: "already in the set" } };
  const same = cases.find((x) => x.key === c.key);
  if (same) {
    if (same.occurredAt > c.occurredAt) return { cases: [...cases], admission: { kept: false, why: `a newer recording of the same question (${same.id}) is kept` } };
    const next = cases.map((x) => (x === same ? { ...c, ...(same.pinned ? { pinned: same.pinned } : {}) } : x));
    return { cases: next, admission: { kept: true, replaced: same.id } };
  }
  if (cases.length < policy.size) return { cases: [...cases, c], admission: { kept: true } };
  if (cases.every((x) => x.pinned)) return { cases: [...cases], admission: { kept: false, why: `the set is full (${policy.size}) of pinned cases: drop or unpin one` } };
  const byRoute = new Map<string, RegressionCase[]>();
  for (const x of [...cases, c]) if (!x.pinned) byRoute.set(x.route, [...(byRoute.get(x.route) ?? []), x]);
  const crowded = [...byRoute.values()].sort((a, b) => b.length - a.length || oldest(a).occurredAt.localeCompare(oldest(b).occurredAt))[0]!;
  const victim = oldest(crowded);
  if (victim === c) return { cases: [...cases], admission: { kept: false, why: `its route ${c.route} has the most cases and this recording is the oldest of them` } };
  return { cases: [...cases.filter((x) => x !== victim), c], admission: { kept: true, evicted: victim.id } };
}

const oldest = (xs: readonly RegressionCase[]): RegressionCase => xs.reduce((a, b) => (b.occurredAt < a.occurredAt ? b : a));

/**
 * The cases a candidate is replayed on: every pinned one, then up to `k` in all, taken newest first from each route in
 * turn, so a few routes with many recordings do not crowd out the rest. All of them when the set is small.
 */
export function chooseCases(cases: readonly RegressionCase[], k: number): RegressionCase[] {
  const pinned = cases.filter((c) => c.pinned);
  const queues = new Map<string, RegressionCase[]>();
  for (const c of [...cases].filter((c) => !c.pinned).sort((a, b) => b.occurredAt.localeCompare(a.occurredAt))) queues.set(c.route, [...(queues.get(c.route) ?? []), c]);
  const out = [...pinned];
  while (out.length < k && [...queues.values()].some((q) => q.length)) {
    for (const q of queues.values()) {
      const next = q.shift();
      if (next && out.length < k) out.push(next);
    }
  }
  return out;
}

export interface RegressionStore {
  get(agent: string): Promise<RegressionSet | undefined>;
  /** Admits a recorded success (its event already in the blob store). */
  admit(ev: SuccessEvent, event: BlobRef, policy: RegressionPolicy): Promise<Admission>;
  /** Pins (or unpins) a case: pinned, it is never evicted and every candidate replays it. Undefined: no such case. */
  pin(agent: string, id: string, by: string | undefined): Promise<RegressionCase | undefined>;
  /** Drops a case from the set (its event stays in the blob store). Undefined: no such case. */
  drop(agent: string, id: string): Promise<RegressionCase | undefined>;
}

export function regressionStore(kv: KV): RegressionStore {
  const change = async (agent: string, fn: (cases: RegressionCase[]) => RegressionCase[] | undefined, seen = 0): Promise<void> => {
    await kvUpdate(
      kv,
      agent,
      RegressionSet,
      (cur) => {
        const next = fn(cur?.cases ?? []);
        if (!next && !seen) return undefined;
        return { agent, cases: next ?? cur?.cases ?? [], seen: (cur?.seen ?? 0) + seen, updatedAt: new Date().toISOString() };
      },
      Buckets.regressions,
    );
  };
  return {
    get: async (agent) => (await kvGet(kv, agent, RegressionSet))?.value,
    async admit(ev, event, policy) {
      let admission: Admission = { kept: false, why: "not admitted" };
      await change(
        ev.agent,
        (cases) => {
          const r = admit(cases, caseOf(ev, event), policy);
          admission = r.admission;
          return r.admission.kept ? r.cases : undefined;
        },
        1,
      );
      return admission;
    },
    async pin(agent, id, by) {
      let found: RegressionCase | undefined;
      await change(agent, (cases) => {
        const c = cases.find((x) => x.id === id);
        if (!c) return undefined;
        const { pinned: _was, ...rest } = c;
        found = by ? { ...rest, pinned: { by, at: new Date().toISOString() } } : rest;
        return cases.map((x) => (x === c ? found! : x));
      });
      return found;
    },
    async drop(agent, id) {
      let found: RegressionCase | undefined;
      await change(agent, (cases) => {
        found = cases.find((x) => x.id === id);
        return found ? cases.filter((x) => x !== found) : undefined;
      });
      return found;
    },
  };
}
