/**
 * Webhooks: the events an operator's chat or pager wants, POSTed to each configured URL that subscribes to them —
 * awaiting-approval, promoted, rolled-back, failed, breaker-open. A body is JSON, signed with the hook's secret
 * (`X-Moss-Signature: sha256=<hex HMAC of the body>`), with a delivery id that stays the same on every retry
 * (`X-Moss-Delivery`). A hook that does not answer 2xx makes the message come back with backoff (the bus's), so it is
 * retried until it answers or the message runs out of deliveries (then dead-lettered, with the reason). One hook's
 * success is remembered, so a retry for another hook does not call it twice.
 */
import { createHmac } from "node:crypto";
import { MossError, Codes } from "@moss/errors";
import type { BatchVerdict, PromotionOutcome, RollbackDone } from "@moss/contracts";

export const WEBHOOK_EVENTS = ["awaiting-approval", "promoted", "rolled-back", "failed", "breaker-open"] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

export interface Webhook {
  url: string;
  secret?: string;
  events: readonly WebhookEvent[];
}

/** The event a pipeline message is, if any. */
export function eventOf(kind: string, m: unknown): { event: WebhookEvent; batchId?: string; agent: string; text: string } | undefined {
  if (kind === "batch.verdict.v1") {
    const v = m as BatchVerdict;
    const event: WebhookEvent | undefined = v.verdict === "awaiting-approval" ? "awaiting-approval" : v.verdict === "needs-human" ? "breaker-open" : v.verdict === "exhausted" || v.verdict === "rejected" ? "failed" : undefined;
    return event && { event, batchId: v.batchId, agent: v.agent, text: `${v.agent} batch ${v.batchId}: ${v.verdict}: ${v.reason}` };
  }
  if (kind === "promotion.outcome.v1") {
    const o = m as PromotionOutcome;
    const event: WebhookEvent = o.outcome === "promoted" ? "promoted" : o.outcome === "rolled-back" ? "rolled-back" : "failed";
    return { event, batchId: o.batchId, agent: o.agent, text: `${o.agent} batch ${o.batchId}: ${o.outcome} ${o.image}: ${o.reason}` };
  }
  if (kind === "rollback.done.v1") {
    const d = m as RollbackDone;
    return d.outcome === "rolled-back" ? { event: "rolled-back", agent: d.agent, text: `${d.agent} rolled back to ${d.to?.version.slice(0, 12)} by ${d.by}: ${d.reason}` } : undefined;
  }
  return undefined;
}

/** The signature header value of a body under a secret. */
export function signature(secret: string, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

export interface WebhookDeps {
  hooks: readonly Webhook[];
  /** Deliveries already made (`<delivery id> <url>`), so a retry for one hook does not repeat another. */
  delivered: Set<string>;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/** Sends one message's event to every hook that wants it; throws (retryable) while any of them has not answered 2xx. */
export async function deliver(kind: string, payload: unknown, deliveryId: string, deps: WebhookDeps): Promise<void> {
  const e = eventOf(kind, payload);
  if (!e) return;
  const body = JSON.stringify({ event: e.event, agent: e.agent, ...(e.batchId ? { batchId: e.batchId } : {}), text: e.text, message: { kind, payload }, delivery: deliveryId });
  const failed: string[] = [];
  for (const h of deps.hooks) {
    if (!h.events.includes(e.event)) continue;
    const key = `${deliveryId} ${h.url}`;
    if (deps.delivered.has(key)) continue;
    try {
      const res = await (deps.fetch ?? fetch)(h.url, {
        method: "POST",
        headers: { "content-type": "application/json", "x-moss-event": e.event, "x-moss-delivery": deliveryId, ...(h.secret ? { "x-moss-signature": signature(h.secret, body) } : {}) },
        body,
        signal: AbortSignal.timeout(deps.timeoutMs ?? 5_000),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (!res.ok) throw new Error(`answered ${res.status}`);
      deps.delivered.add(key);
      if (deps.delivered.size > 10_000) deps.delivered.delete(deps.delivered.values().next().value!);
    } catch (err) {
      failed.push(`${h.url}: ${(err as Error).name === "TimeoutError" ? "no answer in time" : (err as Error).message}`);
    }
  }
  if (failed.length) throw new MossError(Codes.WEBHOOK_FAILED, `webhook ${e.event} not delivered to ${failed.join("; ")}; retrying with backoff`, { retryable: true });
}
