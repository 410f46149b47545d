// The whole loop as a user runs it (`moss demo`): real nats-server with its generated auth, the service processes, real Docker.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FIXED_ANSWER, requestRollback, runDemo, type DemoResult } from "@moss/cli";
import { agentIdentity, failureSubject } from "@moss/contracts";
import { jetstream } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectAs } from "../helpers/nats";
import { startOtlpReceiver } from "../helpers/otlp";

describe("end to end: a failure travels curate → rewrite → replay → promote → audit", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "moss-e2e-fix-"));
  const serviceLines: string[] = [];
  const progress: string[] = [];
  let otlp: Awaited<ReturnType<typeof startOtlpReceiver>>;
  let res: DemoResult;
  let badSeqLogged = 0;
  let manual: { done: Awaited<ReturnType<typeof requestRollback>>; traffic: { requests: number; failed: string[]; byVersion: Record<string, number> } } | undefined;

  beforeAll(async () => {
    otlp = await startOtlpReceiver();
    res = await runDemo({
      dataDir,
      agent: "e2efix",
      patch: "fix",
      otlpEndpoint: otlp.endpoint,
      env: { OTEL_BSP_SCHEDULE_DELAY: "100" },
      out: (l) => progress.push(l),
      serviceLog: (s, l) => serviceLines.push(`[${s}] ${l}`),
      // After the promotion, an operator rolls the fix back by hand, under steady chat: `moss rollback` through the
      // operator API, the promoter under the agent's lease, the route back on v1 at the gateway.
      afterPromotion: async ({ agent, config, steady }) => {
        const traffic = steady();
        await new Promise((r) => setTimeout(r, 500));
        const done = await requestRollback(config, agent, { reason: "e2e: by hand" });
        await new Promise((r) => setTimeout(r, 500));
        manual = { done, traffic: await traffic.stop() };
      },
      beforeTraffic: async ({ agent, config }) => {
        // Bad input from a buggy agent, with its own credential: valid JSON, wrong shape.
        const { nc } = await connectAs(config, agentIdentity(agent));
        await jetstream(nc).publish(failureSubject(agent), JSON.stringify({ id: "malformed-1", agent, error: "boom" }), { msgID: "malformed-1" });
        await nc.close();
      },
    });
    badSeqLogged = serviceLines.filter((l) => l.includes("message dead-lettered") && l.includes("moss.failure.e2efix")).length;
    // Give the exporters' last batch a moment to arrive.
    await new Promise((r) => setTimeout(r, 1_500));
  }, 400_000);

  afterAll(async () => {
    await otlp?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("v1 fails the request, the fixed agent answers it correctly after promotion", () => {
    expect(res.before.map((b) => b.status)).toEqual([500, 500, 500]);
    expect(res.outcome).toBe("promoted");
    expect(res.after?.status).toBe(200);
    expect(JSON.parse(res.after!.body).answer).toBe(FIXED_ANSWER);
    expect(res.liveImageAfter).not.toBe(res.v1.image);
    expect(res.ok).toBe(true);
  });

  it("through the gateway: the swap and the bake lost no request, and `moss rollback` puts v1 back by hand with none lost either", () => {
    expect(res.liveTraffic?.failed).toEqual([]);
    expect(Object.keys(res.liveTraffic!.byVersion)).toHaveLength(2);
    expect(manual?.done).toMatchObject({ outcome: "rolled-back", to: { version: res.v1.commit }, reason: expect.stringContaining("e2e: by hand") });
    expect(manual!.done.by).not.toBe("");
    expect(manual!.traffic.failed).toEqual([]);
    expect(manual!.traffic.byVersion[res.v1.commit]).toBeGreaterThan(0);
  });

  it("the batch timeline shows failures, the patch, replay results and the promotion", () => {
    const t = res.timeline!;
    expect(t.failures.length).toBe(3);
    expect(t.attempts.length).toBe(1);
    expect(t.attempts[0]!.filesChanged).toEqual(["src/router.ts"]);
    expect(t.attempts[0]!.diffText).toContain("src/router.ts");
    expect(t.attempts[0]!.replay!.every((r) => r.passed)).toBe(true);
    // The model stand-in was down during the replays: each trial's model call was answered from its cassette.
    expect(progress.some((l) => l.includes("stand-in stopped after"))).toBe(true);
    for (const r of t.attempts[0]!.replay!) expect(r.calls).toEqual([expect.objectContaining({ method: "POST", outcome: "matched", index: 0, url: expect.stringMatching(/\/v1\/chat\/completions$/) })]);
    expect(t.verdict).toBe("promoted");
    expect(t.timeline.map((e) => e.kind)).toEqual(expect.arrayContaining(["failure", "batch", "candidate", "replay", "promotion"]));
  });

  it("a malformed failure event is dead-lettered with its reason, logged once, and the services keep running", () => {
    expect(badSeqLogged).toBe(1);
    const line = serviceLines.find((l) => l.includes("message dead-lettered"))!;
    expect(line).toContain("failure.v1 on moss.failure.e2efix does not match its schema");
    // The story above completed after the bad message, so every service kept running.
    expect(res.ok).toBe(true);
  });

  it("with auth on, no Moss identity was refused anything the loop needs: the grants cover it, and nothing more was tried", () => {
    expect(serviceLines.filter((l) => l.startsWith("[nats]") && /Violation|authentication error/i.test(l))).toEqual([]);
  });

  it("spans from all five services share the batch's one trace id", () => {
    expect(res.traceId).toMatch(/^[0-9a-f]{32}$/);
    const services = new Set(otlp.spans.filter((s) => s.traceId === res.traceId).map((s) => s.service));
    expect([...services].sort()).toEqual(["auditor", "curator", "promoter", "replayer", "rewriter"]);
  });
});
