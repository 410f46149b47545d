/**
 * The replayer's verdicts: what a trial of a failure must show to pass, which check it failed (with the expected and
 * the actual value), and what several trials of one failure come to. Pure, except the grader, which is a process.
 */
import { spawn } from "node:child_process";
import type { AgentConfig } from "@moss/config";
import type { FailedCheck, FailureEvent, JsonAssertion, RegressionChange, ReplayResult, ReplayVerdict } from "@moss/contracts";
import type { TrialResult } from "@moss/runtime";

/** An expectation with every fallback applied: failure → agent config → default. */
export interface ResolvedExpectation {
  statusMin: number;
  statusMax: number;
  json: JsonAssertion[];
  grader?: { command: string[]; timeoutMs: number };
}

export type AgentExpectation = AgentConfig["replay"]["expect"];

/**
 * The failure's own status range wins over the agent's; JSON checks add up; the grader is the config's only. Default:
 * 2xx for an HTTP agent, exit 0 for a command.
 */
export function resolveExpectation(agent: AgentExpectation | undefined, ev: Pick<FailureEvent, "expect" | "invocation">): ResolvedExpectation {
  const [dMin, dMax] = ev.invocation ? [0, 0] : [200, 299];
  const statusMin = ev.expect?.statusMin ?? agent?.statusMin ?? dMin;
  const statusMax = ev.expect?.statusMax ?? agent?.statusMax ?? (ev.expect?.statusMin !== undefined ? Math.max(ev.expect.statusMin, dMax) : dMax);
  return {
    statusMin,
    statusMax,
    json: [...(agent?.json ?? []), ...(ev.expect?.json ?? [])],
    ...(agent?.grader ? { grader: { command: agent.grader.command, timeoutMs: agent.grader.timeoutMs ?? 10_000 } } : {}),
  };
}

/** The value at a JSON path (`$.a.b[0]["c d"]`), or `found: false`. */
export function jsonPath(root: unknown, path: string): { found: boolean; value?: unknown } {
  const steps = path.slice(1).match(/\.[A-Za-z_$][\w$-]*|\[\d+\]|\["(?:[^"\\]|\\.)*"\]/g) ?? [];
  let cur: unknown = root;
  for (const s of steps) {
    const key: string | number = s.startsWith(".") ? s.slice(1) : s.startsWith('["') ? (JSON.parse(s.slice(1, -1)) as string) : Number(s.slice(1, -1));
    if (typeof key === "number") {
      if (!Array.isArray(cur) || key >= cur.length) return { found: false };
      cur = cur[key];
    } else {
      if (cur === null || typeof cur !== "object" || Array.isArray(cur) || !Object.prototype.hasOwnProperty.call(cur, key)) return { found: false };
      cur = (cur as Record<string, unknown>)[key];
    }
  }
  return { found: true, value: cur };
}

/** Two JSON values equal as JSON (object key order does not count). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === (b as unknown[]).length && a.every((x, i) => jsonEqual(x, (b as unknown[])[i]));
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  return ka.length === kb.length && ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

const show = (v: unknown, max = 200): string => {
  const s = v === undefined ? "(absent)" : JSON.stringify(v) ?? String(v);
  return s.length > max ? `${s.slice(0, max)}…` : s;
};

/** The first JSON assertion the body does not meet, as a failed check; undefined when all hold. */
export function checkJson(body: string, assertions: readonly JsonAssertion[]): FailedCheck | undefined {
  if (!assertions.length) return undefined;
  const parsed = parseJson(body);
  if (!parsed.ok) return { check: "json", expected: "a JSON response", actual: `not JSON: ${show(body.slice(0, 200))}` };
  const doc = parsed.value;
  for (const a of assertions) {
    const { found, value } = jsonPath(doc, a.path);
    if (a.absent) {
      if (found) return { check: "json", path: a.path, expected: "absent", actual: show(value) };
    } else if (!found) {
      return { check: "json", path: a.path, expected: a.exists ? "present" : a.matches !== undefined ? `matching /${a.matches}/` : show(a.equals), actual: "(absent)" };
    } else if (a.matches !== undefined) {
      const text = typeof value === "string" ? value : JSON.stringify(value);
      if (!new RegExp(a.matches).test(text)) return { check: "json", path: a.path, expected: `matching /${a.matches}/`, actual: show(value) };
    } else if ("equals" in a && a.equals !== undefined && !jsonEqual(value, a.equals)) {
      return { check: "json", path: a.path, expected: show(a.equals), actual: show(value) };
    }
  }
  return undefined;
}

/** What a trial gave, as the judge reads it. */
export type JudgedTrial = Pick<TrialResult, "timedOut" | "error" | "reportedFailures" | "notStarted"> & {
  response?: { status: number; body: string; headers?: Record<string, string> };
  diverged?: string;
  exitCode?: number;
  stdout?: string;
};

export interface Verdict {
  verdict: ReplayVerdict;
  passed: boolean;
  reason: string;
  failed?: FailedCheck;
}

/** The grader's answer: exit 0 is a pass; its output (tail) is the reason either way. */
export type Grade = (input: GraderInput, grader: NonNullable<ResolvedExpectation["grader"]>) => Promise<{ passed: boolean; output: string }>;

export interface GraderInput {
  failure: { id: string; agent: string; error: FailureEvent["error"] };
  request: FailureEvent["request"] | FailureEvent["invocation"];
  response: { status: number; body: string; headers?: Record<string, string> };
  /** What the failing turn answered, as recorded. */
  recorded: FailureEvent["response"] | null;
}

const fail = (verdict: ReplayVerdict, reason: string, failed: FailedCheck): Verdict => ({ verdict, passed: false, reason, failed });

/**
 * One trial's verdict. In order: diverged (not the same inputs, whatever the answer), timed out, no answer, status,
 * JSON checks, a failure the agent reported itself, the grader. The first that fails decides.
 */
export async function judge(ev: FailureEvent, trial: JudgedTrial, timeoutMs: number, expect: ResolvedExpectation, grade: Grade = runGrader): Promise<Verdict> {
  if (trial.diverged) return fail("diverged", `diverged: ${trial.diverged}`, { check: "diverged", expected: "only the calls the failure's cassette holds", actual: trial.diverged });
  if (trial.notStarted) return fail("error", `the trial could not start the agent: ${trial.notStarted.replace(/^the agent could not be started: /, "")}; check the candidate image's ENTRYPOINT/CMD and USER`, { check: "trial", expected: "the agent to start", actual: trial.notStarted });
  const command = Boolean(ev.invocation);
  if (trial.timedOut) {
    const what = command ? "did not finish" : "no answer";
    return fail("timeout", `${what} within ${timeoutMs} ms (1.5x the failure's timeout)`, { check: "timeout", expected: `an answer within ${timeoutMs} ms`, actual: trial.error ?? "none in time" });
  }
  let answer: { status: number; body: string; headers?: Record<string, string> };
  if (command) {
    if (trial.error || trial.exitCode === undefined) return fail("fail", trial.error ?? "the command did not exit", { check: "answer", expected: "the command to exit", actual: trial.error ?? "no exit" });
    answer = { status: trial.exitCode, body: trial.stdout ?? "" };
  } else {
    if (!trial.response) return fail("fail", `no answer: ${trial.error ?? "the agent did not respond"}`, { check: "answer", expected: "an HTTP answer", actual: trial.error ?? "none" });
    answer = trial.response;
  }
  const said = command ? `exited ${answer.status}` : `answered ${answer.status}`;
  const excerpt = answer.body.trim().slice(command ? -200 : 0, command ? undefined : 200);
  if (answer.status < expect.statusMin || answer.status > expect.statusMax) {
    const range = expect.statusMin === expect.statusMax ? `${expect.statusMin}` : `${expect.statusMin}-${expect.statusMax}`;
    return fail("fail", `${said} (expected ${range})${excerpt ? `: ${excerpt}` : ""}`, { check: command ? "exit" : "status", expected: range, actual: String(answer.status) });
  }
  const bad = checkJson(answer.body, expect.json);
  if (bad) return fail("fail", `${said} but ${bad.path ?? "the body"} is ${bad.actual} (expected ${bad.expected})`, bad);
  if (trial.reportedFailures.length > 0) {
    const first = firstReported(trial.reportedFailures);
    return fail("fail", `${said} but reported a failure: ${first}`, { check: "reported", expected: "no failure reported by the agent", actual: first });
  }
  if (expect.grader) {
    const input: GraderInput = { failure: { id: ev.id, agent: ev.agent, error: ev.error }, request: ev.request ?? ev.invocation, response: answer, recorded: ev.response ?? null };
    let g: { passed: boolean; output: string };
    try {
      g = await grade(input, expect.grader);
    } catch (err) {
      return fail("error", (err as Error).message, { check: "grader", expected: "the grader to run", actual: (err as Error).message });
    }
    if (!g.passed) return fail("fail", `${said} but the grader failed it${g.output ? `: ${g.output}` : ""}`, { check: "grader", expected: `${expect.grader.command.join(" ")} to exit 0`, actual: g.output || "non-zero exit" });
    return { verdict: "pass", passed: true, reason: `${said}; the grader passed it${g.output ? `: ${g.output}` : ""}` };
  }
  return { verdict: "pass", passed: true, reason: `${said}${excerpt ? `: ${excerpt}` : ""}` };
}

/** The first failure the agent reported in its trial, as `Type: message`. */
function firstReported(reported: readonly unknown[]): string {
  const f = reported[0] as { error?: { type?: string; message?: string } };
  return `${f.error?.type ?? "Error"}: ${f.error?.message ?? "?"}`;
}

/** Most bytes of grader output kept as the reason. */
const GRADER_OUTPUT_MAX = 2_000;

/**
 * Runs a grader: argv without a shell, the input on stdin, a bare environment (PATH only: it judges, it needs no
 * credential), killed at its timeout. Throws when it cannot be started or does not finish: that is an `error` verdict
 * (fix the config), not a failed candidate.
 */
export const runGrader: Grade = (input, grader) =>
  new Promise((resolve, reject) => {
    const [cmd, ...args] = grader.command;
    const child = spawn(cmd!, args, { stdio: ["pipe", "pipe", "pipe"], env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin" } });
    const out: Buffer[] = [];
    let size = 0;
    const take = (c: Buffer) => {
      if (size < 64 * 1024) out.push(c);
      size += c.length;
    };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    const timer = setTimeout(() => child.kill("SIGKILL"), grader.timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`the grader ${grader.command.join(" ")} could not be started (${err.message}): check agents.<name>.replay.expect.grader.command`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const output = Buffer.concat(out).toString("utf8").trim().slice(-GRADER_OUTPUT_MAX);
      if (signal === "SIGKILL" && code === null) reject(new Error(`the grader ${grader.command.join(" ")} did not finish within ${grader.timeoutMs} ms: raise agents.<name>.replay.expect.grader.timeoutMs or make it faster`));
      else resolve({ passed: code === 0, output });
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(JSON.stringify(input));
  });

/**
 * What the trials of one failure come to: every trial passed → pass; none did → the first failing trial's verdict; a
 * mix → `flaky`, which is never a pass. A trial that could not run at all (`error`) makes the failure's verdict
 * `error`: it says nothing about the candidate.
 */
export function combineTrials(runs: readonly ReplayResult[]): ReplayResult {
  const first = runs[0]!;
  if (runs.length === 1) return first;
  const passed = runs.filter((r) => r.passed).length;
  const trials = { passed, of: runs.length };
  const error = runs.find((r) => r.verdict === "error");
  if (error) return { ...error, trials, reason: `${runs.length - passed} of ${runs.length} trials did not pass; a trial could not run: ${error.reason}` };
  if (passed === runs.length) return { ...first, trials, reason: `all ${runs.length} trials passed; ${first.reason}` };
  const bad = runs.find((r) => !r.passed)!;
  if (passed === 0) return { ...bad, trials, reason: `${runs.length} of ${runs.length} trials failed; ${bad.reason}` };
  return { ...bad, passed: false, verdict: "flaky", trials, reason: `flaky: ${passed} of ${runs.length} trials passed; a failing one: ${bad.reason}` };
}

/** A recorded success's replay against a candidate: unchanged, or what changed, before → after. */
export interface Comparison extends Verdict {
  changes: RegressionChange[];
}

/**
 * Whether a candidate keeps a recorded success's outcome: the same status class (an HTTP agent: 2xx stays 2xx; a
 * command: exit 0 stays 0), the same JSON at each of the config's meaningful `paths` (present or absent alike), and no
 * failure reported. A trial that diverged from the recorded calls cannot be compared: that is a `diverged` verdict,
 * never a pass; one that could not start is an `error` (it says nothing about the candidate).
 */
export function compareOutcome(recorded: { status: number; body?: string | undefined }, trial: JudgedTrial, timeoutMs: number, paths: readonly string[], command: boolean): Comparison {
  const changed = (verdict: ReplayVerdict, reason: string, changes: RegressionChange[]): Comparison => {
    const c = changes[0]!;
    return { verdict, passed: false, reason, changes, failed: { check: c.check, ...(c.path ? { path: c.path } : {}), expected: c.before, actual: c.after } };
  };
  if (trial.diverged) {
    return { ...fail("diverged", `diverged: the candidate made a call the recorded success did not (${trial.diverged}), so its outcome cannot be shown unchanged`, { check: "diverged", expected: "only the calls the recorded success made", actual: trial.diverged }), changes: [] };
  }
  if (trial.notStarted) return { ...fail("error", `the trial could not start the agent: ${trial.notStarted}`, { check: "trial", expected: "the agent to start", actual: trial.notStarted }), changes: [] };
  const before = String(recorded.status);
  if (trial.timedOut) return changed("timeout", `no answer within ${timeoutMs} ms; it answered ${before} when recorded`, [{ check: "answer", before, after: "no answer in time" }]);
  const answer = command ? (trial.exitCode === undefined ? undefined : { status: trial.exitCode, body: trial.stdout ?? "" }) : trial.response;
  if (!answer) return changed("fail", `no answer (${trial.error ?? "the agent did not respond"}); it answered ${before} when recorded`, [{ check: "answer", before, after: `none: ${trial.error ?? "no response"}` }]);
  const cls = (s: number) => (command ? (s === 0 ? "exit 0" : "a non-zero exit") : `${Math.floor(s / 100)}xx`);
  const changes: RegressionChange[] = [];
  if (cls(answer.status) !== cls(recorded.status)) changes.push({ check: "status", before, after: String(answer.status) });
  if (paths.length && recorded.body !== undefined) {
    const was = parseJson(recorded.body);
    if (was.ok) {
      const now = parseJson(answer.body);
      if (!now.ok) changes.push({ check: "answer", before: "a JSON answer", after: `not JSON: ${show(answer.body.slice(0, 200))}` });
      else {
        for (const p of paths) {
          const a = jsonPath(was.value, p);
          const b = jsonPath(now.value, p);
          if (a.found !== b.found || (a.found && !jsonEqual(a.value, b.value))) changes.push({ check: "json", path: p, before: show(a.value), after: show(b.value) });
        }
      }
    }
  }
  if (trial.reportedFailures.length) changes.push({ check: "reported", before: "no failure reported", after: firstReported(trial.reportedFailures) });
  const said = command ? `exited ${answer.status}` : `answered ${answer.status}`;
  if (changes.length) return changed("fail", `changed: ${changes.map((c) => `${c.check === "json" ? c.path : c.check} ${c.before} → ${c.after}`).join(", ")}`, changes);
  return { verdict: "pass", passed: true, reason: `unchanged: ${said}${paths.length ? `, the same at ${paths.join(", ")}` : ""} (recorded ${before})`, changes: [] };
}

function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}
