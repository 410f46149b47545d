// Moss trial driver. It runs as PID 1 of an ephemeral trial container (usually with no network),
// so the request to the agent is sent from inside: it starts the agent command, waits until the
// agent listens, sends one HTTP request, collects the failures the agent reported, prints ONE line
// `MOSS_TRIAL_RESULT <json>` to stdout and exits 0 (which stops the container and the agent).
//
// Self-contained on purpose (node: built-ins only): it is copied into images that hold nothing but
// /usr/bin/node. Its input is /moss/trial.json, written by @moss/runtime before the container starts:
//   { nonce, command: [...], cwd, port, env, request: {method, path, headers, body?},
//     timeoutMs, readyTimeoutMs, settleMs }
// The nonce is echoed in the result so that agent output cannot pass for a result by accident.

import { spawn } from "node:child_process";
import { readFileSync, unlinkSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { constants as osConstants } from "node:os";

const TRIAL_FILE = "/moss/trial.json";
const FAILURE_FILE = "/moss/out/failures.jsonl";
const MARKER = "MOSS_TRIAL_RESULT";
const MAX_BODY_BYTES = 8 * 1024 * 1024;
const MAX_FAILURES = 1000;
const POLL_MS = 15;
// Hop-by-hop or framing headers of the recorded request must not be replayed as they were.
const DROP_HEADERS = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer", "proxy-connection", "content-length"]);

const t0 = performance.now();
const elapsed = () => Math.round(performance.now() - t0);
const note = (msg) => process.stderr.write(`[moss-driver] +${elapsed()}ms ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let nonce;
let lastStdoutByte = 10;
let agentExit; // { code, signal } or { spawnError }
let child;

function exitCodeOf(exit) {
  if (!exit) return undefined;
  if (typeof exit.code === "number") return exit.code;
  if (exit.signal) return 128 + (osConstants.signals[exit.signal] ?? 0);
  return undefined;
}

function describeExit(exit) {
  if (exit.spawnError) return `the agent command could not be started: ${exit.spawnError}`;
  if (exit.signal) return `the agent was killed by ${exit.signal}`;
  return `the agent exited with code ${exit.code}`;
}

function tryConnect(host, port) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok) => {
      s.destroy();
      resolve(ok ? host : undefined);
    };
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
    s.setTimeout(250, () => done(false));
  });
}

async function waitListening(port, deadline, exited) {
  for (;;) {
    if (agentExit) throw new Error(`${describeExit(agentExit)} before listening on port ${port}`);
    const host = (await tryConnect("127.0.0.1", port)) ?? (await tryConnect("::1", port));
    if (host) return host;
    if (agentExit) throw new Error(`${describeExit(agentExit)} before listening on port ${port}`);
    if (performance.now() >= deadline) return undefined;
    await Promise.race([sleep(POLL_MS), exited]);
  }
}

function flattenHeaders(h) {
  const out = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    out[k] = Array.isArray(v) ? v.join(k === "set-cookie" ? "\n" : ", ") : String(v);
  }
  return out;
}

function send(host, port, request) {
  return new Promise((resolve, reject) => {
    const headers = {};
    for (const [k, v] of Object.entries(request.headers ?? {})) {
      if (!DROP_HEADERS.has(k.toLowerCase())) headers[k] = v;
    }
    const body = request.body === undefined || request.body === null ? undefined : Buffer.from(String(request.body), "utf8");
    if (body !== undefined) headers["content-length"] = String(body.length);
    const req = http.request({ host, port, method: request.method, path: request.path, headers, agent: false }, (res) => {
      const chunks = [];
      let size = 0;
      let truncated = false;
      res.on("data", (c) => {
        if (size + c.length > MAX_BODY_BYTES) {
          truncated = true;
          c = c.subarray(0, Math.max(0, MAX_BODY_BYTES - size));
        }
        size += c.length;
        if (c.length) chunks.push(c);
      });
      res.on("end", () => {
        if (truncated) note(`response body truncated to ${MAX_BODY_BYTES} bytes`);
        resolve({ status: res.statusCode ?? 0, headers: flattenHeaders(res.headers), body: Buffer.concat(chunks).toString("utf8") });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

function readFailures() {
  let text;
  try {
    text = readFileSync(FAILURE_FILE, "utf8");
  } catch {
    return [];
  }
  const out = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    if (out.length >= MAX_FAILURES) {
      note(`more than ${MAX_FAILURES} failure reports: the rest are dropped`);
      break;
    }
    try {
      out.push(JSON.parse(line));
    } catch {
      out.push({ unparsable: line });
    }
  }
  return out;
}

function finish(result) {
  const line = `${MARKER} ${JSON.stringify(result)}\n`;
  // The marker must start a line even if the agent's last output did not end one.
  const text = lastStdoutByte === 10 ? line : `\n${line}`;
  try {
    child?.kill("SIGKILL");
  } catch {
    // already gone
  }
  process.stdout.write(text, () => process.exit(0));
}

async function main() {
  const trial = JSON.parse(readFileSync(TRIAL_FILE, "utf8"));
  nonce = trial.nonce;
  try {
    unlinkSync(TRIAL_FILE); // holds the env and the nonce; the agent has no business reading it
  } catch {
    // read-only or not ours to delete: harmless
  }
  const result = { nonce, timedOut: false, reportedFailures: [] };
  const deadline = t0 + trial.timeoutMs;
  const readyDeadline = t0 + Math.min(trial.readyTimeoutMs ?? trial.timeoutMs, trial.timeoutMs);
  const [cmd, ...args] = trial.command ?? [];
  if (!cmd) {
    result.error = "the image has no ENTRYPOINT or CMD: there is no agent command to start";
    return finish(result);
  }

  let phase = "starting the agent";
  let exitedResolve;
  const exited = new Promise((r) => (exitedResolve = r));
  child = spawn(cmd, args, { cwd: trial.cwd || "/", env: { ...process.env, ...trial.env }, stdio: ["ignore", "pipe", "inherit"] });
  child.on("error", (err) => {
    agentExit ??= { spawnError: err.message };
    exitedResolve();
  });
  child.on("exit", (code, signal) => {
    agentExit ??= { code, signal };
    note(`${describeExit(agentExit)} (${phase})`);
    exitedResolve();
  });
  child.stdout.on("data", (c) => {
    if (c.length) lastStdoutByte = c[c.length - 1];
    process.stdout.write(c);
  });

  let timer;
  const timeout = new Promise((r) => {
    timer = setTimeout(() => r("timeout"), Math.max(0, deadline - performance.now()));
  });

  const work = (async () => {
    phase = `waiting for the agent to listen on port ${trial.port}`;
    const host = await waitListening(trial.port, readyDeadline, exited);
    if (!host) {
      throw new Error(`the agent did not listen on port ${trial.port} within ${trial.readyTimeoutMs ?? trial.timeoutMs} ms`);
    }
    note(`agent listening on ${host}:${trial.port}; sending ${trial.request.method} ${trial.request.path}`);
    phase = `waiting for the response to ${trial.request.method} ${trial.request.path}`;
    const sentAt = performance.now();
    try {
      result.response = await send(host, trial.port, trial.request);
    } catch (err) {
      // If the agent died under the request, say so rather than just "socket hang up".
      await Promise.race([exited, sleep(50)]);
      const why = agentExit ? `${describeExit(agentExit)} while handling the request` : "the request failed";
      throw new Error(`${why} (${err.code ?? err.message})`);
    }
    note(`response ${result.response.status} after ${Math.round(performance.now() - sentAt)} ms`);
  })();

  try {
    const outcome = await Promise.race([work.then(() => "done"), timeout]);
    if (outcome === "timeout") {
      result.timedOut = true;
      result.error = `timed out after ${trial.timeoutMs} ms while ${phase}`;
      note(result.error);
    }
  } catch (err) {
    result.error = err.message;
    note(`error: ${result.error}`);
  }
  clearTimeout(timer);

  // Let the agent flush failure reports it writes after answering.
  if (!agentExit) await Promise.race([sleep(trial.settleMs ?? 100), exited]);
  result.reportedFailures = readFailures();
  const code = exitCodeOf(agentExit);
  if (code !== undefined) result.exitCode = code;
  finish(result);
}

main().catch((err) => {
  note(`driver failure: ${err?.stack ?? err}`);
  finish({ nonce, timedOut: false, reportedFailures: readFailures(), error: `trial driver failure: ${err?.message ?? err}` });
});
