import { context, extractContext, injectContext, startTelemetry, trace, traceIdOf, withSpan, type Telemetry } from "@moss/telemetry";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

let telemetry: Telemetry;
beforeAll(() => {
  telemetry = startTelemetry({ serviceName: "t" });
});
afterAll(async () => {
  await telemetry.shutdown();
});

describe("trace context in message headers", () => {
  it("a publisher's span reaches the consumer through headers: same trace, the consumer's span is a child", async () => {
    let headers: Record<string, string> = {};
    let publisher = { traceId: "", spanId: "" };
    await withSpan("publish moss.batch.ready.v1", { batch: "b-1" }, async (span) => {
      publisher = span.spanContext();
      headers = injectContext({ "Nats-Msg-Id": "batch-b-1" });
    });
    expect(headers["traceparent"]).toBe(`00-${publisher.traceId}-${publisher.spanId}-01`);
    expect(headers["Nats-Msg-Id"]).toBe("batch-b-1");
    expect(traceIdOf(headers)).toBe(publisher.traceId);

    // Elsewhere, later, with no active span: the consumer joins the publisher's trace.
    expect(trace.getActiveSpan()).toBeUndefined();
    let consumer = { traceId: "", spanId: "" };
    let parentSpanId: string | undefined;
    await withSpan(
      "consume moss.batch.ready.v1",
      {},
      async (span) => {
        consumer = span.spanContext();
        parentSpanId = (span as unknown as { parentSpanContext?: { spanId: string } }).parentSpanContext?.spanId;
      },
      extractContext(headers),
    );
    expect(consumer.traceId).toBe(publisher.traceId);
    expect(consumer.spanId).not.toBe(publisher.spanId);
    expect(parentSpanId).toBe(publisher.spanId);
  });

  it("without an active span nothing is injected and there is no trace id", () => {
    const carrier = injectContext({}, context.active());
    expect(carrier).toEqual({});
    expect(traceIdOf(carrier)).toBeUndefined();
  });

  it("withSpan drops undefined attributes and records a failure on the span", async () => {
    let recorded: { attributes?: Record<string, unknown>; status?: { code: number; message?: string }; ended?: boolean } = {};
    await expect(
      withSpan("replay", { batch: "b-1", attempt: 2, commit: undefined }, async (span) => {
        recorded = span as unknown as typeof recorded;
        throw new Error("container exited 137");
      }),
    ).rejects.toThrow("container exited 137");
    expect(recorded.attributes).toEqual({ batch: "b-1", attempt: 2 });
    expect(recorded.status).toEqual({ code: 2, message: "container exited 137" });
    expect(recorded.ended).toBe(true);
  });
});
