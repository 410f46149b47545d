/**
 * A tiny agent git repo for the runtime tests: a TypeScript HTTP server bundled by esbuild in an
 * exec-form RUN (the base image has no shell), with endpoints that exercise every trial path.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

const DOCKERFILE = `FROM moss/node-base
WORKDIR /app
COPY src /app/src
COPY state.json /data/state.json
RUN ["/usr/bin/esbuild", "src/server.ts", "--bundle", "--platform=node", "--format=esm", "--target=node20", "--outfile=/app/server.mjs"]
CMD ["/usr/bin/node", "/app/server.mjs"]
`;

const MATH_TS = `export function divide(a: number, b: number): number {
  if (b === 0) throw new Error("division by zero");
  return a / b;
}
`;

const BROKEN_MATH_TS = `export function divide(a: number, b: number {
  return a / b;
}
`;

const serverTs = (version: string): string => `import http from "node:http";
import net from "node:net";
import { randomBytes } from "node:crypto";
import { appendFileSync, readFileSync } from "node:fs";
import { divide } from "./math";

const VERSION: string = ${JSON.stringify(version)};
interface Order { id: string; item: string; qty: number }

function reportFailure(failure: Record<string, unknown>): void {
  const file = process.env.MOSS_REPLAY_FAILURE_FILE;
  if (file) appendFileSync(file, JSON.stringify(failure) + "\\n");
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json", "x-agent-version": VERSION });
  res.end(JSON.stringify(body));
}

if (process.env.CRASH_ON_START) {
  console.error("crashing on start as asked");
  process.exit(2);
}

function handle(req: http.IncomingMessage, res: http.ServerResponse, raw: string): void {
  const url = new URL(req.url ?? "/", "http://agent");
  console.log(\`\${req.method} \${url.pathname}\`);
  if (url.pathname === "/health") return send(res, 200, { ok: true, version: VERSION });
  if (url.pathname === "/state") return send(res, 200, JSON.parse(readFileSync("/data/state.json", "utf8")));
  if (url.pathname === "/env") return send(res, 200, { value: process.env[url.searchParams.get("name") ?? ""] ?? null });
  if (url.pathname === "/echo") return send(res, 200, { method: req.method, body: raw, header: req.headers["x-test"] ?? null });
  if (url.pathname === "/divide" && req.method === "POST") {
    const { a, b } = JSON.parse(raw) as { a: number; b: number };
    try {
      return send(res, 200, { result: divide(a, b) });
    } catch (err) {
      reportFailure({ kind: "division_by_zero", a, b });
      console.error("division failed:", (err as Error).message);
      return send(res, 500, { error: (err as Error).message });
    }
  }
  if (url.pathname === "/flaky") {
    // Fails about half the time, whatever the seed: a coin the replay cannot fix (real randomness, not the turn's).
    if (randomBytes(1)[0]! < 128) {
      reportFailure({ kind: "coin_flip" });
      return send(res, 500, { error: "lost the coin flip" });
    }
    return send(res, 200, { ok: true });
  }
  if (url.pathname === "/hang") {
    reportFailure({ kind: "hang_started" });
    return; // never answers
  }
  const m = /^\\/orders\\/(\\w+)$/.exec(url.pathname);
  if (m) {
    let orders: Record<string, Order>;
    try {
      orders = JSON.parse(readFileSync("/data/snapshot/orders.json", "utf8")) as Record<string, Order>;
    } catch (err) {
      reportFailure({ kind: "orders_unavailable", message: (err as Error).message });
      return send(res, 500, { error: "orders unavailable" });
    }
    const order = orders[m[1] as string];
    return order ? send(res, 200, order) : send(res, 404, { error: "no such order" });
  }
  if (url.pathname === "/net") {
    const started = Date.now();
    const s = net.connect({ host: "1.1.1.1", port: 80 });
    s.setTimeout(3000, () => {
      s.destroy();
      send(res, 200, { connected: false, error: "TIMEOUT", ms: Date.now() - started });
    });
    s.on("connect", () => {
      s.destroy();
      send(res, 200, { connected: true, ms: Date.now() - started });
    });
    s.on("error", (err: Error & { code?: string }) => send(res, 200, { connected: false, error: err.code, ms: Date.now() - started }));
    return;
  }
  if (url.pathname === "/whoami") return send(res, 200, { uid: process.getuid?.() ?? null });
  if (url.pathname === "/oom") {
    const hog: Buffer[] = [];
    for (;;) hog.push(Buffer.alloc(16 * 1024 * 1024, 1)); // touched pages: the cgroup limit kills us
  }
  if (url.pathname === "/crash") {
    console.error("crashing as asked");
    process.exit(3);
  }
  send(res, 404, { error: "not found" });
}

const server = http.createServer((req, res) => {
  let raw = "";
  req.setEncoding("utf8");
  req.on("data", (c: string) => (raw += c));
  req.on("end", () => handle(req, res, raw));
});

if (!process.env.NO_LISTEN) {
  const port = Number(process.env.PORT ?? 8080);
  server.listen(port, "127.0.0.1", () => console.log(\`agent \${VERSION} listening on \${port}\`));
} else {
  setInterval(() => undefined, 1000); // alive, but never listens
}
`;

export interface FixtureRepo {
  dir: string;
  /** Good build, /health says v1. */
  v1: string;
  /** Good build, /health says v2. */
  v2: string;
  /** v2 with `USER nobody` in the Dockerfile. */
  nobody: string;
  /** esbuild fails on a syntax error in src/math.ts. */
  broken: string;
  /** A RUN step that never ends (its script carries the marker `moss-build-hang`). */
  hangs: string;
}

function git(dir: string, ...args: string[]): string {
  return execFileSync("git", ["-C", dir, "-c", "user.name=moss-test", "-c", "user.email=moss-test@example.invalid", "-c", "commit.gpgsign=false", ...args], {
    encoding: "utf8",
  }).trim();
}

function commitAll(dir: string, message: string): string {
  git(dir, "add", "-A");
  git(dir, "commit", "-q", "-m", message);
  return git(dir, "rev-parse", "HEAD");
}

export function createFixtureRepo(): FixtureRepo {
  const dir = mkdtempSync(path.join(tmpdir(), "moss-runtime-fixture-"));
  git(dir, "init", "-q", "-b", "main");
  mkdirSync(path.join(dir, "src"));
  writeFileSync(path.join(dir, "Dockerfile"), DOCKERFILE);
  writeFileSync(path.join(dir, "state.json"), JSON.stringify({ greeting: "hello from the image" }));
  writeFileSync(path.join(dir, "src/math.ts"), MATH_TS);
  writeFileSync(path.join(dir, "src/server.ts"), serverTs("v1"));
  const v1 = commitAll(dir, "agent v1");
  writeFileSync(path.join(dir, "src/server.ts"), serverTs("v2"));
  // Uncommitted changes must not reach the image: git archive builds the commit only.
  const v2 = commitAll(dir, "agent v2");
  writeFileSync(path.join(dir, "Dockerfile"), DOCKERFILE.replace("CMD [", "USER nobody\nCMD ["));
  const nobody = commitAll(dir, "run as nobody");
  writeFileSync(path.join(dir, "src/math.ts"), BROKEN_MATH_TS);
  const broken = commitAll(dir, "broken math");
  writeFileSync(path.join(dir, "Dockerfile"), DOCKERFILE.replace('RUN ["/usr/bin/esbuild"', 'RUN ["/usr/bin/node", "-e", "setTimeout(() => {}, 600000) // moss-build-hang"]\nRUN ["/usr/bin/esbuild"'));
  const hangs = commitAll(dir, "a RUN step that never ends");
  writeFileSync(path.join(dir, "src/server.ts"), "this is not typescript (uncommitted)");
  return { dir, v1, v2, nobody, broken, hangs };
}

/** A tar of the given files (paths relative to the extraction directory), made with the tar CLI. */
export function makeTar(files: Record<string, string>): Buffer {
  const dir = mkdtempSync(path.join(tmpdir(), "moss-runtime-snap-"));
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), content);
  }
  try {
    return execFileSync("tar", ["-C", dir, "--owner=0", "--group=0", "-cf", "-", "."], { maxBuffer: 64 * 1024 * 1024 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
