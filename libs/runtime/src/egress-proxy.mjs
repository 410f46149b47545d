// The coding agent's only way out of its container: an HTTP proxy that lets through the destinations of
// rewriter.sandbox.allow and nothing else. The coding agent's network namespace has a loopback and nothing more; this
// script runs twice, each in a container of its own:
// - MOSS_EGRESS_FORWARD=<socket>: in that namespace (the agent's container joins this one's), listening on
//   127.0.0.1:3128 and handing every connection, unread, to the unix socket — its only way out, too;
// - MOSS_EGRESS_LISTEN=<socket>: on the engine's default bridge, listening on that socket (a directory only the two
//   share), the proxy proper. It understands CONNECT (HTTPS and any TLS client honouring HTTPS_PROXY) and absolute-
//   form HTTP requests (a plain-HTTP model server). Every decision is one JSON line on stdout, which the rewriter
//   keeps with the stage's output.
// No dependencies: it runs on moss/node-base.
//
// MOSS_EGRESS_ALLOW: comma-separated `host:port` (a bare `host` means port 443), compared without case.
import { createServer, request } from "node:http";
import { connect, createServer as createTcpServer } from "node:net";

const PORT = 3128;
const FORWARD = process.env.MOSS_EGRESS_FORWARD;
if (FORWARD) {
  createTcpServer((c) => {
    const up = connect(FORWARD);
    c.pipe(up).pipe(c);
    up.on("error", () => c.destroy());
    c.on("error", () => up.destroy());
  }).listen(PORT, "127.0.0.1", () => process.stdout.write(`${JSON.stringify({ listening: PORT })}\n`));
}
const allow = new Set(
  (process.env.MOSS_EGRESS_ALLOW ?? "")
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean)
    .map((s) => (/:\d+$/.test(s) ? s : `${s}:443`)),
);
const say = (o) => process.stdout.write(`${JSON.stringify({ egress: o.decision, target: o.target, method: o.method })}\n`);
const refuse = (target) => `moss sandbox: ${target} is not in rewriter.sandbox.allow; the coding agent may reach only ${[...allow].join(", ") || "nothing"}\n`;

const server = createServer((req, res) => {
  let url;
  try {
    url = new URL(req.url ?? "");
  } catch {
    res.writeHead(400, { "content-type": "text/plain" }).end("moss sandbox: this is a proxy; send absolute-form requests or CONNECT\n");
    return;
  }
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  const target = `${url.hostname.toLowerCase()}:${port}`;
  if (url.protocol !== "http:" || !allow.has(target)) {
    say({ decision: "refused", target, method: req.method });
    res.writeHead(403, { "content-type": "text/plain" }).end(refuse(target));
    return;
  }
  say({ decision: "allowed", target, method: req.method });
  const headers = { ...req.headers };
  for (const h of Object.keys(headers)) if (h.startsWith("proxy-")) delete headers[h];
  const up = request({ host: url.hostname, port: Number(port), method: req.method, path: `${url.pathname}${url.search}`, headers }, (r) => {
    res.writeHead(r.statusCode ?? 502, r.headers);
    r.pipe(res);
  });
  up.on("error", (e) => {
    if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
    res.end(`moss sandbox: ${target}: ${e.message}\n`);
  });
  req.pipe(up);
});

server.on("connect", (req, socket, head) => {
  const target = String(req.url ?? "").toLowerCase();
  const m = /^([^:]+|\[[^\]]+\]):(\d+)$/.exec(target);
  if (!m || !allow.has(target)) {
    say({ decision: "refused", target, method: "CONNECT" });
    socket.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\n\r\n${refuse(target)}`);
    return;
  }
  say({ decision: "allowed", target, method: "CONNECT" });
  const up = connect(Number(m[2]), m[1].replace(/^\[|\]$/g, ""), () => {
    socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    if (head.length) up.write(head);
    up.pipe(socket);
    socket.pipe(up);
  });
  up.on("error", (e) => socket.end(`HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\n\r\nmoss sandbox: ${target}: ${e.message}\n`));
  socket.on("error", () => up.destroy());
});
server.on("clientError", (_e, socket) => socket.destroy());
const LISTEN = process.env.MOSS_EGRESS_LISTEN;
if (LISTEN) server.listen(LISTEN, () => process.stdout.write(`${JSON.stringify({ listening: LISTEN, allow: [...allow] })}\n`));
