import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { FailureEvent } from "@moss/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prepareAgentRepo } from "@moss/cli";
import { EXAMPLE, buildLikeDockerfile, chat, readFailures, replay, run, startAgent, tempDir, writeEvidence } from "./helpers";

/**
 * The demo as Moss runs it, minus Docker: a stand-alone repo of the agent (prepareAgentRepo), built
 * with its Dockerfile's own esbuild command, fails on "convert 100 USD to EUR"; the failure event
 * (written in replay mode, so no NATS) is the evidence for the coding agent, run in a git worktree
 * like the rewriter does; the candidate is rebuilt and the failure replayed from its state snapshot.
 */
let work: string;
let repoDir: string;
let base: string;
let failure: FailureEvent;
let baseCommand: string[];

const git = async (cwd: string, ...args: string[]) => (await run("git", args, { cwd })).stdout.trim();

async function worktree(name: string): Promise<string> {
  const dir = join(work, name);
  await git(repoDir, "worktree", "add", "-q", "-b", name, dir, base);
  return dir;
}

async function codingAgent(script: "fix-routing.mjs" | "wrong-patch.mjs reword", cwd: string, evidence: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const [file, ...args] = script.split(" ");
    const r = await run(process.execPath, [join(cwd, "moss", file!), ...args, evidence], { cwd });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

beforeAll(async () => {
  work = await tempDir("moss-example-");
  ({ repoDir, commit: base } = await prepareAgentRepo(join(work, "repo")));
  baseCommand = await buildLikeDockerfile(repoDir, join(work, "build-base"));

  // Production, v1: the user teaches a rate, then asks for a conversion.
  const stateDir = join(work, "prod-state");
  const failureFile = join(work, "prod-failures.jsonl");
  const agent = await startAgent(baseCommand, { STATE_DIR: stateDir, MOSS_AGENT_VERSION: base, MOSS_REPLAY_FAILURE_FILE: failureFile, TZ: "UTC", AGENT_MODE: "demo", SECRET: "x" });
  try {
    expect(await chat(agent.url, "set rate USD EUR 0.92")).toEqual({ status: 200, body: { tool: "remember", answer: "noted: 1 USD = 0.92 EUR" } });
    const bug = await chat(agent.url, "convert 100 USD to EUR");
    expect(bug.status).toBe(500);
    const reported = await readFailures(failureFile);
    expect(reported).toHaveLength(1);
    failure = FailureEvent.parse(reported[0]);
    expect(bug.body.failureId).toBe(failure.id);
  } finally {
    await agent.stop();
  }
}, 60_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe("the demo agent's bug, as Moss sees it", () => {
  it("reports a complete failure event for the 500", () => {
    expect(failure).toMatchObject({
      agent: "demo",
      version: base,
      route: "calculator",
      request: { method: "POST", path: "/v1/chat", body: JSON.stringify({ session: "s1", message: "convert 100 USD to EUR" }) },
      response: { status: 500 },
      error: { type: "ToolInputError", message: "calculator: unsupported token 'usd'" },
      env: { TZ: "UTC", AGENT_MODE: "demo" },
    });
    // Source maps: the stack points at the TypeScript the coding agent edits.
    expect(failure.error.stack).toMatch(/src\/tools\/calculator\.ts:\d+/);
    expect(failure.logs.join("\n")).toMatch(/intent=calculator message="convert 100 USD to EUR"/);
    expect(failure.snapshot?.path).toBe(join(work, "prod-state"));
  });

  it("replaying the failure on v1 fails the same way (the snapshot holds the rate; nothing else is needed)", async () => {
    const r = await replay(baseCommand, failure, work);
    expect(r.status).toBe(500);
    expect(r.reported).toHaveLength(1);
  }, 30_000);
});

describe("fix-routing.mjs (the demo's coding agent)", () => {
  let fixedDir: string;
  let fixedCommand: string[];

  beforeAll(async () => {
    fixedDir = await worktree("attempt-1");
  });

  it("moves the currency rule before the calculator rule, and only that", async () => {
    const evidence = await writeEvidence(work, [failure]);
    const r = await codingAgent("fix-routing.mjs", fixedDir, evidence);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/moved the currency rule/);
    expect(await git(fixedDir, "status", "--porcelain")).toBe("M src/router.ts");
    const diff = await git(fixedDir, "diff", "--numstat");
    expect(diff).toBe("2\t2\tsrc/router.ts");
    const router = await readFile(join(fixedDir, "src/router.ts"), "utf8");
    expect(router.indexOf('intent: "currency"')).toBeLessThan(router.indexOf('intent: "calculator"'));
  });

  it("the candidate answers the replayed failure with 200 '100 USD = 92.00 EUR' and reports nothing", async () => {
    fixedCommand = await buildLikeDockerfile(fixedDir, join(work, "build-fixed"));
    const r = await replay(fixedCommand, failure, work);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ tool: "currency", answer: "100 USD = 92.00 EUR" });
    expect(r.reported).toEqual([]);
  }, 30_000);

  it("the candidate still does arithmetic and still refuses unknown rates with 422", async () => {
    const agent = await startAgent(fixedCommand, { STATE_DIR: join(work, "fixed-state"), MOSS_AGENT_VERSION: base, MOSS_REPLAY_FAILURE_FILE: join(work, "fixed-f.jsonl") });
    try {
      expect(await chat(agent.url, "what is 12 * (3 + 4)?")).toEqual({ status: 200, body: { tool: "calculator", answer: "12 * ( 3 + 4 ) = 84" } });
      const unknown = await chat(agent.url, "convert 5 GBP to JPY");
      expect(unknown.status).toBe(422);
      expect(String(unknown.body.error)).toMatch(/GBP\/JPY/);
    } finally {
      await agent.stop();
    }
    expect(await readFailures(join(work, "fixed-f.jsonl"))).toEqual([]);
  }, 30_000);

  it("on already-fixed code says 'no change needed' and exits 0 without touching the tree", async () => {
    const evidence = await writeEvidence(work, [failure], { attempt: 2 });
    const before = await readFile(join(fixedDir, "src/router.ts"), "utf8");
    const r = await codingAgent("fix-routing.mjs", fixedDir, evidence);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/no change needed/);
    expect(await readFile(join(fixedDir, "src/router.ts"), "utf8")).toBe(before);
  });

  it("exits 1 with a reason when the evidence is not the routing bug it knows", async () => {
    const dir = await worktree("attempt-unrelated");
    const other: FailureEvent = { ...failure, route: "echo", error: { type: "TypeError", message: "Cannot read properties of undefined (reading 'x')" } };
    const r = await codingAgent("fix-routing.mjs", dir, await writeEvidence(work, [other]));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not the calculator/);
    expect(await git(dir, "status", "--porcelain")).toBe("");

    const empty = await codingAgent("fix-routing.mjs", dir, await writeEvidence(work, []));
    expect(empty.code).toBe(1);
    expect(empty.stderr).toMatch(/no failures/);
  });
});

describe("wrong-patch.mjs reword (a plausible non-fix)", () => {
  it("changes the source, but the replayed failure still answers 500 and is reported again", async () => {
    const dir = await worktree("attempt-bad");
    const r = await codingAgent("wrong-patch.mjs reword", dir, await writeEvidence(work, [failure]));
    expect(r.code).toBe(0);
    expect(await git(dir, "status", "--porcelain")).toBe("M src/tools/calculator.ts");
    const command = await buildLikeDockerfile(dir, join(work, "build-bad"));
    const replayed = await replay(command, failure, work);
    expect(replayed.status).toBe(500);
    expect(replayed.reported).toHaveLength(1);
    expect(FailureEvent.parse(replayed.reported[0]).error.message).toMatch(/is not one of them/);
  }, 30_000);
});

describe("prepareAgentRepo", () => {
  it("commits the agent with its vendored SDK as 'agent v1' by Moss Demo, leaving a clean tree", async () => {
    expect(base).toMatch(/^[0-9a-f]{40}$/);
    expect(await git(repoDir, "rev-parse", "HEAD")).toBe(base);
    const files = (await git(repoDir, "ls-tree", "-r", "--name-only", "HEAD")).split("\n");
    expect(files).toEqual(expect.arrayContaining(["vendor/moss-agent-sdk.mjs", "src/router.ts", "src/main.ts", "Dockerfile", ".dockerignore", "README.md", "package.json", "moss/fix-routing.mjs", "moss/wrong-patch.mjs"]));
    expect(files.some((f) => f.includes("node_modules"))).toBe(false);
    expect(await git(repoDir, "log", "-1", "--format=%an <%ae>|%s")).toBe("Moss Demo <demo@moss.invalid>|agent v1");
    expect(await git(repoDir, "status", "--porcelain")).toBe("");
    const pkg = JSON.parse(await readFile(join(repoDir, "package.json"), "utf8")) as { dependencies?: unknown };
    expect(pkg.dependencies).toBeUndefined();
  });

  it("vendors a bundle that imports on its own and exposes createReporter", async () => {
    const mod = (await import(pathToFileURL(join(repoDir, "vendor/moss-agent-sdk.mjs")).href)) as Record<string, unknown>;
    expect(typeof mod.createReporter).toBe("function");
  });

  it("refuses a directory that is not empty", async () => {
    const dir = join(work, "not-empty");
    await mkdir(dir);
    await writeFile(join(dir, "x"), "");
    await expect(prepareAgentRepo(dir)).rejects.toThrow(/not empty/);
  });

  it("copies the agent's own files unchanged", async () => {
    for (const f of ["src/router.ts", "Dockerfile", "moss/fix-routing.mjs"]) {
      expect(await readFile(join(repoDir, f), "utf8")).toBe(await readFile(join(EXAMPLE, f), "utf8"));
    }
  });
});
