// The agent's model: it reads each message and decides whether a tool should serve it (and with what request) or
// answers it itself. Spoken over an OpenAI-compatible chat-completions API with the official `openai` client, so a
// real model is one base URL and key away (MODEL_BASE_URL, MODEL_API_KEY, MODEL_NAME). The demo runs a small
// deterministic stand-in on loopback instead. Which tool serves a delegated request is the agent's own code
// (router.ts) — and that is where its bug is.
import OpenAI from "openai";

export type Decision = { kind: "tool"; request: string } | { kind: "reply"; text: string };

export interface Model {
  decide(message: string): Promise<Decision>;
}

/** The model could not be asked (down, refused, answered nonsense): the turn is answered 502, not reported as a bug. */
export class ModelUnavailableError extends Error {
  override name = "ModelUnavailableError";
}

const SYSTEM =
  "You are the front desk of a small assistant with tools: a calculator, currency conversion with remembered rates, and a notebook for rates. " +
  "When a tool can serve the user's message, call use_tool with the request to serve; otherwise answer briefly yourself.";

export const TOOLS = [
  {
    type: "function" as const,
    function: {
      name: "use_tool",
      description: "Hand the user's request to the assistant's tools (calculator, currency, remember rates).",
      parameters: { type: "object", properties: { request: { type: "string", description: "the request to serve, as the user put it" } }, required: ["request"] },
    },
  },
];

/** The model behind an OpenAI-compatible endpoint. Create the Moss reporter first: it records the client's calls. */
export function openAiModel(opts: { baseURL: string; apiKey: string; model: string; timeoutMs?: number }): Model {
  const client = new OpenAI({ baseURL: opts.baseURL, apiKey: opts.apiKey, maxRetries: 0, timeout: opts.timeoutMs ?? 8_000 });
  return {
    async decide(message) {
      let r;
      try {
        r = await client.chat.completions.create({ model: opts.model, messages: [{ role: "system", content: SYSTEM }, { role: "user", content: message }], tools: TOOLS, tool_choice: "auto" });
      } catch (err) {
        throw new ModelUnavailableError(`the model at ${opts.baseURL} could not be asked: ${(err as Error).message}`, { cause: err });
      }
      const m = r.choices[0]?.message;
      const call = m?.tool_calls?.[0];
      if (call?.type === "function" && call.function.name === "use_tool") {
        let args: { request?: unknown };
        try {
          args = JSON.parse(call.function.arguments) as { request?: unknown };
        } catch {
          throw new ModelUnavailableError(`the model called use_tool with arguments that are not JSON: ${call.function.arguments.slice(0, 200)}`);
        }
        return { kind: "tool", request: typeof args.request === "string" && args.request.trim() ? args.request : message };
      }
      return { kind: "reply", text: m?.content ?? "" };
    },
  };
}

/** No model configured: every message goes to the tools as it is. */
export const noModel: Model = { decide: async (message) => ({ kind: "tool", request: message }) };
