import type { LoadedConfig } from "@moss/config";
import { BisectRecord } from "@moss/contracts";
import { followRecord, operatorPost, type Command } from "../shared";

export interface BisectAsk {
  failure: string;
  good: string;
  bad: string;
  fixed?: boolean;
}

/**
 * `moss bisect`: asks the operator API for a bisect (the rewriter runs it, one time-travel replay per step) and follows
 * its record until it is done or failed, calling `progress` with each new line. Throws when the API refuses or nothing
 * ends within `timeoutMs`.
 */
export async function requestBisect(cfg: Readonly<LoadedConfig>, ask: BisectAsk, o: { timeoutMs?: number; pollMs?: number; progress?: (line: string) => void } = {}): Promise<BisectRecord> {
  const said = new Set<string>();
  return followRecord(cfg, BisectRecord.parse(await operatorPost(cfg, "/v1/bisects", ask)), {
    path: (id) => `/v1/bisects/${id}`,
    parse: (v) => BisectRecord.parse(v),
    timeoutMs: o.timeoutMs ?? 30 * 60_000,
    ...(o.pollMs ? { pollMs: o.pollMs } : {}),
    // Each line once, as the record grows.
    seen: (rec) => {
      for (const line of describeBisect(rec)) {
        if (said.has(line)) continue;
        said.add(line);
        o.progress?.(line);
      }
    },
    stuck: (rec, s) => `bisect ${rec.id} is still ${rec.state} after ${s} s: are the rewriter and the replayer running (moss status)?`,
  });
}

/** The lines a bisect's record says so far: the range, each step (asked, then its result), the answer. */
export function describeBisect(rec: BisectRecord): string[] {
  const what = rec.fixed ? "stops happening" : "starts happening";
  const lines = [`bisect ${rec.id}: where failure ${rec.failure.id} of ${rec.agent} ${what}, between ${rec.good} (older) and ${rec.bad} (newer)`];
  if (rec.commits.length) lines.push(`${rec.commits.length} version(s) after ${rec.good} up to ${rec.bad}: at most ${Math.ceil(Math.log2(rec.commits.length))} replay(s)`);
  for (const s of rec.steps) {
    const v = `step ${s.n}: ${s.commit.slice(0, 12)} "${s.subject}"`;
    lines.push(`${v} — replaying (moss replay --id ${s.replay})`);
    if (s.failed !== undefined) lines.push(`${v} → the failure ${s.failed ? "happens" : "does not happen"} (${s.reason ?? s.verdict})`);
  }
  if (rec.state === "done" && rec.first) lines.push(`first version where the failure ${what}: ${rec.first.commit} "${rec.first.subject}" by ${rec.first.author}, ${rec.first.date} (${rec.steps.length} replay(s))`);
  if (rec.state === "failed") lines.push(`bisect failed: ${rec.error}`);
  return lines;
}

export const bisectCmd: Command = {
  name: "bisect",
  help: [
    "  bisect --failure ID --good OLDER --bad NEWER   the first version at which a stored failure starts happening, by",
    "                                     replay (the rewriter builds each version it tries; ⌈log2 n⌉ replays for n versions)",
    "      --fixed                        where it stops happening instead (it happens at OLDER, not at NEWER)",
    "      --json                         the bisect's record as JSON",
  ].join("\n"),
  options: { failure: { type: "string" }, good: { type: "string" }, bad: { type: "string" }, fixed: { type: "boolean" }, json: { type: "boolean" }, "timeout-ms": { type: "string" } },
  async run({ values, config }) {
    const [failure, good, bad] = (["failure", "good", "bad"] as const).map((k) => values[k] as string | undefined);
    if (!failure || !good || !bad) throw new Error("usage: moss bisect --failure ID --good OLDER --bad NEWER [--fixed]");
    const json = values["json"] === true;
    const rec = await requestBisect(config(), { failure, good, bad, fixed: values["fixed"] === true }, {
      ...(values["timeout-ms"] ? { timeoutMs: Number(values["timeout-ms"]) } : {}),
      progress: json ? undefined : (l) => console.log(l),
    });
    if (json) console.log(JSON.stringify(rec, null, 2));
    return rec.state === "done" ? 0 : 2;
  },
};
