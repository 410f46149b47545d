// Leases over a real nats-server: one holder at a time, renewed while held, taken over once it ran out, and a holder
// that lost its lease finds out before it acts again.
import { LeaseHeldError, LeaseLostError, leaseStore } from "@moss/batch";
import type { KV } from "@moss/bus";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sleep, startEnv, type Env } from "../helpers/env";

describe("leases (moss_leases) over a real nats-server", () => {
  let env: Env;
  let kv: KV;
  beforeAll(async () => {
    env = await startEnv("leases-test");
    kv = await env.bucket("leases");
  });
  afterAll(async () => {
    await env?.stop();
  });

  it("one holder at a time: a second waits (LeaseHeldError, saying who holds it) until the first releases", async () => {
    const a = leaseStore(kv, "host-a:1");
    const b = leaseStore(kv, "host-b:2");
    const held = await a.acquire("promoter.shop", "batch b1", 2_000);
    const err = await b.acquire("promoter.shop", "batch b2", 2_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LeaseHeldError);
    expect((err as Error).message).toMatch(/promoter\.shop is held by host-a:1 \(batch b1\) for another [12] s/);
    expect((err as LeaseHeldError).retryable).toBe(true);
    // The same holder may take it again (a redelivery to the replica that holds it).
    const again = await a.acquire("promoter.shop", "batch b1", 2_000);
    await again.release();
    await held.release();
    const next = await b.acquire("promoter.shop", "batch b2", 2_000);
    expect((await b.get("promoter.shop"))?.holder).toBe("host-b:2");
    await next.release();
    expect(await b.get("promoter.shop")).toBeUndefined();
  });

  it("is renewed while held, so it outlives its ttl; one nobody renews is taken over, and says from whom", async () => {
    const a = leaseStore(kv, "host-a:1");
    const held = await a.acquire("promoter.bot", "batch b3", 600);
    await sleep(1_500);
    held.check();
    await expect(leaseStore(kv, "host-b:2").acquire("promoter.bot", "batch b4", 600)).rejects.toBeInstanceOf(LeaseHeldError);
    await held.release();
    // A holder that died: its last renewal is in KV, and nothing renews it any more.
    await kv.put("promoter.dead", JSON.stringify({ holder: "host-c:3", work: "batch b5", renewedAt: new Date().toISOString(), ttlMs: 500 }));
    const c = leaseStore(kv, "host-d:4");
    await expect(c.acquire("promoter.dead", "batch b5", 500)).rejects.toBeInstanceOf(LeaseHeldError);
    await sleep(600);
    const taken = await c.acquire("promoter.dead", "batch b5", 500);
    expect(await c.get("promoter.dead")).toMatchObject({ holder: "host-d:4", takenFrom: "host-c:3" });
    await taken.release();
  });

  it("a holder whose lease was taken while it stalled finds out at its next check, and its release leaves the new holder's lease alone", async () => {
    const a = leaseStore(kv, "host-a:1");
    const held = await a.acquire("promoter.stall", "batch b6", 300);
    // Someone takes it by force (as a replica would after a ttl the holder missed).
    const cur = await kv.get("promoter.stall");
    await kv.update("promoter.stall", JSON.stringify({ holder: "host-b:2", work: "batch b6", renewedAt: new Date().toISOString(), ttlMs: 60_000 }), cur!.revision);
    await sleep(300);
    expect(() => held.check()).toThrow(LeaseLostError);
    expect(() => held.check()).toThrow(/taken over by host-b:2/);
    await held.release();
    expect((await a.get("promoter.stall"))?.holder).toBe("host-b:2");
  });
});
