// Webhooks against a real HTTP server on loopback: signed bodies, the events each hook asked for, a failing hook
// retried (the handler throws a retryable error) without calling the hooks that already answered.
import { createHmac } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { deliver, eventOf, signature } from "@moss/auditor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

describe("webhooks", () => {
  let server: Server;
  let base = "";
  const got: Array<{ path: string; headers: Record<string, unknown>; body: string }> = [];
  let failing = 2;
  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        got.push({ path: req.url!, headers: req.headers, body });
        if (req.url === "/flaky" && failing-- > 0) {
          res.writeHead(503);
          return res.end();
        }
        res.writeHead(204);
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const promoted = { batchId: "b1", agent: "shop", attempt: 1, commit: "0123abcd", image: "moss/shop:0123abcd", outcome: "promoted", reason: "healthy", probes: { ok: 3, failed: 0 }, approvedBy: "alice" };

  it("names the events of the pipeline's messages", () => {
    expect(eventOf("batch.verdict.v1", { batchId: "b1", agent: "shop", attempt: 1, verdict: "awaiting-approval", reason: "replay passed" })?.event).toBe("awaiting-approval");
    expect(eventOf("batch.verdict.v1", { batchId: "b1", agent: "shop", attempt: 1, verdict: "needs-human", reason: "breaker" })?.event).toBe("breaker-open");
    expect(eventOf("batch.verdict.v1", { batchId: "b1", agent: "shop", attempt: 2, verdict: "exhausted", reason: "plateau" })?.event).toBe("failed");
    expect(eventOf("batch.verdict.v1", { batchId: "b1", agent: "shop", attempt: 1, verdict: "queued", reason: "rate" })).toBeUndefined();
    expect(eventOf("promotion.outcome.v1", { ...promoted, outcome: "rolled-back" })?.event).toBe("rolled-back");
    expect(eventOf("rollback.done.v1", { requestId: "r", agent: "shop", outcome: "rolled-back", to: { version: "0123abcd", image: "i" }, by: "bob", reason: "pager" })?.event).toBe("rolled-back");
  });

  it("signs the body with the hook's secret, sends only the events a hook asked for, and retries a failing hook alone", async () => {
    const secret = "s3cret-s3cret-s3cret";
    const hooks = [
      { url: `${base}/chat`, secret, events: ["promoted", "rolled-back"] as const },
      { url: `${base}/pager`, events: ["rolled-back"] as const },
      { url: `${base}/flaky`, secret, events: ["promoted"] as const },
    ];
    const deps = { hooks, delivered: new Set<string>() };
    // The flaky hook answers 503 twice: the message is retried (the bus redelivers it) until it answers.
    await expect(deliver("promotion.outcome.v1", promoted, "promotion.outcome.v1-7", deps)).rejects.toMatchObject({ retryable: true, message: expect.stringContaining("/flaky: answered 503") });
    await expect(deliver("promotion.outcome.v1", promoted, "promotion.outcome.v1-7", deps)).rejects.toThrow(/answered 503/);
    await deliver("promotion.outcome.v1", promoted, "promotion.outcome.v1-7", deps);
    expect(got.map((g) => g.path)).toEqual(["/chat", "/flaky", "/flaky", "/flaky"]);
    const chat = got[0]!;
    expect(chat.headers["x-moss-event"]).toBe("promoted");
    expect(chat.headers["x-moss-delivery"]).toBe("promotion.outcome.v1-7");
    expect(chat.headers["x-moss-signature"]).toBe(`sha256=${createHmac("sha256", secret).update(chat.body).digest("hex")}`);
    expect(chat.headers["x-moss-signature"]).toBe(signature(secret, chat.body));
    expect(JSON.parse(chat.body)).toMatchObject({ event: "promoted", agent: "shop", batchId: "b1", text: expect.stringContaining("shop batch b1: promoted") });
    // The pager asked only for rollbacks.
    await deliver("promotion.outcome.v1", { ...promoted, batchId: "b2", outcome: "rolled-back" }, "promotion.outcome.v1-8", deps);
    expect(got.slice(4).map((g) => g.path)).toEqual(["/chat", "/pager"]);
    expect(got[5]!.headers["x-moss-signature"]).toBeUndefined();
  });
});
