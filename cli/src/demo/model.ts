// The demo's model: a small deterministic stand-in for an OpenAI-compatible chat-completions endpoint on loopback,
// so the demo needs no network and no key. It answers the way a model with tools does: a greeting it answers itself;
// anything else it hands to the agent's tools with a `use_tool` call carrying the user's request. The demo stops it
// before the replays (they must run from the failures' recorded calls) and starts it again for live traffic.
import { createServer, type Server } from "node:http";

export interface ModelStandIn {
  /** The OpenAI base URL: `http://127.0.0.1:<port>/v1`. */
  url: string;
  /** Chat completions answered so far. */
  requests(): number;
  /** Stops answering (the port is free again). */
  stop(): Promise<void>;
  /** Answers again, on the same port. */
  start(): Promise<void>;
}

const GREETING = /^\s*(hi|hello|hey|good (morning|evening)|thanks|thank you)\b/i;

function answer(body: { model?: string; messages?: { role: string; content?: unknown }[]; tools?: { function?: { name?: string } }[]; stream?: boolean }) {
  const user = [...(body.messages ?? [])].reverse().find((m) => m.role === "user");
  const text = typeof user?.content === "string" ? user.content : "";
  const canUseTool = (body.tools ?? []).some((t) => t.function?.name === "use_tool");
  const base = { id: "chatcmpl-standin", object: "chat.completion", created: 1_700_000_000, model: body.model ?? "moss-demo" };
  if (GREETING.test(text) || !canUseTool) {
    return { ...base, choices: [{ index: 0, finish_reason: "stop", message: { role: "assistant", content: "Hello! I can calculate, convert currencies and remember exchange rates." } }] };
  }
  return {
    ...base,
    choices: [
      {
        index: 0,
        finish_reason: "tool_calls",
        message: { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "use_tool", arguments: JSON.stringify({ request: text }) } }] },
      },
    ],
  };
}

export async function startModelStandIn(port = 0): Promise<ModelStandIn> {
  let served = 0;
  let server: Server | undefined;
  let bound = port;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          const send = (status: number, body: unknown) => {
            const text = JSON.stringify(body);
            res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) }).end(text);
          };
          if (req.method !== "POST" || !req.url?.startsWith("/v1/chat/completions")) return send(404, { error: { message: `the stand-in model serves POST /v1/chat/completions, not ${req.method} ${req.url}` } });
          let body;
          try {
            body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as Parameters<typeof answer>[0];
          } catch {
            return send(400, { error: { message: "the request body is not JSON" } });
          }
          if (body.stream) return send(400, { error: { message: "the stand-in model does not stream; send stream: false" } });
          served++;
          send(200, answer(body));
        });
      });
      s.once("error", reject);
      s.listen(bound, "127.0.0.1", () => {
        bound = (s.address() as { port: number }).port;
        server = s;
        resolve();
      });
    });
  await listen();
  return {
    url: `http://127.0.0.1:${bound}/v1`,
    requests: () => served,
    async stop() {
      const s = server;
      server = undefined;
      if (s) await new Promise<void>((r) => s.close(() => r()).closeAllConnections());
    },
    async start() {
      if (!server) await listen();
    },
  };
}
