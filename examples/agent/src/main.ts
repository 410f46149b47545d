// Wiring only: env → state → reporter → HTTP → shutdown. The only file that reads process.env or exits.
import { createReporter } from "@moss/agent-sdk";
import { noModel, openAiModel } from "./model";
import { createAgentServer } from "./server";
import { createStateStore } from "./state";

const env = process.env;
const agent = env.AGENT_NAME ?? "demo";
const port = Number(env.PORT ?? 8080);
const stateDir = env.STATE_DIR ?? "/data";
const version = env.MOSS_AGENT_VERSION ?? "0000000";
if (env.MOSS_AGENT_VERSION === undefined) console.warn("MOSS_AGENT_VERSION is not set: failures are reported against version 0000000");

const state = createStateStore(stateDir);
const reporter = createReporter({
  agent,
  version,
  ...(env.MOSS_NATS_URL !== undefined ? { natsUrl: env.MOSS_NATS_URL } : {}),
  stateDir,
  envAllow: ["TZ", "AGENT_MODE"],
  timeoutMs: 10_000,
});
// After the reporter: it records the model client's calls (and answers them from the cassette in a replay).
const model = env.MODEL_BASE_URL
  ? openAiModel({ baseURL: env.MODEL_BASE_URL, apiKey: env.MODEL_API_KEY ?? "none", model: env.MODEL_NAME ?? "moss-demo" })
  : (console.warn("MODEL_BASE_URL is not set: every message goes to the tools without asking a model"), noModel);
const server = createAgentServer({ agent, version, state, reporter, model });

server.listen(port, () => console.log(`agent ${agent} ${version} listening on :${port} (state ${state.file})`));

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: shutting down`);
  const force = setTimeout(() => process.exit(1), 10_000);
  force.unref();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await reporter.close();
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
