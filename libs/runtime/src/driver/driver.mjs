// Moss trial driver: the sidecar of a trial pod. The runtime starts the agent's container from the candidate image with
// its own entrypoint, then this script in a container of its own (Moss's node base image) that joins the agent's
// network namespace (NetworkMode container:<agent>), so the two share a loopback and nothing else: not a filesystem,
// not a process table. It waits until the agent listens, sends the one recorded HTTP request, prints ONE line
// `MOSS_TRIAL_RESULT <json>` to stdout and exits 0. The runtime watches the agent container itself (its exit code,
// out-of-memory kills), reads the failures the agent reported from the agent's container and tears both down.
//
// It is also the only thing the agent can reach: a replay proxy on 127.0.0.1:<proxyPort> (the agent gets it as
// MOSS_REPLAY_PROXY, HTTP_PROXY and HTTPS_PROXY) answers each outbound call from the failure's cassette — matched by
// method, host, path and query, and a canonical body; repeated identical calls in their recorded order. A call the
// cassette does not hold is answered 502 with a clear error, and the trial has diverged. It understands absolute-form
// proxy requests (plain HTTP), origin-form requests naming the original URL in `x-moss-replay-url` (the SDKs redirect
// fetch / urllib this way, HTTPS included), and refuses CONNECT (TLS made without the SDK cannot be answered).
//
// Self-contained on purpose (node: built-ins only), run with `node -e`. Its input is its stdin, written and closed by
// @moss/runtime once the trial is known (a pooled sidecar waits for it, see pool.ts): { nonce, port, request: {method, path, headers, body?}, timeoutMs, readyTimeoutMs,
// proxyPort?, cassette?: { calls: [...] } }. The agent cannot read it, nor write to this container's output.

import http from "node:http";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";

const MARKER = "MOSS_TRIAL_RESULT";
const MAX_BODY_BYTES = 8 * 1024 * 1024;
const POLL_MS = 15;
// Hop-by-hop or framing headers of the recorded request must not be replayed as they were.
const DROP_HEADERS = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer", "proxy-connection", "content-length"]);

// The budget's start: the runtime's go (SIGUSR1, sent when the agent started); until then, the sidecar's own start.
let t0 = performance.now();
const elapsed = () => Math.round(performance.now() - t0);
const note = (msg) => process.stderr.write(`[moss-driver] +${elapsed()}ms ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let nonce;

// ---- the replay proxy -------------------------------------------------------------------------------------------

/** JSON with its keys sorted at every level: two bodies that differ only in key order or spacing match. */
function canonical(text) {
  if (text === undefined || text === null || text === "") return "";
  try {
    const sort = (v) => (Array.isArray(v) ? v.map(sort) : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort(v[k])])) : v);
    return JSON.stringify(sort(JSON.parse(text)));
  } catch {
    return text;
  }
}

function bodyText(b) {
  if (!b) return "";
  return b.base64 ? Buffer.from(b.text, "base64").toString("utf8") : b.text;
}

/** method host/path?query body — the identity of a call. Default ports and the query's order do not count. */
function keyOf(method, url, body) {
  let u;
  try {
    u = new URL(url);
  } catch {
    return `${method.toUpperCase()} ${url} ${canonical(body)}`;
  }
  const q = [...u.searchParams.entries()].sort(([a, x], [b, y]) => (a === b ? (x < y ? -1 : 1) : a < b ? -1 : 1));
  const query = q.length ? `?${new URLSearchParams(q).toString()}` : "";
  return `${method.toUpperCase()} ${u.protocol}//${u.host.toLowerCase()}${u.pathname}${query} ${canonical(body)}`;
}

// Framing headers of the recording: the body is served whole and decoded, so these would lie about it.
const DROP_RESPONSE = new Set(["content-length", "transfer-encoding", "content-encoding", "connection", "keep-alive"]);

/** The allow-listed base URL `url` falls under, if any. */
function forwardBaseOf(url, forward) {
  return (forward ?? []).find((b) => {
    const base = b.replace(/\/+$/, "");
    return url === base || url.startsWith(`${base}/`) || url.startsWith(`${base}?`);
  });
}

const HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "host", "x-moss-replay-url", "content-length"]);

/** Sends one call through the egress proxy's unix socket (the sidecar has no network of its own) and reads the answer. */
function forwardCall(socketPath, method, url, headers, body) {
  const u = new URL(url);
  const h = {};
  for (const [k, v] of Object.entries(headers)) if (!HOP.has(k.toLowerCase())) h[k] = v;
  h.host = u.host;
  if (body.length) h["content-length"] = String(body.length);
  const read = (res, resolve) => {
    const chunks = [];
    res.on("data", (c) => chunks.push(c));
    res.on("end", () => resolve({ status: res.statusCode ?? 502, headers: res.headers, body: Buffer.concat(chunks) }));
  };
  return new Promise((resolve, reject) => {
    if (u.protocol === "http:") {
      const req = http.request({ socketPath, method, path: url, headers: h }, (res) => read(res, resolve));
      req.on("error", reject);
      req.end(body);
      return;
    }
    const tunnel = http.request({ socketPath, method: "CONNECT", path: `${u.hostname}:${u.port || 443}` });
    tunnel.on("connect", (res, socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        return reject(new Error(`the egress proxy refused ${u.host} (${res.statusCode})`));
      }
      const secure = tls.connect({ socket, servername: u.hostname });
      const req = https.request({ method, path: `${u.pathname}${u.search}`, headers: h, createConnection: () => secure }, (r) => read(r, resolve));
      req.on("error", reject);
      req.end(body);
    });
    tunnel.on("error", reject);
    tunnel.end();
  });
}

function startReplayProxy(port, cassette, calls, forward, egressSocket) {
  const queues = new Map();
  (cassette?.calls ?? []).forEach((c, i) => {
    const k = keyOf(c.method, c.url, bodyText(c.body));
    if (!queues.has(k)) queues.set(k, []);
    queues.get(k).push(i);
  });
  const unmatched = (res, method, url, why) => {
    calls.push({ method, url, outcome: "unmatched" });
    note(`unrecorded call ${method} ${url}${why ? ` (${why})` : ""}`);
    const body = JSON.stringify({ error: { type: "moss_replay_unrecorded_call", message: `moss replay: unrecorded call ${method} ${url}: the failure's cassette holds no such call${why ? ` (${why})` : ""}` } });
    res.writeHead(502, { "content-type": "application/json", "content-length": Buffer.byteLength(body) }).end(body);
  };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const method = req.method ?? "GET";
      const named = req.headers["x-moss-replay-url"];
      const url = typeof named === "string" ? named : /^https?:\/\//i.test(req.url ?? "") ? req.url : `http://${req.headers.host ?? "unknown"}${req.url}`;
      const raw = Buffer.concat(chunks);
      const body = raw.toString("utf8");
      const queue = queues.get(keyOf(method, url, body));
      const index = queue?.shift();
      if (index === undefined && egressSocket && forwardBaseOf(url, forward)) {
        forwardCall(egressSocket, method, url, req.headers, raw).then(
          (r) => {
            calls.push({ method, url, outcome: "forwarded" });
            note(`forwarded ${method} ${url} (not recorded; allow-listed) → ${r.status}`);
            const headers = {};
            for (const [k, v] of Object.entries(r.headers)) if (!DROP_RESPONSE.has(k.toLowerCase()) && v !== undefined) headers[k] = v;
            headers["content-length"] = String(r.body.length);
            res.writeHead(r.status, headers).end(r.body);
          },
          (err) => unmatched(res, method, url, `forwarding to the allow-listed sandbox failed: ${err.message}`),
        );
        return;
      }
      if (index === undefined) return unmatched(res, method, url, queue ? "every recorded call like it was already answered" : undefined);
      const rec = cassette.calls[index];
      calls.push({ method, url, outcome: "matched", index });
      if (!rec.response) {
        // The recorded call failed without an answer: so does this one.
        req.socket.destroy();
        return;
      }
      const headers = {};
      for (const [k, v] of Object.entries(rec.response.headers ?? {})) if (!DROP_RESPONSE.has(k.toLowerCase())) headers[k] = v;
      const out = rec.response.body.base64 ? Buffer.from(rec.response.body.text, "base64") : Buffer.from(rec.response.body.text, "utf8");
      headers["content-length"] = String(out.length);
      res.writeHead(rec.response.status, headers).end(out);
    });
  });
  server.on("connect", (req, socket) => {
    calls.push({ method: "CONNECT", url: String(req.url), outcome: "unmatched" });
    note(`unrecorded call CONNECT ${req.url} (TLS made without the Moss SDK cannot be answered from a cassette)`);
    socket.end("HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\n\r\nmoss replay: CONNECT is not answered: calls reach a replay through the Moss SDK (fetch / urllib) or as plain-HTTP proxy requests\n");
  });
  server.on("clientError", (_e, socket) => socket.destroy());
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
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
  const first = result.calls?.find((c) => c.outcome === "unmatched");
  if (first) result.diverged = `unrecorded call ${first.method} ${first.url}`;
  process.stdout.write(`${MARKER} ${JSON.stringify(result)}\n`, () => process.exit(0));
}

async function main() {
  // The trial comes on stdin (the runtime writes it and closes it): a pooled sidecar starts before its trial exists
  // and waits here, with nothing to do until a trial takes it.
  note("waiting for a trial");
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  const trial = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  nonce = trial.nonce;
  const calls = [];
  const result = { nonce, timedOut: false, calls };
  // Up before the agent can call out (it may at start): the runtime starts the agent once this says ready.
  const go = new Promise((r) => process.once("SIGUSR1", r));
  if (trial.proxyPort) await startReplayProxy(trial.proxyPort, trial.cassette, calls, trial.forward, trial.egressSocket);
  note(`ready${trial.proxyPort ? `: replay proxy on 127.0.0.1:${trial.proxyPort}, ${trial.cassette?.calls?.length ?? 0} recorded call(s)` : ""}; waiting for the agent to start`);
  // A pending promise does not keep node alive; this does, until the go.
  const alive = setInterval(() => undefined, 60_000);
  await go;
  clearInterval(alive);
  t0 = performance.now();
  if (trial.mode === "command") {
    // A command agent needs no request: the driver serves its calls until the runtime says the command is done.
    await new Promise((r) => {
      const keep = setInterval(() => undefined, 60_000);
      process.once("SIGUSR2", () => (clearInterval(keep), r()));
    });
    return finish(result);
  }
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
