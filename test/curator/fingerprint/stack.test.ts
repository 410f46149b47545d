import { describe, expect, it } from "vitest";
import { parseStack } from "@moss/curator";
import { expressToolStack, fastifyAsyncStack, pythonChainedTrace, pythonKeyErrorTrace } from "./fixtures";

describe("parseStack: V8", () => {
  it("parses named, anonymous, aliased and library frames, innermost first", () => {
    const frames = parseStack(expressToolStack({ line: 77 }));
    expect(frames).toHaveLength(10);
    expect(frames[0]).toEqual({ file: "/app/src/tools/search.ts", function: "parseArgs", line: 77, column: 31, inApp: true });
    expect(frames[1]).toMatchObject({ function: "Object.invoke", inApp: true });
    // `[as handle_request]` is an alias of the call site, not part of the function
    expect(frames[3]).toMatchObject({ file: "/app/node_modules/express/lib/router/layer.js", function: "Layer.handle", inApp: false });
    // `at file:line:col` without a function
    expect(frames[7]).toEqual({ file: "/app/node_modules/express/lib/router/index.js", line: 284, column: 15, inApp: false });
  });

  it("handles async frames, Object.<anonymous>, and frames without a source file", () => {
    const frames = parseStack(fastifyAsyncStack());
    expect(frames.map((f) => f.function)).toEqual([
      "formatResults",
      "SearchClient.query",
      "searchWeb",
      "Object.runTool",
      "Agent.step",
      "Agent.step",
      "Object.<anonymous>",
      "Promise.all",
    ]);
    expect(frames.map((f) => f.inApp)).toEqual([false, false, true, true, true, true, true, false]);
    expect(frames[7]).toEqual({ file: "index 0", function: "Promise.all", inApp: false });
  });

  it("handles constructors, eval, file:// URLs, Windows paths and node: builtins", () => {
    const stack = [
      "Error: bad plan",
      "    at new Planner (C:\\agent\\src\\planner.ts:12:11)",
      "    at eval (eval at compileStep (file:///app/dist/steps.js:40:9), <anonymous>:3:7)",
      "    at file:///app/dist/main.js:10:2",
      "    at Module._compile (node:internal/modules/cjs/loader:1256:14)",
      "    at emit (internal/streams/readable.js:1:1)",
      "    at new Promise (<anonymous>)",
    ].join("\n");
    expect(parseStack(stack)).toEqual([
      { file: "C:\\agent\\src\\planner.ts", function: "new Planner", line: 12, column: 11, inApp: true },
      { file: "file:///app/dist/steps.js", function: "eval", line: 40, column: 9, inApp: true },
      { file: "file:///app/dist/main.js", line: 10, column: 2, inApp: true },
      { file: "node:internal/modules/cjs/loader", function: "Module._compile", line: 1256, column: 14, inApp: false },
      { file: "internal/streams/readable.js", function: "emit", line: 1, column: 1, inApp: false },
      { file: "<anonymous>", function: "new Promise", inApp: false },
    ]);
  });

  it("stops at util.inspect's [cause] section: those frames belong to another error", () => {
    const stack = [
      "Error: tool failed",
      "    at runTool (/app/src/agent/tools.ts:88:18)",
      "    ... 2 lines matching cause stack trace ...",
      "    at handle (/app/src/server.ts:30:5) {",
      "  [cause]: Error: inner",
      "      at inner (/app/src/inner.ts:1:1)",
      "}",
    ].join("\n");
    expect(parseStack(stack).map((f) => f.function)).toEqual(["runTool", "handle"]);
  });

  it("returns nothing for a stack without frames", () => {
    expect(parseStack("Error: boom")).toEqual([]);
    expect(parseStack("")).toEqual([]);
  });
});

describe("parseStack: Python", () => {
  it("reverses Python's outermost-first order and marks site-packages as library", () => {
    const frames = parseStack(pythonKeyErrorTrace({ line: 31 }));
    expect(frames).toEqual([
      { file: "/usr/local/lib/python3.11/site-packages/requests/structures.py", function: "__getitem__", line: 52, inApp: false },
      { file: "/app/agent/http.py", function: "fetch_json", line: 19, inApp: true },
      { file: "/app/agent/tools/weather.py", function: "get_weather", line: 31, inApp: true },
      { file: "/app/agent/tools/__init__.py", function: "run_tool", line: 41, inApp: true },
      { file: "/app/agent/server.py", function: "handle", line: 88, inApp: true },
    ]);
  });

  it.each(["during", "cause"] as const)("uses only the last block of a chained exception (%s)", (phrase) => {
    const frames = parseStack(pythonChainedTrace({ phrase }));
    expect(frames.map((f) => `${f.file}#${f.function}:${f.line}`)).toEqual(["/app/agent/memory.py#load:35", "/app/agent/server.py#handle:90"]);
  });

  it("treats the stdlib and frozen modules as library code", () => {
    const trace = [
      "Traceback (most recent call last):",
      '  File "<frozen runpy>", line 198, in _run_module_as_main',
      '  File "/usr/lib/python3.12/asyncio/runners.py", line 118, in run',
      '  File "C:\\Python311\\Lib\\json\\decoder.py", line 355, in raw_decode',
      "ValueError: x",
    ].join("\n");
    expect(parseStack(trace).every((f) => f.inApp === false)).toBe(true);
  });
});
