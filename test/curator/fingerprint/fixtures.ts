import { FailureEvent, type FailureEventInput } from "@moss/contracts";

/** Where the same code runs: a container, a VM under /srv, a dev box, an ESM build (file:// URLs), Windows. */
export const ROOTS = {
  app: (rel: string) => `/app/${rel}`,
  srv: (rel: string) => `/srv/agent/${rel}`,
  home: (rel: string) => `/home/deploy/${rel}`,
  esm: (rel: string) => `file:///usr/src/app/${rel}`,
  win: (rel: string) => `C:\\app\\${rel.replaceAll("/", "\\")}`,
};
export type Root = keyof typeof ROOTS;

/** A tool call failing in app code under express: in-app frames on top, express's router below. */
export function expressToolStack(o: { root?: Root; line?: number; fn?: string; message?: string } = {}): string {
  const at = ROOTS[o.root ?? "app"];
  const lib = (p: string) => at(`node_modules/${p}`);
  return [
    `TypeError: ${o.message ?? "Cannot read properties of undefined (reading 'query')"}`,
    `    at ${o.fn ?? "parseArgs"} (${at("src/tools/search.ts")}:${o.line ?? 31}:31)`,
    `    at Object.invoke (${at("src/tools/registry.ts")}:52:12)`,
    `    at dispatch (${at("src/agent/dispatch.ts")}:19:25)`,
    `    at Layer.handle [as handle_request] (${lib("express/lib/router/layer.js")}:95:5)`,
    `    at next (${lib("express/lib/router/route.js")}:149:13)`,
    `    at Route.dispatch (${lib("express/lib/router/route.js")}:119:3)`,
    `    at Layer.handle [as handle_request] (${lib("express/lib/router/layer.js")}:95:5)`,
    `    at ${lib("express/lib/router/index.js")}:284:15`,
    `    at Function.process_params (${lib("express/lib/router/index.js")}:346:12)`,
    `    at next (${lib("express/lib/router/index.js")}:280:10)`,
  ].join("\n");
}

/** Thrown inside an SDK in node_modules, reached through an async chain of app frames under fastify. */
export function fastifyAsyncStack(o: { root?: Root; line?: number } = {}): string {
  const at = ROOTS[o.root ?? "app"];
  return [
    "TypeError: Cannot read properties of undefined (reading 'map')",
    `    at formatResults (${at("node_modules/.pnpm/@acme+search-sdk@2.3.1/node_modules/@acme/search-sdk/dist/index.js")}:211:30)`,
    `    at SearchClient.query (${at("node_modules/.pnpm/@acme+search-sdk@2.3.1/node_modules/@acme/search-sdk/dist/index.js")}:98:12)`,
    `    at async searchWeb (${at("src/tools/search.ts")}:${o.line ?? 44}:20)`,
    `    at async Object.runTool (${at("src/agent/tools.ts")}:88:18)`,
    `    at async Agent.step (${at("src/agent/loop.ts")}:141:22)`,
    `    at async Agent.step (${at("src/agent/loop.ts")}:141:22)`,
    `    at async Object.<anonymous> (${at("src/routes/chat.ts")}:37:20)`,
    "    at async Promise.all (index 0)",
  ].join("\n");
}

/** Only runtime frames: nothing of the app's own code on the stack. */
export function socketHangUpStack(line = 720): string {
  return [
    "Error: socket hang up",
    `    at connResetException (node:internal/errors:${line}:14)`,
    "    at TLSSocket.socketOnEnd (node:_http_client:525:23)",
    "    at TLSSocket.emit (node:events:529:35)",
    "    at endReadableNT (node:internal/streams/readable:1400:12)",
    "    at process.processTicksAndRejections (node:internal/process/task_queues:82:21)",
  ].join("\n");
}

export function fetchFailedStack(): string {
  return [
    "TypeError: fetch failed",
    "    at node:internal/deps/undici/undici:13502:13",
    "    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)",
  ].join("\n");
}

const PY_ROOTS: Record<"app" | "srv" | "home", { app: string; site: string }> = {
  app: { app: "/app/", site: "/usr/local/lib/python3.11/site-packages/" },
  srv: { app: "/srv/app/", site: "/srv/app/.venv/lib/python3.11/site-packages/" },
  home: { app: "/home/deploy/", site: "/home/deploy/.venv/lib/python3.12/site-packages/" },
};

/** A KeyError raised inside requests (its case-insensitive headers dict) on behalf of an app tool. */
export function pythonKeyErrorTrace(o: { root?: "app" | "srv" | "home"; line?: number; key?: string } = {}): string {
  const r = PY_ROOTS[o.root ?? "app"];
  return [
    "Traceback (most recent call last):",
    `  File "${r.app}agent/server.py", line 88, in handle`,
    "    result = run_tool(req.tool, req.args)",
    "             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
    `  File "${r.app}agent/tools/__init__.py", line 41, in run_tool`,
    "    return TOOLS[name](**args)",
    `  File "${r.app}agent/tools/weather.py", line ${o.line ?? 27}, in get_weather`,
    "    data = fetch_json(URL, params={\"q\": city})",
    `  File "${r.app}agent/http.py", line 19, in fetch_json`,
    '    ctype = resp.headers["content-type"]',
    "            ~~~~~~~~~~~~^^^^^^^^^^^^^^^^",
    `  File "${r.site}requests/structures.py", line 52, in __getitem__`,
    "    return self._store[key.lower()][1]",
    "           ~~~~~~~~~~~^^^^^^^^^^^^^",
    `KeyError: '${o.key ?? "content-type"}'`,
  ].join("\n");
}

/** A chained exception: a JSON error in the stdlib, handled by raising the app's own error. */
export function pythonChainedTrace(o: { sessionId?: string; line?: number; phrase?: "during" | "cause" } = {}): string {
  const sep =
    o.phrase === "cause"
      ? "The above exception was the direct cause of the following exception:"
      : "During handling of the above exception, another exception occurred:";
  return [
    "Traceback (most recent call last):",
    '  File "/app/agent/memory.py", line 33, in load',
    "    return json.loads(raw)",
    '  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads',
    "    return _default_decoder.decode(s)",
    '  File "/usr/lib/python3.11/json/decoder.py", line 337, in decode',
    "    obj, end = self.raw_decode(s, idx=_w(s, 0).end())",
    '  File "/usr/lib/python3.11/json/decoder.py", line 355, in raw_decode',
    '    raise JSONDecodeError("Expecting value", s, err.value) from None',
    "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
    "",
    sep,
    "",
    "Traceback (most recent call last):",
    '  File "/app/agent/server.py", line 90, in handle',
    "    state = memory.load(session_id)",
    `  File "/app/agent/memory.py", line ${o.line ?? 35}, in load`,
    '    raise MemoryCorrupt(f"session {session_id} unreadable") from e',
    `agent.memory.MemoryCorrupt: session ${o.sessionId ?? "8f14e45f-ceea-467f-a0e6-1c6b6f2d8a11"} unreadable`,
  ].join("\n");
}

let n = 0;

/** A valid failure event; `error` and the rest override the defaults. */
export function event(over: Partial<FailureEventInput> = {}): FailureEvent {
  n++;
  return FailureEvent.parse({
    id: `ev-${n}`,
    agent: "support-bot",
    version: "a1b2c3d",
    occurredAt: "2025-03-01T10:00:00.000Z",
    route: "/v1/chat",
    request: { method: "POST", path: "/v1/chat", body: '{"q":"weather in Paris"}' },
    error: { type: "TypeError", message: "Cannot read properties of undefined (reading 'query')", stack: expressToolStack() },
    tags: { tool: "search", stage: "act" },
    ...over,
  });
}
