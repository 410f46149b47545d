import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseConfig } from "@moss/config";
import { Expectation, JsonAssertion, type ReplayResult } from "@moss/contracts";
import { checkJson, combineTrials, compareOutcome, judge, jsonPath, resolveExpectation, runGrader, type JudgedTrial } from "@moss/replayer";
import { describe, expect, it } from "vitest";
import { failure } from "../helpers/env";

const ok = (status = 200, body = '{"answer":"ok"}'): JudgedTrial => ({ response: { status, body, headers: {} }, timedOut: false, reportedFailures: [] });
const ev = failure({ id: "f1" });
const DEFAULT = resolveExpectation(undefined, ev);

describe("pass predicates", () => {
  it("default: a 2xx answer passes, a 4xx or a 5xx fails, naming the check with the expected and the actual status", async () => {
    expect(await judge(ev, ok(200, "hello"), 1_000, DEFAULT)).toEqual({ verdict: "pass", passed: true, reason: "answered 200: hello" });
    expect((await judge(ev, ok(204, ""), 1_000, DEFAULT)).passed).toBe(true);
    // The fix that turns the 500 into a polite 400 does not pass.
    const v400 = await judge(ev, ok(400, '{"error":"bad request"}'), 1_000, DEFAULT);
    expect(v400).toMatchObject({ verdict: "fail", passed: false, failed: { check: "status", expected: "200-299", actual: "400" } });
    expect(v400.reason).toContain("answered 400 (expected 200-299)");
    expect((await judge(ev, ok(500, "Internal Server Error"), 1_000, DEFAULT)).failed).toMatchObject({ check: "status", actual: "500" });
  });

  it("a timeout, no answer, a diverged call and a reported failure each fail with their own check", async () => {
    expect(await judge(ev, { timedOut: true, reportedFailures: [] }, 15_000, DEFAULT)).toMatchObject({ verdict: "timeout", failed: { check: "timeout", expected: "an answer within 15000 ms" } });
    expect(await judge(ev, { timedOut: false, error: "connection refused", reportedFailures: [] }, 1_000, DEFAULT)).toMatchObject({ verdict: "fail", failed: { check: "answer", actual: "connection refused" } });
    expect(await judge(ev, { ...ok(200), diverged: "unrecorded call POST https://api.x/v1" }, 1_000, DEFAULT)).toMatchObject({ verdict: "diverged", failed: { check: "diverged", actual: "unrecorded call POST https://api.x/v1" } });
    const reported = await judge(ev, { ...ok(200), reportedFailures: [{ error: { type: "TypeError", message: "still broken" } }] }, 1_000, DEFAULT);
    expect(reported).toMatchObject({ verdict: "fail", failed: { check: "reported", actual: "TypeError: still broken" } });
  });

  it("the failure's status range wins over the agent's; a failure whose right answer is a 4xx does not pass on a 200", async () => {
    const agent = parseConfig({ agents: { a: { repo: "/r", replay: { expect: { statusMin: 200, statusMax: 201 } } } } }).agents["a"]!.replay.expect;
    expect(resolveExpectation(agent, ev)).toMatchObject({ statusMin: 200, statusMax: 201 });
    const wants4xx = failure({ id: "f3", expect: { statusMin: 400, statusMax: 422 } });
    const e = resolveExpectation(agent, wants4xx);
    expect(e).toMatchObject({ statusMin: 400, statusMax: 422 });
    expect((await judge(wants4xx, ok(422), 1_000, e)).passed).toBe(true);
    expect((await judge(wants4xx, ok(200), 1_000, e)).failed).toMatchObject({ check: "status", expected: "400-422", actual: "200" });
  });

  it("JSON assertions: equals, matches, exists, absent — the agent's and the failure's add up, and the first unmet one is named", async () => {
    const agent = parseConfig({ agents: { a: { repo: "/r", replay: { expect: { json: [{ path: "$.error", absent: true }] } } } } }).agents["a"]!.replay.expect;
    const strict = failure({ id: "f4", expect: { json: [{ path: "$.order.total", equals: 42 }, { path: "$.order.items[0].sku", matches: "^SKU-\\d+$" }, { path: '$["trace id"]', exists: true }] } });
    const e = resolveExpectation(agent, strict);
    expect(e.json).toHaveLength(4);
    const good = JSON.stringify({ order: { total: 42, items: [{ sku: "SKU-7" }] }, "trace id": "t" });
    expect((await judge(strict, ok(200, good), 1_000, e)).passed).toBe(true);
    // A polite wrong answer: 200, but the wrong total.
    const wrong = await judge(strict, ok(200, JSON.stringify({ order: { total: 41, items: [{ sku: "SKU-7" }] }, "trace id": "t" })), 1_000, e);
    expect(wrong).toMatchObject({ verdict: "fail", failed: { check: "json", path: "$.order.total", expected: "42", actual: "41" } });
    expect(wrong.reason).toBe("answered 200 but $.order.total is 41 (expected 42)");
    expect((await judge(strict, ok(200, JSON.stringify({ error: "x", order: { total: 42, items: [{ sku: "SKU-7" }] }, "trace id": "t" })), 1_000, e)).failed).toMatchObject({ path: "$.error", expected: "absent", actual: '"x"' });
    expect((await judge(strict, ok(200, JSON.stringify({ order: { total: 42, items: [{ sku: "sku7" }] }, "trace id": "t" })), 1_000, e)).failed).toMatchObject({ path: "$.order.items[0].sku", expected: "matching /^SKU-\\d+$/", actual: '"sku7"' });
    expect((await judge(strict, ok(200, JSON.stringify({ order: { total: 42, items: [{ sku: "SKU-1" }] } })), 1_000, e)).failed).toMatchObject({ path: '$["trace id"]', expected: "present", actual: "(absent)" });
    expect((await judge(strict, ok(200, "<html>sorry</html>"), 1_000, e)).failed).toMatchObject({ check: "json", expected: "a JSON response" });
  });

  it("JSON paths and equality are JSON's: key order does not count, a missing index is absent", () => {
    expect(jsonPath({ a: [{ b: null }] }, "$.a[0].b")).toEqual({ found: true, value: null });
    expect(jsonPath({ a: [] }, "$.a[0]")).toEqual({ found: false });
    expect(jsonPath({ a: "s" }, "$.a.length")).toEqual({ found: false });
    expect(jsonPath({ x: 1 }, "$")).toEqual({ found: true, value: { x: 1 } });
    expect(checkJson('{"o":{"b":2,"a":1}}', [{ path: "$.o", equals: { a: 1, b: 2 } }])).toBeUndefined();
    expect(checkJson('{"n":7}', [{ path: "$.n", matches: "^7$" }])).toBeUndefined();
  });

  it("a bad assertion is refused where it is written, with what is wrong", () => {
    expect(JsonAssertion.safeParse({ path: "order.total", equals: 1 }).error?.issues[0]?.message).toContain("a JSON path");
    expect(JsonAssertion.safeParse({ path: "$.a", equals: 1, exists: true }).error?.issues[0]?.message).toContain("exactly one of");
    expect(JsonAssertion.safeParse({ path: "$.a", matches: "(" }).error?.issues[0]?.message).toContain("regular expression");
    expect(Expectation.safeParse({ statusMin: 700 }).success).toBe(false);
    expect(() => parseConfig({ agents: { a: { repo: "/r", replay: { expect: { grader: { command: [] } } } } } })).toThrow(/agents\.a\.replay\.expect\.grader\.command/);
  });

  it("a command agent passes by exit 0 by default; JSON checks read its stdout", async () => {
    const cmd = failure({ id: "c1", request: undefined, invocation: { args: ["run"] } });
    const e = resolveExpectation(undefined, cmd);
    expect(e).toMatchObject({ statusMin: 0, statusMax: 0 });
    expect(await judge(cmd, { timedOut: false, reportedFailures: [], exitCode: 0, stdout: "done" }, 1_000, e)).toMatchObject({ verdict: "pass", reason: "exited 0: done" });
    expect(await judge(cmd, { timedOut: false, reportedFailures: [], exitCode: 2, stdout: "usage" }, 1_000, e)).toMatchObject({ failed: { check: "exit", expected: "0", actual: "2" } });
    const withJson = resolveExpectation(undefined, failure({ id: "c2", request: undefined, invocation: { args: [] }, expect: { json: [{ path: "$.ok", equals: true }] } }));
    expect((await judge(cmd, { timedOut: false, reportedFailures: [], exitCode: 0, stdout: '{"ok":false}' }, 1_000, withJson)).failed).toMatchObject({ check: "json", path: "$.ok", actual: "false" });
  });
});

describe("the grader", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "moss-grader-"));
  const script = (name: string, body: string) => {
    const p = path.join(dir, name);
    writeFileSync(p, `#!/usr/bin/python3\n${body}\n`);
    chmodSync(p, 0o755);
    return p;
  };
  // Passes an answer whose total is the sum of the request's items; writes what it was given, to check its input.
  const sum = script(
    "sum.py",
    [
      "import json, sys",
      "d = json.load(sys.stdin)",
      `open(${JSON.stringify(path.join(dir, "input.json"))}, "w").write(json.dumps(d))`,
      "want = sum(json.loads(d['request']['body'])['items'])",
      "got = json.loads(d['response']['body'])['total']",
      "print(f'total {got}, want {want}')",
      "sys.exit(0 if got == want else 1)",
    ].join("\n"),
  );
  const strictEv = failure({ id: "g1", request: { method: "POST", path: "/sum", headers: {}, body: '{"items":[1,2,3]}' }, response: { status: 500, body: "boom" } });
  const withGrader = (command: string[], timeoutMs = 5_000) => ({ ...resolveExpectation(undefined, strictEv), grader: { command, timeoutMs } });

  it("runs from the config with the request, the response and the recorded response on stdin; exit 0 passes, its output is the reason", async () => {
    const pass = await judge(strictEv, ok(200, '{"total":6}'), 1_000, withGrader([sum]));
    expect(pass).toEqual({ verdict: "pass", passed: true, reason: "answered 200; the grader passed it: total 6, want 6" });
    const input = JSON.parse(readFileSync(path.join(dir, "input.json"), "utf8"));
    expect(input).toMatchObject({ failure: { id: "g1", agent: "chat-bot" }, request: { path: "/sum" }, response: { status: 200, body: '{"total":6}' }, recorded: { status: 500, body: "boom" } });
    const bad = await judge(strictEv, ok(200, '{"total":5}'), 1_000, withGrader([sum]));
    expect(bad).toMatchObject({ verdict: "fail", failed: { check: "grader", actual: "total 5, want 6" } });
  });

  it("a grader that cannot start or does not finish is an error verdict saying what to fix, not a failed candidate", async () => {
    const missing = await judge(strictEv, ok(200, "{}"), 1_000, withGrader([path.join(dir, "nope")]));
    expect(missing).toMatchObject({ verdict: "error", passed: false, failed: { check: "grader" } });
    expect(missing.reason).toMatch(/could not be started \(spawn .*ENOENT\): check agents\.<name>\.replay\.expect\.grader\.command/);
    const slow = script("slow.py", "import time\ntime.sleep(30)");
    const t0 = Date.now();
    const hung = await judge(strictEv, ok(200, "{}"), 1_000, withGrader([slow], 300));
    expect(hung.verdict).toBe("error");
    expect(hung.reason).toContain("did not finish within 300 ms");
    expect(Date.now() - t0).toBeLessThan(5_000);
  });

  it("gets no environment beyond PATH (a grader judges; it needs no credential)", async () => {
    process.env["MOSS_TEST_SECRET"] = "s3cret";
    const envDump = script("env.py", "import os, sys\nprint(sorted(os.environ.keys()))\nsys.exit(0 if 'MOSS_TEST_SECRET' not in os.environ else 1)");
    const r = await runGrader({ failure: { id: "x", agent: "a", error: { type: "E", message: "m" } }, request: undefined, response: { status: 200, body: "" }, recorded: null }, { command: [envDump], timeoutMs: 5_000 });
    delete process.env["MOSS_TEST_SECRET"];
    expect(r.passed).toBe(true);
  });

  it("a relative grader path in the config file resolves against the config's directory", () => {
    const cfg = parseConfig({ agents: { a: { repo: "/r", replay: { expect: { grader: { command: ["./graders/total.py", "--strict"] } } } } } }, { base: "/etc/moss" });
    expect(cfg.agents["a"]!.replay.expect.grader).toEqual({ command: ["/etc/moss/graders/total.py", "--strict"], timeoutMs: 10_000 });
    const bare = parseConfig({ agents: { a: { repo: "/r", replay: { expect: { grader: { command: ["python3", "g.py"] } } } } } }, { base: "/etc/moss" });
    expect(bare.agents["a"]!.replay.expect.grader!.command).toEqual(["python3", "g.py"]);
  });
});

describe("several trials of one failure", () => {
  const r = (passed: boolean, over: Partial<ReplayResult> = {}): ReplayResult => ({ failureId: "f", passed, verdict: passed ? "pass" : "fail", reason: passed ? "answered 200" : "answered 500 (expected 200-299)", durationMs: 1, timedOut: false, ...over });

  it("all pass → pass; none → the failing verdict; a mix → flaky, never a pass, with how many of how many", () => {
    expect(combineTrials([r(true)])).toEqual(r(true));
    expect(combineTrials([r(true), r(true), r(true)])).toMatchObject({ passed: true, verdict: "pass", trials: { passed: 3, of: 3 } });
    expect(combineTrials([r(false), r(false)])).toMatchObject({ passed: false, verdict: "fail", trials: { passed: 0, of: 2 }, reason: "2 of 2 trials failed; answered 500 (expected 200-299)" });
    const flaky = combineTrials([r(true), r(false), r(true)]);
    expect(flaky).toMatchObject({ passed: false, verdict: "flaky", trials: { passed: 2, of: 3 } });
    expect(flaky.reason).toBe("flaky: 2 of 3 trials passed; a failing one: answered 500 (expected 200-299)");
  });

  it("a trial that could not run makes the failure's verdict an error, not a flake", () => {
    expect(combineTrials([r(true), r(false, { verdict: "error", reason: "could not be replayed: image gone" })])).toMatchObject({ verdict: "error", passed: false });
  });
});

describe("regression replay: a recorded success's outcome, kept or changed", () => {
  const rec = { status: 200, body: '{"tool":"calculator","answer":"5","at":"12:00"}' };
  const paths = ["$.tool", "$.answer", "$.missing"];

  it("unchanged: the same status class and the same JSON at the meaningful paths (other fields may differ; absent stays absent)", () => {
    const r = compareOutcome(rec, ok(201, '{"answer":"5","tool":"calculator","at":"12:01"}'), 1_000, paths, false);
    expect(r).toMatchObject({ passed: true, verdict: "pass", changes: [] });
    expect(r.reason).toBe("unchanged: answered 201, the same at $.tool, $.answer, $.missing (recorded 200)");
  });

  it("a status class that changed, a value that changed or appeared, a body that is no longer JSON: each a change, before → after", () => {
    expect(compareOutcome(rec, ok(500, '{"tool":"calculator","answer":"5"}'), 1_000, paths, false)).toMatchObject({
      passed: false, verdict: "fail", changes: [{ check: "status", before: "200", after: "500" }], failed: { check: "status", expected: "200", actual: "500" },
    });
    expect(compareOutcome(rec, ok(200, '{"tool":"echo","answer":"5","missing":1}'), 1_000, paths, false).changes).toEqual([
      { check: "json", path: "$.tool", before: '"calculator"', after: '"echo"' },
      { check: "json", path: "$.missing", before: "(absent)", after: "1" },
    ]);
    expect(compareOutcome(rec, ok(200, "five"), 1_000, paths, false).changes).toEqual([{ check: "answer", before: "a JSON answer", after: 'not JSON: "five"' }]);
    // Without meaningful paths only the status class counts.
    expect(compareOutcome(rec, ok(200, "five"), 1_000, [], false).passed).toBe(true);
  });

  it("no answer in time, a reported failure, a diverged call: never unchanged; a trial that could not start is an error", () => {
    expect(compareOutcome(rec, { timedOut: true, reportedFailures: [] }, 1_500, paths, false)).toMatchObject({ verdict: "timeout", changes: [{ check: "answer", before: "200", after: "no answer in time" }] });
    const reported = compareOutcome(rec, { ...ok(200, rec.body), reportedFailures: [{ error: { type: "TypeError", message: "x is undefined" } }] }, 1_000, paths, false);
    expect(reported.changes).toEqual([{ check: "reported", before: "no failure reported", after: "TypeError: x is undefined" }]);
    expect(compareOutcome(rec, { ...ok(200, rec.body), diverged: "unrecorded call POST https://api.example/v1" }, 1_000, paths, false)).toMatchObject({ verdict: "diverged", passed: false });
    expect(compareOutcome(rec, { timedOut: false, reportedFailures: [], notStarted: "exec: no such file" }, 1_000, paths, false)).toMatchObject({ verdict: "error", passed: false });
  });

  it("a command agent keeps exit 0 (or a non-zero exit) and its stdout's JSON", () => {
    const cmd = { status: 0, body: '{"n":3}' };
    expect(compareOutcome(cmd, { timedOut: false, reportedFailures: [], exitCode: 0, stdout: '{"n":3}' }, 1_000, ["$.n"], true).passed).toBe(true);
    expect(compareOutcome(cmd, { timedOut: false, reportedFailures: [], exitCode: 2, stdout: '{"n":3}' }, 1_000, ["$.n"], true).changes).toEqual([{ check: "status", before: "0", after: "2" }]);
  });
});
