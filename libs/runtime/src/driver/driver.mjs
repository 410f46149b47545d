// Moss trial driver: the sidecar of a trial pod. The runtime starts the agent's container from the candidate image with
// its own entrypoint, then this script in a container of its own (Moss's node base image) that joins the agent's
// network namespace (NetworkMode container:<agent>), so the two share a loopback and nothing else: not a filesystem,
// not a process table. It waits until the agent listens, sends the one recorded HTTP request, prints ONE line
// `MOSS_TRIAL_RESULT <json>` to stdout and exits 0. The runtime watches the agent container itself (its exit code,
// out-of-memory kills), reads the failures the agent reported from the agent's container and tears both down.
//
// Self-contained on purpose (node: built-ins only). Its input is /moss/trial.json in its own container, written by
// @moss/runtime before it starts: { nonce, port, request: {method, path, headers, body?}, timeoutMs, readyTimeoutMs }.
// The agent cannot read it, nor write to this container's output.

import { readFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";

const TRIAL_FILE = "/moss/trial.json";
const MARKER = "MOSS_TRIAL_RESULT";
const MAX_BODY_BYTES = 8 * 1024 * 1024;
const POLL_MS = 15;
// Hop-by-hop or framing headers of the recorded request must not be replayed as they were.
const DROP_HEADERS = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer", "proxy-connection", "content-length"]);

const t0 = performance.now();
const elapsed = () => Math.round(performance.now() - t0);
const note = (msg) => process.stderr.write(`[moss-driver] +${elapsed()}ms ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let nonce;

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

async function waitListening(port, deadline) {
  for (;;) {
    const host = (await tryConnect("127.0.0.1", port)) ?? (await tryConnect("::1", port));
    if (host) return host;
    if (performance.now() >= deadline) return undefined;
    await sleep(POLL_MS);
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

function finish(result) {
  process.stdout.write(`${MARKER} ${JSON.stringify(result)}\n`, () => process.exit(0));
}

async function main() {
  const trial = JSON.parse(readFileSync(TRIAL_FILE, "utf8"));
  nonce = trial.nonce;
  const result = { nonce, timedOut: false };
  const deadline = t0 + trial.timeoutMs;
  const readyDeadline = t0 + Math.min(trial.readyTimeoutMs ?? trial.timeoutMs, trial.timeoutMs);
  let phase = "waiting for the agent to listen";
  let timer;
  const timeout = new Promise((r) => {
    timer = setTimeout(() => r("timeout"), Math.max(0, deadline - performance.now()));
  });

  const work = (async () => {
    phase = `waiting for the agent to listen on port ${trial.port}`;
    const host = await waitListening(trial.port, readyDeadline);
    if (!host) {
      throw new Error(`the agent did not listen on port ${trial.port} within ${trial.readyTimeoutMs ?? trial.timeoutMs} ms`);
    }
    note(`agent listening on ${host}:${trial.port}; sending ${trial.request.method} ${trial.request.path}`);
    phase = `waiting for the response to ${trial.request.method} ${trial.request.path}`;
    const sentAt = performance.now();
    try {
      result.response = await send(host, trial.port, trial.request);
    } catch (err) {
      result.requestFailed = true;
      throw new Error(`the request failed (${err.code ?? err.message})`);
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
  finish(result);
}

main().catch((err) => {
  note(`driver failure: ${err?.stack ?? err}`);
  finish({ nonce, timedOut: false, error: `trial driver failure: ${err?.message ?? err}` });
});
