import { createLogger, startTelemetry, trace, withSpan, type Telemetry } from "@moss/telemetry";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";

type Line = Record<string, unknown>;

/** A logger whose lines are collected (the raw strings, to check they are single JSON lines). */
function capture(opts: Parameters<typeof createLogger>[1] = {}) {
  const raw: string[] = [];
  const log = createLogger("curator", { ...opts, write: (l) => raw.push(l) });
  const lines = (): Line[] =>
    raw.map((l) => {
      expect(l).not.toContain("\n");
      return JSON.parse(l) as Line;
    });
  return { log, raw, lines };
}

let telemetry: Telemetry;
beforeAll(() => {
  telemetry = startTelemetry({ serviceName: "t" });
});
afterAll(async () => {
  await telemetry.shutdown();
});
afterEach(() => {
  vi.restoreAllMocks();
});

describe("createLogger", () => {
  it("writes one JSON object per call with time, level, message, service and fields", () => {
    const { log, raw, lines } = capture();
    const before = Date.now();
    log.info("batch closed", { batchId: "b-1", count: 3 });
    log.error("publish failed", { attempt: 2 });
    expect(raw).toHaveLength(2);
    const [a, b] = lines();
    expect(a).toEqual({ t: expect.any(String), level: "info", msg: "batch closed", service: "curator", batchId: "b-1", count: 3 });
    expect(Date.parse(a!["t"] as string)).toBeGreaterThanOrEqual(before - 1);
    expect(b).toMatchObject({ level: "error", msg: "publish failed", attempt: 2 });
    // Outside any span there is no trace id to report.
    expect(a).not.toHaveProperty("trace_id");
  });

  it("drops lines below the level; the default level is info", () => {
    const dflt = capture();
    dflt.log.debug("noise");
    dflt.log.info("kept");
    expect(dflt.lines().map((l) => l["msg"])).toEqual(["kept"]);

    const warn = capture({ level: "warn" });
    warn.log.debug("d");
    warn.log.info("i");
    warn.log.warn("w");
    warn.log.error("e");
    expect(warn.lines().map((l) => l["level"])).toEqual(["warn", "error"]);

    const debug = capture({ level: "debug" });
    debug.log.debug("d");
    expect(debug.lines().map((l) => l["level"])).toEqual(["debug"]);
  });

  it("a child adds its fields to every line, keeps the parent's level, and leaves the parent alone", () => {
    const { log, lines } = capture({ level: "warn", fields: { pid: 42 } });
    const child = log.child({ batchId: "b-9" });
    const grandchild = child.child({ attempt: 2 });
    child.info("dropped: below warn");
    grandchild.warn("slow rewrite", { ms: 1200 });
    log.warn("parent");
    expect(lines()).toEqual([
      { t: expect.any(String), level: "warn", msg: "slow rewrite", service: "curator", pid: 42, batchId: "b-9", attempt: 2, ms: 1200 },
      { t: expect.any(String), level: "warn", msg: "parent", service: "curator", pid: 42 },
    ]);
  });

  it("serializes an Error field with its name, message, code and stack", () => {
    const { log, lines } = capture();
    const err = Object.assign(new Error("no responders"), { code: "MOSS_E_BUS_UNAVAILABLE" });
    log.error("publish failed", { err, plain: new TypeError("bad") });
    const [line] = lines();
    expect(line!["err"]).toEqual({ name: "Error", message: "no responders", code: "MOSS_E_BUS_UNAVAILABLE", stack: err.stack });
    expect((line!["err"] as { stack: string }).stack).toContain("log.test.ts");
    expect(line!["plain"]).toMatchObject({ name: "TypeError", message: "bad" });
  });

  it("by default writes the line to stderr, newline-terminated", () => {
    const spy = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    createLogger("promoter").warn("rollback", { agent: "shop" });
    expect(spy).toHaveBeenCalledTimes(1);
    const written = String(spy.mock.calls[0]![0]);
    expect(written.endsWith("}\n")).toBe(true);
    expect(JSON.parse(written)).toMatchObject({ level: "warn", msg: "rollback", service: "promoter", agent: "shop" });
  });

  it("adds the active span's trace id, so a log line leads to its trace", async () => {
    const { log, lines } = capture();
    let traceId = "";
    await withSpan("curator.batch", { batchId: "b-1" }, async (span) => {
      traceId = span.spanContext().traceId;
      log.info("inside");
      await new Promise((r) => setTimeout(r, 1));
      // Still the same trace after an await: the context follows the async flow.
      log.info("after await");
    });
    log.info("outside");
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(traceId).not.toBe("0".repeat(32));
    expect(lines().map((l) => l["trace_id"])).toEqual([traceId, traceId, undefined]);
    expect(trace.getActiveSpan()).toBeUndefined();
  });

  it("a nested span logs the same trace id; separate spans log different ones", async () => {
    const { log, lines } = capture();
    await withSpan("outer", {}, async () => {
      log.info("outer");
      await withSpan("inner", {}, async () => log.info("inner"));
    });
    await withSpan("other", {}, async () => log.info("other"));
    const ids = lines().map((l) => l["trace_id"]);
    expect(ids[0]).toBeDefined();
    expect(ids[1]).toBe(ids[0]);
    expect(ids[2]).not.toBe(ids[0]);
  });

  it("withSpan ends the span and rethrows when the work fails; lines logged inside still carry the trace", async () => {
    const { log, lines } = capture();
    await expect(
      withSpan("failing", {}, async () => {
        log.error("about to fail");
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    expect(lines()[0]!["trace_id"]).toMatch(/^[0-9a-f]{32}$/);
  });
});
