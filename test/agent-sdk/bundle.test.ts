import { mkdtemp, readFile, rm } from "node:fs/promises";
import { builtinModules } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { FailureEvent } from "@moss/contracts";
import { bundleSdk } from "@moss/agent-sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

let work: string;
let file: string;
beforeAll(async () => {
  // Outside the monorepo: no node_modules can help the bundle resolve anything.
  work = await mkdtemp(join(tmpdir(), "moss-bundle-"));
  file = join(work, "vendor", "moss-agent-sdk.mjs");
  await bundleSdk(file);
}, 60_000);
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("bundleSdk", () => {
  it("writes one self-contained ESM file that imports only Node built-ins and not esbuild", async () => {
    const src = await readFile(file, "utf8");
    const specifiers = [...src.matchAll(/^\s*import\s[^"']*?from\s*["']([^"']+)["']/gm), ...src.matchAll(/\brequire\(["']([^"']+)["']\)/g)].map((m) => m[1]!);
    const builtins = new Set(builtinModules);
    const foreign = specifiers.filter((s) => !s.startsWith("node:") && !builtins.has(s));
    expect(foreign).toEqual([]);
    expect(src).not.toMatch(/esbuild/);
  });

  it("exposes createReporter, which works from the bundle (replay mode: one JSON line per failure)", async () => {
    const mod = (await import(pathToFileURL(file).href)) as typeof import("@moss/agent-sdk");
    expect(typeof mod.createReporter).toBe("function");
    expect("bundleSdk" in mod).toBe(false);
    const out = join(work, "failures.jsonl");
    const r = mod.createReporter({ agent: "demo", version: "abcdef0", env: { MOSS_REPLAY_FAILURE_FILE: out } });
    const id = await r.captureFailure({ request: { path: "/v1/chat", body: "{}" }, error: new RangeError("bundled") });
    await r.close();
    const ev = FailureEvent.parse(JSON.parse((await readFile(out, "utf8")).trim()));
    expect(ev).toMatchObject({ id, agent: "demo", error: { type: "RangeError", message: "bundled" } });
  });
});
