import { createHash } from "node:crypto";
import { ConfigError } from "@moss/config";
import { describe, expect, it } from "vitest";
import { FINGERPRINT_VERSION, createFingerprinter } from "@moss/curator";
import {
  event,
  expressToolStack,
  fastifyAsyncStack,
  fetchFailedStack,
  pythonChainedTrace,
  pythonKeyErrorTrace,
  socketHangUpStack,
  type Root,
} from "./fixtures";

const fp = createFingerprinter();

describe("default fingerprint: Node", () => {
  it("reads as type | message | in-app frames | route | tool | stage", () => {
    const r = fp(event());
    expect(r).toEqual({
      fingerprint:
        "TypeError | Cannot read properties of undefined (reading <str>) | src/tools/search.ts#parseArgs < src/tools/registry.ts#Object.invoke < src/agent/dispatch.ts#dispatch | route=/v1/chat | tool=search | stage=act",
      key: createHash("sha256").update(`fp2\n${r.fingerprint}`).digest("hex").slice(0, 20),
      version: "fp2",
      source: "default",
    });
    expect(FINGERPRINT_VERSION).toBe("fp2");
    expect(r.key).toMatch(/^[0-9a-f]{20}$/);
  });

  it("groups one root cause across line numbers, quoted values in the message and deploy roots", () => {
    const roots: Root[] = ["app", "srv", "home", "esm", "win"];
    const keys = new Set(
      roots.map((root, i) =>
        fp(
          event({
            error: {
              type: "TypeError",
              message: `Cannot read properties of undefined (reading '${["query", "q", "text", "input", "args"][i]}')`,
              stack: expressToolStack({ root, line: 31 + i * 7 }),
            },
          }),
        ).key,
      ),
    );
    expect(keys.size).toBe(1);
  });

  it("skips library frames thrown inside node_modules and collapses recursion in an async chain", () => {
    const a = fp(event({ error: { type: "TypeError", message: "Cannot read properties of undefined (reading 'map')", stack: fastifyAsyncStack() } }));
    expect(a.fingerprint).toContain("src/tools/search.ts#searchWeb < src/agent/tools.ts#Object.runTool < src/agent/loop.ts#Agent.step |");
    const b = fp(
      event({ error: { type: "TypeError", message: "Cannot read properties of undefined (reading 'map')", stack: fastifyAsyncStack({ root: "win", line: 61 }) } }),
    );
    expect(b.key).toBe(a.key);
  });

  it("separates a different function, error type, route, tool or stage", () => {
    const base = fp(event()).key;
    const variants = [
      event({ error: { type: "TypeError", message: "Cannot read properties of undefined (reading 'query')", stack: expressToolStack({ fn: "buildQuery" }) } }),
      event({ error: { type: "RangeError", message: "Cannot read properties of undefined (reading 'query')", stack: expressToolStack() } }),
      event({ route: "/v1/plan" }),
      event({ tags: { tool: "calendar", stage: "act" } }),
      event({ tags: { tool: "search", stage: "plan" } }),
    ];
    const keys = variants.map((v) => fp(v).key);
    expect(new Set([base, ...keys]).size).toBe(variants.length + 1);
  });

  it("ignores line numbers but not the message's fixed words", () => {
    const a = fp(event({ error: { type: "Error", message: "Tool search returned 3 results", stack: expressToolStack({ line: 10 }) } }));
    const b = fp(event({ error: { type: "Error", message: "Tool search returned 97 results", stack: expressToolStack({ line: 99 }) } }));
    const c = fp(event({ error: { type: "Error", message: "Tool search returned no results", stack: expressToolStack({ line: 10 }) } }));
    expect(a.key).toBe(b.key);
    expect(c.key).not.toBe(a.key);
  });

  it("falls back to library frames when no frame is the app's, and to type + message without a stack", () => {
    const hangUp = fp(event({ error: { type: "Error", message: "socket hang up", stack: socketHangUpStack(720) } }));
    expect(hangUp.fingerprint).toBe(
      "Error | socket hang up | [lib] node:internal/errors#connResetException < node:_http_client#TLSSocket.socketOnEnd < node:events#TLSSocket.emit | route=/v1/chat | tool=search | stage=act",
    );
    expect(fp(event({ error: { type: "Error", message: "socket hang up", stack: socketHangUpStack(733) } })).key).toBe(hangUp.key);
    const fetchFailed = fp(event({ error: { type: "TypeError", message: "fetch failed", stack: fetchFailedStack() } }));
    expect(fetchFailed.fingerprint).toContain("| [lib] node:internal/deps/undici/undici#<anonymous> < node:internal/process/task_queues#process.processTicksAndRejections |");
    const noStack = fp(event({ route: undefined, tags: {}, error: { type: "Error", message: "socket hang up" } }));
    expect(noStack.fingerprint).toBe("Error | socket hang up");
  });

  it("uses the agent's structured frames instead of parsing the stack", () => {
    const r = fp(
      event({
        error: {
          type: "TypeError",
          message: "x",
          stack: expressToolStack(),
          frames: [
            { file: "/srv/agent/node_modules/openai/core.js", function: "APIClient.makeRequest", line: 300 },
            { file: "/srv/agent/src/llm.ts", function: "async complete", line: 20 },
            { function: "planStep" },
          ],
        },
      }),
    );
    expect(r.fingerprint).toBe("TypeError | x | src/llm.ts#complete < <unknown>#planStep | route=/v1/chat | tool=search | stage=act");
  });
});

describe("default fingerprint: Python", () => {
  const keyError = (root: "app" | "srv" | "home", line: number, key: string) =>
    fp(event({ error: { type: "KeyError", message: `'${key}'`, stack: pythonKeyErrorTrace({ root, line, key }) } }));

  it("uses the innermost in-app frames of a traceback through requests", () => {
    expect(keyError("app", 27, "content-type").fingerprint).toBe(
      "KeyError | <str> | agent/http.py#fetch_json < agent/tools/weather.py#get_weather < agent/tools/__init__.py#run_tool | route=/v1/chat | tool=search | stage=act",
    );
  });

  it("groups across line numbers, keys and deploy roots (container, /srv venv, home dir)", () => {
    const keys = new Set([keyError("app", 27, "content-type").key, keyError("srv", 29, "Content-Length").key, keyError("home", 40, "etag").key]);
    expect(keys.size).toBe(1);
  });

  it("fingerprints a chained exception by the exception finally raised", () => {
    const ev = (sessionId: string, line: number) =>
      event({
        error: { type: "agent.memory.MemoryCorrupt", message: `session ${sessionId} unreadable`, stack: pythonChainedTrace({ sessionId, line }) },
      });
    const a = fp(ev("8f14e45f-ceea-467f-a0e6-1c6b6f2d8a11", 35));
    expect(a.fingerprint).toBe(
      "agent.memory.MemoryCorrupt | session <uuid> unreadable | agent/memory.py#load < agent/server.py#handle | route=/v1/chat | tool=search | stage=act",
    );
    expect(fp(ev("0b1c2d3e-4f50-4617-8899-aabbccddeeff", 36)).key).toBe(a.key);
  });
});

describe("agent fingerprint", () => {
  it("wins over rules and the default", () => {
    const withRule = createFingerprinter({ rules: [{ errorType: ".", fingerprint: "by-rule" }] });
    const r = withRule(event({ fingerprint: "weather-api-schema-drift" }));
    expect(r).toMatchObject({ fingerprint: "weather-api-schema-drift", source: "agent" });
    expect(r.rule).toBeUndefined();
    expect(fp(event({ fingerprint: "weather-api-schema-drift" })).fingerprint).toBe("weather-api-schema-drift");
  });

  it("is ignored when blank", () => {
    expect(fp(event({ fingerprint: "  " })).source).toBe("default");
  });
});

describe("rules", () => {
  it("sets an explicit fingerprint, with tag placeholders", () => {
    const f = createFingerprinter({ rules: [{ errorType: "^RateLimitError$", fingerprint: "llm-rate-limit {tag:model}" }] });
    const ev = (tags: Record<string, string>, message: string) => event({ tags, error: { type: "RateLimitError", message, stack: fastifyAsyncStack() } });
    const a = f(ev({ model: "gpt-4o" }, "Rate limit reached for requests. Retry in 20s"));
    expect(a).toMatchObject({ fingerprint: "llm-rate-limit gpt-4o", rule: 0, source: "rule" });
    expect(f(ev({ model: "gpt-4o", tool: "x" }, "completely different text")).key).toBe(a.key);
    expect(f(ev({ model: "claude" }, "Rate limit")).key).not.toBe(a.key);
    expect(f(ev({}, "Rate limit")).fingerprint).toBe("llm-rate-limit -");
  });

  it("extends the default components", () => {
    const f = createFingerprinter({ rules: [{ frame: "^src/tools/search\\.ts#", extend: ["tenant={tag:tenant}"] }] });
    const a = f(event({ tags: { tool: "search", stage: "act", tenant: "acme" } }));
    expect(a.source).toBe("rule");
    expect(a.rule).toBe(0);
    expect(a.fingerprint).toBe(`${fp(event()).fingerprint} | tenant=acme`);
    expect(f(event({ tags: { tool: "search", stage: "act", tenant: "globex" } })).key).not.toBe(a.key);
    // the frame condition looks at every in-app frame, not just the top ones
    const deep = createFingerprinter({ rules: [{ frame: "^src/routes/chat\\.ts#Object\\.<anonymous>$", extend: ["chat"] }] });
    expect(deep(event({ error: { type: "TypeError", message: "x", stack: fastifyAsyncStack() } })).rule).toBe(0);
    // no in-app frame matches: default
    const other = f(event({ tags: { tenant: "acme" }, error: { type: "Error", message: "x", stack: socketHangUpStack() } }));
    expect(other.source).toBe("default");
    expect(other.rule).toBeUndefined();
  });

  it("requires every condition of a rule, and the first matching rule wins", () => {
    const f = createFingerprinter({
      rules: [
        { errorType: "^TypeError$", tags: { tool: "^calendar$" }, fingerprint: "calendar-type-error" },
        { message: "reading 'query'", route: "^/v1/", fingerprint: "query-missing" },
        { errorType: "^TypeError$", fingerprint: "any-type-error" },
      ],
    });
    expect(f(event())).toMatchObject({ fingerprint: "query-missing", rule: 1 });
    expect(f(event({ tags: { tool: "calendar" } }))).toMatchObject({ fingerprint: "calendar-type-error", rule: 0 });
    expect(f(event({ route: "/health" }))).toMatchObject({ fingerprint: "any-type-error", rule: 2 });
    expect(f(event({ tags: {}, route: undefined, error: { type: "KeyError", message: "'a'" } })).source).toBe("default");
  });

  it("rejects an invalid regex with an error naming the rule", () => {
    const bad = () => createFingerprinter({ rules: [{ errorType: "^A$", fingerprint: "a" }, { message: "timeout (after", fingerprint: "b" }] });
    expect(bad).toThrow(ConfigError);
    expect(bad).toThrow(/rules\[1\]\.message is not a valid regular expression/);
  });
});

describe("version", () => {
  it("is fp2 by default and fp2+rules:<hash> when the grouping config changes", () => {
    expect(fp(event()).version).toBe("fp2");
    expect(createFingerprinter({}).length).toBe(1);
    expect(createFingerprinter({ frames: 3, rules: [] })(event()).version).toBe("fp2");

    const r1 = createFingerprinter({ rules: [{ errorType: "^Nope$", fingerprint: "n" }] });
    const r2 = createFingerprinter({ rules: [{ errorType: "^Nope$", fingerprint: "m" }] });
    const v1 = r1(event());
    expect(v1.version).toMatch(/^fp2\+rules:[0-9a-f]{8}$/);
    expect(r2(event()).version).not.toBe(v1.version);
    // same rules, keys written in another order: same version
    expect(createFingerprinter({ rules: [{ fingerprint: "n", errorType: "^Nope$" }] })(event()).version).toBe(v1.version);
    // the rule does not match, yet the batch key moves with the version, so every batch shows the change
    expect(v1.fingerprint).toBe(fp(event()).fingerprint);
    expect(v1.key).not.toBe(fp(event()).key);
    expect(createFingerprinter({ frames: 5 })(event()).version).toMatch(/^fp2\+rules:/);
  });
});

describe("config knobs", () => {
  it("app roots and root patterns make custom deploy layouts fingerprint alike", () => {
    const f = createFingerprinter({ appRoots: ["/opt/acme/agent"], rootPatterns: ["^/deploy/releases/[^/]+/"] });
    const at = (file: string) => f(event({ error: { type: "Error", message: "x", stack: `Error: x\n    at run (${file}:1:1)` } })).fingerprint;
    expect(at("/opt/acme/agent/src/run.ts")).toContain("| src/run.ts#run |");
    expect(at("/deploy/releases/20250301-1/src/run.ts")).toContain("| src/run.ts#run |");
    expect(at("/deploy/releases/20250302-7/src/run.ts")).toContain("| src/run.ts#run |");
  });

  it("in-app include wins over library patterns; exclude adds library patterns", () => {
    const f = createFingerprinter({ inApp: { include: ["node_modules/@acme/"], exclude: ["/src/tools/registry\\.ts$"] } });
    const r = f(event({ error: { type: "TypeError", message: "x", stack: fastifyAsyncStack() } }));
    expect(r.fingerprint).toContain("| @acme/search-sdk/dist/index.js#formatResults < @acme/search-sdk/dist/index.js#SearchClient.query < src/tools/search.ts#searchWeb |");
    const g = f(event());
    expect(g.fingerprint).toContain("| src/tools/search.ts#parseArgs < src/agent/dispatch.ts#dispatch |");
  });

  it("frames, message length and signals are configurable", () => {
    const f = createFingerprinter({ frames: 1, messageMaxLength: 0, signals: { route: false, tags: ["stage", "tenant"] } });
    expect(f(event({ tags: { tool: "search", stage: "act", tenant: "acme" } })).fingerprint).toBe("TypeError | src/tools/search.ts#parseArgs | stage=act | tenant=acme");
  });
});

describe("throughput", () => {
  it("fingerprints 20k varied events into their few root causes", () => {
    const f = createFingerprinter({ rules: [{ errorType: "^RateLimitError$", fingerprint: "rate-limit {tag:model}" }] });
    const makers = [
      (i: number) => event({ error: { type: "TypeError", message: `Cannot read properties of undefined (reading 'k${i}')`, stack: expressToolStack({ line: i % 400 }) } }),
      (i: number) => event({ error: { type: "TypeError", message: "Cannot read properties of undefined (reading 'map')", stack: fastifyAsyncStack({ root: i % 2 ? "app" : "srv", line: i % 90 }) } }),
      (i: number) => event({ error: { type: "KeyError", message: `'h${i}'`, stack: pythonKeyErrorTrace({ line: 20 + (i % 50), key: `h${i}` }) } }),
      (i: number) => event({ error: { type: "agent.memory.MemoryCorrupt", message: `session ${crypto.randomUUID()} unreadable`, stack: pythonChainedTrace({ line: 30 + (i % 9) }) } }),
      (i: number) => event({ tags: { model: "gpt-4o" }, error: { type: "RateLimitError", message: `retry in ${i % 60}s` } }),
    ];
    const events = Array.from({ length: 20_000 }, (_, i) => makers[i % makers.length]!(i));
    const started = performance.now();
    const keys = new Set<string>();
    for (const ev of events) keys.add(f(ev).key);
    const ms = performance.now() - started;
    console.log(`fingerprint: ${events.length} events in ${ms.toFixed(0)} ms (${Math.round(events.length / (ms / 1000))} events/s)`);
    expect(keys.size).toBe(makers.length);
  });
});
