import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAdapter, type StageInvocation, type ToolPreset } from "@moss/rewriter";
import { alive, ensureFakesExecutable, FAKES, fakeEnv, invocation, makeRepo, readJson, status, tempRoot, waitFor } from "./helpers";

const root = tempRoot("adapters-presets");
beforeAll(ensureFakesExecutable);
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Dump {
  argv: string[];
  cwd: string;
  stdin: string;
  messageFile?: string;
}

/** Whether `argv` holds `seq` as consecutive arguments. */
function hasSeq(argv: readonly string[], seq: readonly string[]): boolean {
  return argv.some((_, i) => seq.every((s, j) => argv[i + j] === s));
}

interface Case {
  preset: ToolPreset;
  /** Flag sequences a read-only stage must pass. */
  readOnly: string[][];
  /** Flag sequences the implement stage must pass. */
  implement: string[][];
  /** The fake's mode that exits 0 with an error inside its output, and the error text. */
  errorMode: string;
  errorText: RegExp;
  /** Why garbage on stdout is a failure, in the reason. */
  garbage: RegExp;
  /** What a "nothing to change" run maps to: Claude Code has no such signal (the rewriter's git status decides). */
  noChange: "no-change" | "success";
  /** Where the prompt travels. */
  prompt: (d: Dump) => string;
}

const cases: Case[] = [
  {
    preset: "claude-code",
    readOnly: [["-p"], ["--output-format", "json"], ["--permission-mode", "default"], ["--disallowedTools", "Bash,Edit,Write,MultiEdit,NotebookEdit"]],
    implement: [["-p"], ["--output-format", "json"], ["--permission-mode", "acceptEdits"]],
    errorMode: "is-error",
    errorText: /issue with the selected model/,
    garbage: /asked for --output-format json but printed 'Welcome!/,
    noChange: "success",
    prompt: (d) => d.argv[1]!,
  },
  {
    preset: "codex",
    readOnly: [["exec", "--json"], ["--sandbox", "read-only"]],
    implement: [["exec", "--json"], ["--sandbox", "workspace-write"]],
    errorMode: "turn-failed",
    errorText: /401 Unauthorized: invalid api key/,
    garbage: /asked for --json events but printed 'Welcome!/,
    noChange: "no-change",
    prompt: (d) => d.argv[d.argv.length - 1]!,
  },
  {
    preset: "aider",
    readOnly: [["--chat-mode", "ask"], ["--yes-always"], ["--no-auto-commits"]],
    implement: [["--yes-always"], ["--no-auto-commits"], ["--no-gitignore"]],
    errorMode: "api-error",
    errorText: /litellm\.AuthenticationError: AnthropicException - invalid x-api-key/,
    garbage: /does not look like aider's/,
    noChange: "no-change",
    prompt: (d) => d.messageFile ?? "",
  },
  {
    preset: "opencode",
    readOnly: [["run"], ["--format", "json"], ["--agent", "plan"]],
    implement: [["run"], ["--format", "json"]],
    errorMode: "error",
    errorText: /Token refresh failed: 401/,
    garbage: /asked for --format json but printed 'Welcome!/,
    noChange: "no-change",
    prompt: (d) => d.argv[1]!,
  },
];

describe.each(cases)("$preset preset", (c) => {
  const dir = join(root, c.preset);
  const argvFile = join(dir, "argv.json");
  const env = (extra: Record<string, string> = {}) => fakeEnv(dir, { FAKE_ARGV_FILE: argvFile, ...extra });
  const adapter = createAdapter({ preset: c.preset });
  let n = 0;
  const repo = () => makeRepo(dir, `repo-${++n}`);
  const dump = () => readJson<Dump>(argvFile);

  it("implements: the tool edits the worktree, the run is a success and its answer lands in outputPath", async () => {
    const wt = repo();
    const inv = invocation(dir, wt, "implement", env());
    const r = await adapter.run(inv);
    expect(r.outcome, r.reason).toBe("success");
    expect(r.exitCode).toBe(0);
    expect(status(wt)).toBe("?? fixed.txt");
    expect(readFileSync(join(wt, "fixed.txt"), "utf8")).toContain("fixed by");
    expect(r.message).toMatch(/Fixed the null check|I added the null check/);
    expect(readFileSync(inv.outputPath, "utf8")).toBe(r.message);
    const d = dump();
    expect(d.cwd).toBe(wt);
    for (const seq of c.implement) expect(hasSeq(d.argv, seq), `${seq.join(" ")} in ${JSON.stringify(d.argv)}`).toBe(true);
    expect(hasSeq(d.argv, c.readOnly.find((s) => !c.implement.some((i) => i.join() === s.join()))!)).toBe(false);
  });

  it("diagnoses read-only: passes the prompt and the evidence path, asks the tool not to edit, and writes its answer", async () => {
    const wt = repo();
    const inv = invocation(dir, wt, "locate", env());
    const r = await adapter.run(inv);
    expect(r.outcome, r.reason).toBe("success");
    const d = dump();
    for (const seq of c.readOnly) expect(hasSeq(d.argv, seq), `${seq.join(" ")} in ${JSON.stringify(d.argv)}`).toBe(true);
    const prompt = c.prompt(d);
    expect(prompt).toContain("the greeting crashes on a missing user");
    expect(prompt).toContain(inv.evidencePath);
    expect(prompt).toContain("do not create, edit or delete any file");
    expect(status(wt)).toBe("");
    expect(r.message).toMatch(/root cause|Diagnosis/);
    expect(readFileSync(inv.outputPath, "utf8")).toBe(r.message);
  });

  it("reports an error the tool prints with exit 0 as a failure, with the error text", async () => {
    const r = await adapter.run(invocation(dir, repo(), "implement", env({ FAKE_MODE: c.errorMode })));
    expect(r.exitCode).toBe(0);
    expect(r.outcome).toBe("failure");
    expect(r.reason).toMatch(c.errorText);
  });

  it("reports output it cannot read as a failure, saying what it got", async () => {
    const r = await adapter.run(invocation(dir, repo(), "implement", env({ FAKE_MODE: "garbage" })));
    expect(r.outcome).toBe("failure");
    expect(r.reason).toMatch(c.garbage);
    expect(r.output).toContain("not what you asked for");
  });

  it(`maps the tool's "nothing to change" run to ${c.noChange}`, async () => {
    const wt = repo();
    const inv = invocation(dir, wt, "implement", env({ FAKE_MODE: "no-change" }));
    const r = await adapter.run(inv);
    expect(r.outcome, r.reason).toBe(c.noChange);
    expect(status(wt)).toBe("");
    expect(r.message).toMatch(/nothing to change|no changes are needed|Nothing needs to change/i);
    expect(readFileSync(inv.outputPath, "utf8")).toBe(r.message);
  });

  it("does not hang on a tool that reads stdin: stdin is closed, so it gets EOF at once", async () => {
    const inv = invocation(dir, repo(), "implement", env({ FAKE_MODE: "stdin" }), { timeoutMs: 15_000 });
    const r = await adapter.run(inv);
    expect(r.outcome, r.reason).toBe("success");
    expect(r.durationMs).toBeLessThan(10_000);
    expect(dump().stdin).toBe("");
  });

  it("kills a hanging tool at the timeout, its grandchild too", async () => {
    const pidFile = join(dir, `grandchild-${n}.pid`);
    const inv = invocation(dir, repo(), "implement", env({ FAKE_MODE: "hang", FAKE_PID_FILE: pidFile }), { timeoutMs: 1_500 });
    const r = await adapter.run(inv);
    expect(r.outcome).toBe("timeout");
    expect(r.reason).toContain("1500 ms timeout");
    expect(r.durationMs).toBeGreaterThanOrEqual(1_400);
    expect(r.durationMs).toBeLessThan(8_000);
    expect(r.output).toContain("thinking...");
    const pid = Number(readFileSync(pidFile, "utf8"));
    expect(await waitFor(() => !alive(pid))).toBe(true);
  });

  it("passes --model and extraArgs", async () => {
    const a = createAdapter({ preset: c.preset, model: "some-model", extraArgs: ["--extra-flag", "x"] });
    const r = await a.run(invocation(dir, repo(), "plan", env()));
    expect(r.outcome, r.reason).toBe("success");
    const d = dump();
    expect(hasSeq(d.argv, ["--model", "some-model"])).toBe(true);
    expect(hasSeq(d.argv, ["--extra-flag", "x"])).toBe(true);
  });

  it("reads the tool's version once, and caches it", async () => {
    const a = createAdapter({ preset: c.preset }, { versionEnv: fakeEnv(dir) });
    expect(await a.version()).toBe(`${c.preset === "claude-code" ? "claude" : c.preset} 1.2.3-fake`);
  });

  it("with a bin that ignores its arguments and prints a version: version() works once, a run is not mistaken for success", async () => {
    const count = join(dir, "version-count");
    const a = createAdapter({ preset: c.preset, bin: join(FAKES, "fake-version") }, { versionEnv: fakeEnv(dir, { FAKE_COUNT_FILE: count }) });
    const [v1, v2] = await Promise.all([a.version(), a.version()]);
    expect(v1).toBe("fake-tool 9.8.7");
    expect(v2).toBe("fake-tool 9.8.7");
    expect(await a.version()).toBe("fake-tool 9.8.7");
    expect(readFileSync(count, "utf8")).toBe("x");
    const wt = repo();
    const r = await a.run(invocation(dir, wt, "implement", env()));
    expect(r.outcome).toBe("failure");
    expect(r.exitCode).toBe(0);
    expect(r.reason).toMatch(/fake-tool 9\.8\.7/);
  });

  it("reports a tool that is not installed as a failure that says so", async () => {
    const a = createAdapter({ preset: c.preset, bin: "no-such-coding-agent" });
    const r = await a.run(invocation(dir, repo(), "implement", env()));
    expect(r.outcome).toBe("failure");
    expect(r.reason).toMatch(/could not start 'no-such-coding-agent'.*ENOENT/);
    expect(await a.version()).toBeUndefined();
  });

  it("hands a prompt too long for one argument over another way, whole", async () => {
    const big = `# Big prompt\n\n${"The greeting crashes on a missing user. ".repeat(4_000)}\nEND-OF-PROMPT\n`;
    const inv = invocation(dir, repo(), "plan", env({ FAKE_READ_STDIN: "1" }), { prompt: big });
    const r = await adapter.run(inv);
    expect(r.outcome, r.reason).toBe("success");
    const d = dump();
    expect(d.argv.every((a) => a.length < 100_000)).toBe(true);
    const carried = [d.stdin, d.messageFile ?? "", ...d.argv].join("\n");
    if (c.preset === "opencode") {
      // Attached as a file (the scratch copy is gone after the run; its name is in argv).
      const i = d.argv.indexOf("--file");
      expect(i).toBeGreaterThan(0);
      expect(d.argv[i + 1]).toMatch(/prompt\.md$/);
    } else {
      expect(carried).toContain("END-OF-PROMPT");
      expect(carried).toContain(inv.evidencePath);
    }
  });

  it("removes a stale answer before the run, so it cannot pass for this run's", async () => {
    const inv: StageInvocation = invocation(dir, repo(), "implement", env({ FAKE_MODE: "garbage" }));
    mkdirSync(join(inv.outputPath, ".."), { recursive: true });
    writeFileSync(inv.outputPath, "an old answer");
    const r = await adapter.run(inv);
    expect(r.outcome).toBe("failure");
    if (c.preset !== "aider") expect(existsSync(inv.outputPath)).toBe(false);
    else expect(readFileSync(inv.outputPath, "utf8")).not.toContain("an old answer");
  });
});

describe("claude-code specifics", () => {
  const dir = join(root, "claude-specific");
  const env = (mode: string) => fakeEnv(dir, { FAKE_MODE: mode });
  const adapter = createAdapter({ preset: "claude-code" });

  it("an error_* subtype is a failure even without is_error", async () => {
    const r = await adapter.run(invocation(dir, makeRepo(dir, "a"), "implement", env("error-subtype")));
    expect(r.outcome).toBe("failure");
    expect(r.reason).toBe("claude reported an error (error_max_turns): Reached maximum number of turns (3)");
  });

  it("a non-zero exit with a JSON error result is a failure with the result text", async () => {
    const r = await adapter.run(invocation(dir, makeRepo(dir, "b"), "implement", env("exit-1")));
    expect(r.outcome).toBe("failure");
    expect(r.exitCode).toBe(1);
    expect(r.reason).toContain("Credit balance is too low");
  });

  it("lets its Read tool reach the evidence directory", async () => {
    const argvFile = join(dir, "argv.json");
    const inv = invocation(dir, makeRepo(dir, "c"), "locate", fakeEnv(dir, { FAKE_ARGV_FILE: argvFile }));
    await adapter.run(inv);
    expect(hasSeq(readJson<Dump>(argvFile).argv, ["--add-dir", join(inv.evidencePath, "..")])).toBe(true);
  });
});

describe("codex specifics", () => {
  const dir = join(root, "codex-specific");
  const adapter = createAdapter({ preset: "codex" });

  it("an error codex recovered from (a completed turn follows) is not a failure", async () => {
    const r = await adapter.run(invocation(dir, makeRepo(dir, "a"), "locate", fakeEnv(dir, { FAKE_MODE: "recovered" })));
    expect(r.outcome, r.reason).toBe("success");
    expect(r.message).toBe("Recovered and answered.");
  });

  it("takes the answer from the events when codex did not write --output-last-message, and writes it", async () => {
    const inv = invocation(dir, makeRepo(dir, "b"), "locate", fakeEnv(dir, { FAKE_NO_LAST_MESSAGE: "1" }));
    const r = await adapter.run(inv);
    expect(r.outcome, r.reason).toBe("success");
    expect(readFileSync(inv.outputPath, "utf8")).toMatch(/^Diagnosis: /);
  });

  it("asks codex to write its last message to outputPath itself, in the worktree as workspace root", async () => {
    const argvFile = join(dir, "argv.json");
    const inv = invocation(dir, makeRepo(dir, "c"), "plan", fakeEnv(dir, { FAKE_ARGV_FILE: argvFile }));
    await adapter.run(inv);
    const { argv } = readJson<Dump>(argvFile);
    expect(hasSeq(argv, ["--output-last-message", inv.outputPath])).toBe(true);
    expect(hasSeq(argv, ["--cd", inv.worktree])).toBe(true);
  });
});

describe("aider specifics", () => {
  const dir = join(root, "aider-specific");
  const adapter = createAdapter({ preset: "aider" });

  it("edit blocks that did not match are a failure", async () => {
    const r = await adapter.run(invocation(dir, makeRepo(dir, "a"), "implement", fakeEnv(dir, { FAKE_MODE: "no-match" })));
    expect(r.outcome).toBe("failure");
    expect(r.reason).toContain("edit blocks did not match");
  });

  it("keeps its histories out of the worktree, removes its repo-map cache, and takes the answer from the chat history", async () => {
    const wt = makeRepo(dir, "b");
    const argvFile = join(dir, "argv.json");
    const inv = invocation(dir, wt, "locate", fakeEnv(dir, { FAKE_ARGV_FILE: argvFile }));
    const r = await adapter.run(inv);
    expect(r.outcome, r.reason).toBe("success");
    expect(status(wt)).toBe("");
    expect(existsSync(join(wt, ".aider.tags.cache.v4"))).toBe(false);
    expect(r.reason).toContain(".aider.tags.cache.v4");
    expect(r.message).toBe("The root cause: the handler reads user.name before the user is loaded.");
    const { argv } = readJson<Dump>(argvFile);
    const hist = argv[argv.indexOf("--chat-history-file") + 1]!;
    expect(hist.startsWith(wt)).toBe(false);
    expect(hasSeq(argv, ["--read", inv.evidencePath])).toBe(true);
  });

  it("leaves a repo-map cache that was there before the run alone", async () => {
    const wt = makeRepo(dir, "c");
    mkdirSync(join(wt, ".aider.tags.cache.v4"));
    const r = await adapter.run(invocation(dir, wt, "implement", fakeEnv(dir)));
    expect(r.outcome, r.reason).toBe("success");
    expect(existsSync(join(wt, ".aider.tags.cache.v4"))).toBe(true);
  });
});
