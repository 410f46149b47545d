import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Reporter } from "@moss/agent-sdk";
import { BadRequestError, ToolAnswerError } from "./errors";
import { ModelUnavailableError, type Model } from "./model";
import { route } from "./router";
import type { StateStore } from "./state";
import { tools } from "./tools";

export interface AgentDeps {
  agent: string;
  version: string;
  state: StateStore;
  reporter: Reporter;
  /** Reads each message first: a tool serves it, or the model answers it itself. */
  model: Model;
  /** Where the agent's own log lines go besides the reporter's ring buffer. Default: stdout. */
  log?: (line: string) => void;
}

const MAX_BODY = 64 * 1024;

/** The agent's HTTP server, not listening yet. */
export function createAgentServer(deps: AgentDeps): Server {
  const print = deps.log ?? ((line: string) => console.log(line));
  const log = (line: string) => {
    deps.reporter.log(line);
    print(line);
  };

  return createServer((req, res) => {
    // One turn per request: its state before, its model calls, its clock and seed go with a failure.
    deps.reporter.turn(() => handle(req, res, deps, log)).catch((err: unknown) => {
      // Only reached if answering itself failed; the failure was reported already.
      log(`error answering ${req.method} ${req.url}: ${String(err)}`);
      if (!res.headersSent) send(res, 500, { error: "internal error" });
      else res.end();
    });
  });
}

async function handle(req: IncomingMessage, res: ServerResponse, deps: AgentDeps, log: (l: string) => void): Promise<void> {
  const path = req.url ?? "/";
  if (req.method === "GET" && path === "/health") {
    send(res, 200, { ok: true, agent: deps.agent, version: deps.version });
    return;
  }
  if (path !== "/v1/chat") {
    send(res, 404, { error: `no route ${req.method} ${path}` });
    return;
  }
  if (req.method !== "POST") {
    send(res, 405, { error: "use POST" });
    return;
  }

  let raw = "";
  let intent: string | undefined;
  try {
    raw = await readBody(req);
    const { session, message } = parseChat(raw);
    const decision = await deps.model.decide(message);
    if (decision.kind === "reply") {
      log(`chat session=${session} answered by the model`);
      answerWell(res, req, raw, "model", { tool: "model", answer: decision.text }, deps);
      return;
    }
    intent = route(decision.request);
    log(`chat session=${session} intent=${intent} message=${JSON.stringify(decision.request.slice(0, 200))}`);
    const tool = tools[intent as keyof typeof tools];
    const answer = await tool.run(decision.request, { state: deps.state });
    await deps.state.update((s) => {
      s.turns += 1;
    });
    answerWell(res, req, raw, intent, { tool: tool.name, answer }, deps);
  } catch (err) {
    if (err instanceof BadRequestError) {
      send(res, 400, { error: err.message });
      return;
    }
    if (err instanceof ModelUnavailableError) {
      log(err.message);
      send(res, 502, { error: "the model is unavailable; try again" });
      return;
    }
    if (err instanceof ToolAnswerError) {
      log(`tool ${intent} refused: ${err.message}`);
      send(res, err.status, { tool: intent, error: err.message });
      return;
    }
    // Anything else is a bug of the agent: answer 500 and hand the evidence to Moss.
    const message = err instanceof Error ? err.message : String(err);
    log(`tool ${intent ?? "-"} failed: ${message}`);
    const body = { error: "internal error", detail: message };
    const failureId = await deps.reporter.captureFailure({
      request: { method: req.method ?? "POST", path, headers: req.headers, body: raw },
      error: err,
      ...(intent !== undefined ? { route: intent } : {}),
      response: { status: 500, body: JSON.stringify(body) },
      tags: { session: sessionOf(raw) },
    });
    send(res, 500, { ...body, failureId });
  }
}

/**
 * A good answer: sent, then offered to Moss as a recorded success (sampled by the reporter's `sampleRate`, env
 * MOSS_SAMPLE_RATE), so every candidate fix is also replayed on turns like this one and must answer them the same.
 */
function answerWell(res: ServerResponse, req: IncomingMessage, raw: string, route: string, body: unknown, deps: AgentDeps): void {
  const text = send(res, 200, body);
  void deps.reporter.captureSuccess({ request: { method: req.method ?? "POST", path: req.url ?? "/", headers: req.headers, body: raw }, route, response: { status: 200, body: text } });
}

function parseChat(raw: string): { session: string; message: string } {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw new BadRequestError("body must be JSON: {session, message}");
  }
  const o = (typeof v === "object" && v !== null ? v : {}) as Record<string, unknown>;
  if (typeof o.session !== "string" || o.session === "") throw new BadRequestError("session must be a non-empty string");
  if (typeof o.message !== "string" || o.message.trim() === "") throw new BadRequestError("message must be a non-empty string");
  if (o.message.length > 4_000) throw new BadRequestError("message is longer than 4000 characters");
  return { session: o.session, message: o.message };
}

function sessionOf(raw: string): string {
  try {
    const s = (JSON.parse(raw) as { session?: unknown }).session;
    return typeof s === "string" ? s.slice(0, 100) : "-";
  } catch {
    return "-";
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new BadRequestError(`body is larger than ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown): string {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
  return text;
}
