import type { LoadedConfig } from "@moss/config";
import { TimeTravelRecord, type RegressionResult, type ReplayResult } from "@moss/contracts";
import { followRecord, operatorGet, operatorPost, operatorText, type Command } from "../shared";

/** What to replay: one stored failure, every stored failure of a batch, or an agent's recorded successes. */
export type ReplaySet = { failure: string } | { allFailuresOf: string } | { regressions: string };

/**
 * `moss replay`: asks the operator API to replay stored turns against a version (the rewriter finds the version and
 * builds its image unless the engine has it; the replayer replays), then follows the request's record until it is
 * done or failed, calling `progress` at each change. Throws when the API refuses or nothing ends within `timeoutMs`.
 */
export async function requestReplay(cfg: Readonly<LoadedConfig>, what: ReplaySet & { version: string }, o: { timeoutMs?: number; pollMs?: number; progress?: (rec: TimeTravelRecord) => void } = {}): Promise<TimeTravelRecord> {
  return followReplay(cfg, TimeTravelRecord.parse(await operatorPost(cfg, "/v1/replays", what)), o);
}

/** Follows a replay's record until it is done or failed, `progress` told of each stage (`moss replay --id` looks at one again). */
export async function followReplay(cfg: Readonly<LoadedConfig>, first: TimeTravelRecord, o: { timeoutMs?: number; pollMs?: number; progress?: (rec: TimeTravelRecord) => void } = {}): Promise<TimeTravelRecord> {
  let stage: string | undefined;
  return followRecord(cfg, first, {
    path: (id) => `/v1/replays/${id}`,
    parse: (v) => TimeTravelRecord.parse(v),
    timeoutMs: o.timeoutMs ?? 15 * 60_000,
    ...(o.pollMs ? { pollMs: o.pollMs } : {}),
    seen: (rec) => {
      if (rec.state !== stage) o.progress?.(rec);
      stage = rec.state;
    },
    stuck: (rec, s) => `replay ${rec.id} is still ${rec.state} after ${s} s: are the rewriter and the replayer running (moss status)? \`moss replay --id ${rec.id}\` looks again`,
  });
}

/** One line per stage, as a replay moves through them. */
export function describeProgress(rec: TimeTravelRecord): string {
  const v = rec.commit ? `${rec.version}${rec.version.startsWith(rec.commit.slice(0, 7)) ? "" : ` = ${rec.commit.slice(0, 12)}`}` : rec.version;
  switch (rec.state) {
    case "requested":
      return `replay ${rec.id}: ${rec.cases.length} stored turn(s) of ${rec.agent} against ${rec.version}, asked by ${rec.by}; finding the version`;
    case "building":
      return `version ${v}: image ${rec.image} — building it from the repository unless the engine has it`;
    case "replaying":
      return `version ${v}: image ${rec.image} ${rec.built ? `built in ${((rec.buildMs ?? 0) / 1000).toFixed(1)} s` : "reused (the engine had it)"}; replaying ${rec.cases.length} stored turn(s), each in its own trial`;
    case "done":
      return `done: ${[...rec.results, ...rec.regressions].filter((r) => r.passed).length} of ${rec.cases.length} passed against ${v}`;
    case "failed":
      return `failed: ${rec.error}`;
  }
}

const LOG_LINES = 20;

/** The verdict, the response and the end of the logs of each case. */
async function renderResults(cfg: Readonly<LoadedConfig>, rec: TimeTravelRecord, allLogs: boolean): Promise<string[]> {
  const out: string[] = [];
  const one = async (r: ReplayResult | RegressionResult, what: string) => {
    out.push(`${r.passed ? "PASS" : r.verdict === "error" ? "ERROR" : "FAIL"}  ${what} ${r.failureId} (${r.durationMs} ms): ${r.reason}`);
    if (r.failed) out.push(`      check ${r.failed.check}: expected ${r.failed.expected}, got ${r.failed.actual}`);
    if (r.status !== undefined) out.push(`      answered ${r.status}${r.body ? `: ${r.body.slice(0, 300)}` : ""}`);
    for (const c of r.calls ?? []) out.push(`      call ${c.method} ${c.url}  ${c.outcome}${c.index !== undefined ? ` (#${c.index})` : ""}`);
    if (r.logs) {
      const lines = (await operatorText(cfg, `/v1/replays/${rec.id}/logs/${r.failureId}`).catch((e: Error) => `(logs unavailable: ${e.message})`)).trimEnd().split("\n");
      const shown = allLogs ? lines : lines.slice(-LOG_LINES);
      out.push(`      logs${shown.length < lines.length ? ` (last ${shown.length} of ${lines.length} lines; --logs for all)` : ""}:`);
      for (const l of shown) out.push(`        | ${l}`);
    }
  };
  for (const r of rec.results) await one(r, "failure");
  for (const r of rec.regressions) await one(r, `recorded success${"input" in r ? ` ${r.input}` : ""}`);
  return out;
}

export const replayCmd: Command = {
  name: "replay",
  help: [
    "  replay --failure ID --version V    replay a stored failure (its request, before-turn state, model calls, clock)",
    "                                     against a version: a commit, tag, branch (moss/<batch>/<n>), live or last-good;",
    "                                     its image is built unless the engine has it. Prints verdict, answer and logs.",
    "      --all-failures-of BATCH        every stored failure of a batch instead",
    "      --regressions AGENT            every recorded success of the agent's regression set instead",
    "      --id ID                        a replay asked for before: follow it to its end and print it",
    "      --logs                         all of each trial's log lines (default: the last 20)",
    "      --json                         the request's record as JSON",
    "                                     exit 0: every case passed; 1: one did not (e.g. the failure reproduced); 2: no replay ran",
  ].join("\n"),
  options: { id: { type: "string" }, failure: { type: "string" }, "all-failures-of": { type: "string" }, regressions: { type: "string" }, version: { type: "string" }, logs: { type: "boolean" }, json: { type: "boolean" }, "timeout-ms": { type: "string" } },
  async run({ values, config }) {
    const cfg = config();
    const json = values["json"] === true;
    const t0 = Date.now();
    const progress = json ? undefined : (r: TimeTravelRecord) => console.error(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${describeProgress(r)}`);
    const timeout = values["timeout-ms"] ? { timeoutMs: Number(values["timeout-ms"]) } : {};
    const version = values["version"] as string | undefined;
    const id = values["id"] as string | undefined;
    const sets = (["failure", "all-failures-of", "regressions"] as const).filter((k) => values[k] !== undefined);
    let rec: TimeTravelRecord;
    if (id !== undefined && sets.length === 0 && !version) {
      rec = await followReplay(cfg, TimeTravelRecord.parse(await operatorGet(cfg, `/v1/replays/${encodeURIComponent(id)}`)), { ...timeout, progress });
    } else {
      if (!version || sets.length !== 1 || id !== undefined) throw new Error("usage: moss replay (--failure ID | --all-failures-of BATCH | --regressions AGENT) --version VERSION, or moss replay --id ID");
      const v = String(values[sets[0]!]);
      const what: ReplaySet = sets[0] === "failure" ? { failure: v } : sets[0] === "all-failures-of" ? { allFailuresOf: v } : { regressions: v };
      rec = await requestReplay(cfg, { ...what, version }, { ...timeout, progress });
    }
    if (json) console.log(JSON.stringify(rec, null, 2));
    else if (rec.state === "done") for (const l of await renderResults(cfg, rec, values["logs"] === true)) console.log(l);
    if (rec.state !== "done") return 2;
    return [...rec.results, ...rec.regressions].every((r) => r.passed) ? 0 : 1;
  },
};
