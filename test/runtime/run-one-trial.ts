// For the isolation test: a process that runs one long trial, to be killed with SIGKILL while it runs.
import { createRuntime } from "@moss/runtime";

const runtime = createRuntime({ namePrefix: process.env["MOSS_TEST_PREFIX"]!, trialPoolSize: 2 });
const spec = {
  image: process.env["MOSS_TEST_IMAGE"]!,
  port: 8080,
  env: {},
  timeoutMs: 60_000,
  stateDir: process.env["MOSS_TEST_STATE"]!,
  request: { method: "GET", path: "/loop", headers: {} },
};
// Sidecars and warm pods being made while it runs, as in a replica: killed, it leaves those too.
void runtime.warmTrials();
void runtime.warmTrials(spec);
await runtime.runTrial(spec);
