// The health probe says what it saw: a 404 names the setting to fix instead of passing for a sick agent.
import { createServer, type Server } from "node:http";
import { httpProbe } from "@moss/runtime";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

let server: Server;
let base: string;
beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === "/healthz") res.end("ok");
    else if (req.url === "/sick") res.writeHead(503).end();
    else if (req.url === "/slow") setTimeout(() => res.end("late"), 2_000);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => server.close());

describe("httpProbe", () => {
  it("is healthy on a 2xx, and says what it saw otherwise", async () => {
    expect(await httpProbe(`${base}/healthz`, 1_000)()).toEqual({ healthy: true, detail: `GET ${base}/healthz answered 200` });
    expect(await httpProbe(`${base}/sick`, 1_000)()).toEqual({ healthy: false, detail: `GET ${base}/sick answered 503` });
    expect((await httpProbe(`${base}/slow`, 200)()).detail).toBe(`GET ${base}/slow failed: no answer within 200 ms`);
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as { port: number }).port;
    await new Promise<void>((r) => closed.close(() => r()));
    expect((await httpProbe(`http://127.0.0.1:${port}/health`, 500)()).detail).toBe(`GET http://127.0.0.1:${port}/health failed: ECONNREFUSED`);
  });

  it("a 404 names agents.<name>.healthPath", async () => {
    const r = await httpProbe(`${base}/health`, 1_000, "notes")();
    expect(r.healthy).toBe(false);
    expect(r.detail).toContain("answered 404");
    expect(r.detail).toContain("set agents.notes.healthPath");
  });
});
