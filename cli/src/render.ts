import { describeInput } from "@moss/contracts";
/** Text rendering of the auditor's batch timeline, for `moss show` and the demo. */
import type { BatchTimelineInput } from "@moss/contracts";

export function renderTimeline(t: BatchTimelineInput, opts: { diff?: boolean } = {}): string {
  const out: string[] = [];
  out.push(`Batch ${t.batchId}  agent ${t.agent ?? "?"}  verdict ${t.verdict.toUpperCase()}`);
  out.push(`  fingerprint ${t.fingerprint ?? "?"}`);
  out.push(`  ${t.count ?? t.failures.length} failure(s)${t.traceId ? `  trace ${t.traceId}` : ""}`);
  out.push("", "Failures:");
  for (const f of t.failures) out.push(`  ${f.occurredAt}  ${f.id}  ${describeInput(f)} ${trim(f.request?.body ?? f.invocation?.stdin, 60)}  → ${f.error.type}: ${trim(f.error.message, 80)}`);
  for (const a of t.attempts) {
    out.push("", `Attempt ${a.attempt}: ${a.verdict ?? "in progress"}${a.reason ? ` — ${a.reason}` : ""}`);
    if (a.commit) out.push(`  commit ${a.commit}${a.signed ? " (signed)" : ""}${a.image ? `  image ${a.image}` : ""}${a.codingAgent ? `  by ${a.codingAgent}` : ""}`);
    for (const st of a.stages ?? []) {
      out.push(`  stage ${`${st.stage}#${st.round}`.padEnd(15)} ${st.verdict.toUpperCase().padEnd(9)} ${Math.round(st.durationMs)} ms  ${trim(st.reason, 140)}`);
      if (st.outputText?.trim()) out.push(...st.outputText.trimEnd().split("\n").slice(0, 12).map((l) => `      | ${l}`));
    }
    if (a.filesChanged?.length) out.push(`  changed ${a.filesChanged.join(", ")}`);
    for (const r of a.replay ?? []) {
      const verdict = (r.verdict ?? (r.passed ? "pass" : "fail")).toUpperCase();
      const trials = r.trials && r.trials.of > 1 ? `, ${r.trials.passed} of ${r.trials.of} trials passed` : "";
      out.push(`  replay ${verdict} ${r.failureId} (${Math.round(r.durationMs)} ms${trials}): ${trim(r.reason, 160)}`);
      if (r.failed && r.failed.check !== "trial") out.push(`      check ${r.failed.check}${r.failed.path ? ` ${r.failed.path}` : ""}: expected ${trim(r.failed.expected, 100)}, got ${trim(r.failed.actual, 100)}`);
      for (const c of r.calls ?? []) out.push(`      call ${c.method} ${trim(c.url, 100)}  ${CALL_OUTCOME[c.outcome](c.index)}`);
    }
    for (const r of a.regressions ?? []) {
      // A recorded success the candidate was replayed on: UNCHANGED, or each change before → after.
      const verdict = r.passed ? "UNCHANGED" : r.verdict === "fail" ? "CHANGED" : (r.verdict ?? "fail").toUpperCase();
      out.push(`  regression ${verdict} ${r.failureId} ${r.input} (${r.route}, ${Math.round(r.durationMs)} ms): ${trim(r.reason, 160)}`);
      for (const c of r.changes ?? []) out.push(`      ${c.check === "json" ? c.path : c.check}: before ${trim(c.before, 100)}, after ${trim(c.after, 100)}`);
    }
    if (opts.diff !== false && a.diffText) out.push("  diff:", ...a.diffText.trimEnd().split("\n").map((l) => `    ${l}`));
  }
  if (t.deadLetters?.length) {
    out.push("", "Dead letters (messages of this batch a stage gave up on):");
    for (const d of t.deadLetters) out.push(`  ${d.at}  ${d.consumer} ← ${d.subject}  ${d.code}: ${trim(d.reason, 200)}`);
  }
  out.push("", "Timeline:");
  for (const e of t.timeline) out.push(`  ${e.at}  ${e.kind.padEnd(16)} ${e.summary}${e.who ? `  [${e.who}]` : ""}`);
  return out.join("\n");
}

const CALL_OUTCOME: Record<"matched" | "forwarded" | "unmatched", (i?: number) => string> = {
  matched: (i) => `answered from the cassette (#${i})`,
  forwarded: () => "not recorded: forwarded to an allowed sandbox URL",
  unmatched: () => "NOT RECORDED: answered with an error",
};

function trim(s: string | undefined, n: number): string {
  if (!s) return "";
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

const COLOURS: Record<string, number> = { promoted: 32, released: 32, rejected: 31, "rolled-back": 31, exhausted: 31, "needs-human": 33, "awaiting-approval": 33 };
/** A batch state, coloured when stdout is a terminal (and NO_COLOR is not set). */
export function paintState(state: string): string {
  const c = COLOURS[state];
  return c && process.stdout.isTTY && !process.env["NO_COLOR"] ? `\u001b[${c}m${state}\u001b[0m` : state;
}

/** Rows under a header, each column as wide as its widest cell (cells measured without their colour codes). */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>, paint: (col: number, cell: string) => string = (_c, s) => s): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[], p: (col: number, cell: string) => string) =>
    cells.map((c, i) => (i === cells.length - 1 ? p(i, c) : p(i, c) + " ".repeat(widths[i]! - c.length))).join("  ");
  return [line(header, (_c, s) => s), ...rows.map((r) => line(r, paint))];
}
