/**
 * The agents' public address: one HTTP listener per agent, each request sent to the version its route names at the
 * moment it arrives. A swap or a rollback is a new route (`setRoute`): requests already on their way finish where they
 * are, new ones go to the new version, and none fails for it. A request the upstream refuses before it could have been
 * read (a version stopped under it, a keep-alive socket it closed) is sent again, once, by the route as it is then.
 *
 * Counters per version (requests, 5xx, connection failures, in flight, a latency histogram) are what the promoter's
 * analysis reads; `snapshot()` gives them, cumulative since this gateway started.
 */
import { createHash } from "node:crypto";
import { Agent, createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { Codes } from "@moss/errors";
import { LATENCY_BOUNDS_MS, type Route, type RouteTarget, type VersionStats } from "@moss/contracts";

export interface ProxyOptions {
  /** An upstream that has not answered within this long: 504. */
  upstreamTimeoutMs: number;
  /** Largest request body taken (413 beyond). */
  maxBodyBytes: number;
}

/** Hop-by-hop headers (RFC 9110 7.6.1): never forwarded. */
const HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization", "proxy-authenticate"]);

/** Errors that say the upstream never took the request: safe to send it again. */
const NOT_TAKEN = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN"]);

function emptyStats(): VersionStats {
  return { requests: 0, errors5xx: 0, connErrors: 0, inflight: 0, latency: new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0) };
}

function bucketOf(ms: number): number {
  const i = LATENCY_BOUNDS_MS.findIndex((b) => ms <= b);
  return i < 0 ? LATENCY_BOUNDS_MS.length : i;
}

/** The target a request goes to: by its session header's hash when the route is sticky, else by chance, by weight. */
export function pick(route: Route, session: string | undefined): RouteTarget {
  if (route.targets.length === 1) return route.targets[0]!;
  const roll = session !== undefined ? createHash("sha256").update(session).digest().readUInt32BE(0) % 100 : Math.floor(Math.random() * 100);
  let acc = 0;
  for (const t of route.targets) {
    acc += t.weight;
    if (roll < acc) return t;
  }
  return route.targets[route.targets.length - 1]!;
}

export class AgentProxy {
  private route: Route | undefined;
  private readonly stats = new Map<string, VersionStats>();
  /** Keep-alive connections to the upstreams: a proxied request costs no TCP handshake. */
  private readonly upstreams = new Agent({ keepAlive: true, keepAliveMsecs: 1_000, maxFreeSockets: 64, scheduling: "lifo" });
  private server: Server | undefined;
  /** Bumped on every counter change: the stats writer skips an agent whose counters did not move. */
  changes = 0;

  constructor(
    readonly agent: string,
    private readonly opts: ProxyOptions,
  ) {}

  setRoute(route: Route | undefined): void {
    this.route = route;
    for (const t of route?.targets ?? []) if (!this.stats.has(t.version)) this.stats.set(t.version, emptyStats());
    this.changes++;
  }

  currentRoute(): Route | undefined {
    return this.route;
  }

  /** The counters per version, cumulative (a copy). */
  snapshot(): Record<string, VersionStats> {
    const out: Record<string, VersionStats> = {};
    for (const [v, s] of this.stats) out[v] = { ...s, latency: [...s.latency] };
    return out;
  }

  async listen(host: string, port: number): Promise<void> {
    const server = createServer({ keepAlive: true, keepAliveTimeout: 5_000 }, (req, res) => void this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.server = server;
  }

  address(): { host: string; port: number } | undefined {
    const a = this.server?.address();
    return a && typeof a === "object" ? { host: a.address, port: a.port } : undefined;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) {
      await new Promise<void>((r) => s.close(() => r()));
      s.closeAllConnections();
    }
    this.upstreams.destroy();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const t0 = performance.now();
    const route = this.route;
    if (!route) return answer(res, 503, `no version of agent ${this.agent} is routed yet: deploy one (moss deploy ${this.agent})`);
    const sticky = route.stickyHeader ? headerValue(req.headers[route.stickyHeader.toLowerCase()]) : undefined;
    let body: Buffer;
    try {
      body = await readBody(req, this.opts.maxBodyBytes);
    } catch (err) {
      return answer(res, (err as { status?: number }).status ?? 400, (err as Error).message);
    }
    const attempt = async (t: RouteTarget) => {
      const counts = this.counter(t.version);
      counts.inflight++;
      counts.requests++;
      this.changes++;
      const r = await this.forward(req, res, body, t);
      counts.inflight--;
      return { s: counts, result: r };
    };
    let target = pick(route, sticky);
    let { s, result } = await attempt(target);
    if (result.retry) {
      // Not taken by that version: once more by the route as it is now (a rollback may have moved it meanwhile).
      s.requests--;
      target = pick(this.route ?? route, sticky);
      ({ s, result } = await attempt(target));
    }
    if (result.status === undefined || result.retry) {
      s.connErrors++;
      if (!res.headersSent) answer(res, result.timedOut ? 504 : 502, `agent ${this.agent} version ${target.version.slice(0, 12)} did not answer: ${result.error}`);
      else res.destroy();
    } else if (result.status >= 500) s.errors5xx++;
    s.latency[bucketOf(performance.now() - t0)]!++;
    this.changes++;
  }

  private counter(version: string): VersionStats {
    let s = this.stats.get(version);
    if (!s) this.stats.set(version, (s = emptyStats()));
    return s;
  }

  /** One try at one upstream. `retry`: it never took the request, so another try cannot do it twice. */
  private forward(req: IncomingMessage, res: ServerResponse, body: Buffer, target: RouteTarget): Promise<{ status?: number; retry?: boolean; error?: string; timedOut?: boolean }> {
    return new Promise((resolve) => {
      const url = new URL(req.url ?? "/", target.upstream);
      const headers = endToEnd(req.headers);
      headers["content-length"] = String(body.length);
      const fwd = req.socket.remoteAddress;
      if (fwd) headers["x-forwarded-for"] = req.headers["x-forwarded-for"] ? `${headerValue(req.headers["x-forwarded-for"])}, ${fwd}` : fwd;
      headers["x-moss-version"] = target.version;
      let done = false;
      const finish = (r: { status?: number; retry?: boolean; error?: string; timedOut?: boolean }) => {
        if (!done) {
          done = true;
          resolve(r);
        }
      };
      const up = httpRequest({ host: url.hostname, port: url.port, method: req.method, path: url.pathname + url.search, headers, agent: this.upstreams, timeout: this.opts.upstreamTimeoutMs }, (ures) => {
        const out = endToEnd(ures.headers);
        // Which version answered: for the client's own records, and for whoever reads a trace of a canary.
        out["x-moss-version"] = target.version;
        res.writeHead(ures.statusCode ?? 502, out);
        ures.pipe(res);
        ures.on("end", () => finish({ status: ures.statusCode ?? 502 }));
        ures.on("error", (err) => finish({ error: err.message }));
        res.on("close", () => {
          if (!ures.complete) ures.destroy();
          finish({ status: ures.statusCode ?? 502 });
        });
      });
      up.on("timeout", () => {
        up.destroy(new Error(`no answer within ${this.opts.upstreamTimeoutMs} ms`));
        finish({ error: `no answer within ${this.opts.upstreamTimeoutMs} ms`, timedOut: true });
      });
      up.on("error", (err: Error & { code?: string }) => {
        // A refused connection, or a kept-alive socket the upstream had closed, before any byte of an answer.
        const notTaken = !res.headersSent && (NOT_TAKEN.has(err.code ?? "") || (up.reusedSocket && err.code === "ECONNRESET"));
        finish({ error: err.code ?? err.message, retry: notTaken });
      });
      up.end(body);
    });
  }
}

/** The headers of a message without its hop-by-hop ones. */
function endToEnd(h: IncomingMessage["headers"]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined && !HOP.has(k)) out[k] = v;
  return out;
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function answer(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) return void res.destroy();
  const body = JSON.stringify({ error: message, code: status === 503 ? Codes.NO_ROUTE.code : Codes.UPSTREAM.code });
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    req.on("data", (c: Buffer) => {
      n += c.length;
      if (n > max) {
        req.destroy();
        reject(Object.assign(new Error(`request body over ${max} bytes (gateway.maxBodyBytes)`), { status: 413 }));
      } else chunks.push(c);
    });
    req.on("end", () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    req.on("error", reject);
  });
}
