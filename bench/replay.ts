// Replay's costs, each next to a baseline measured in the same run:
// - what reporter.turn() costs per turn for the before-turn state snapshot (a plain copy: the state directory read
//   into a tar in memory), for 1 MiB and 10 MiB state directories, next to copying the same directory with cp -r
//   (the plain copy a user would otherwise make). Medians of 20 turns after 3 warm-ups;
// - what a trial costs on the real Docker engine next to a bare run of the same image and command, and how a
//   16-failure batch scales with a replica's concurrency and with two replicas (bench/lib/trials.ts).
//   npm run bench -- replay
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createReporter } from "@moss/agent-sdk";
import { trialFigures } from "./lib/trials";

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const root = mkdtempSync(join(tmpdir(), "moss-bench-replay-"));
const out: Record<string, number | string> = { bench: "replay" };
try {
  for (const mib of [1, 10]) {
    const state = join(root, `state-${mib}`);
    mkdirSync(state);
    // 16 KiB files of text, as an agent's state (sessions, notes, caches) tends to be.
    for (let i = 0; i < mib * 64; i++) writeFileSync(join(state, `f${i}.json`), JSON.stringify({ i, text: "x".repeat(16 * 1024 - 40) }));
    // uploadSnapshot lifts the inline limit (1 MiB) to 64 MiB; nothing is uploaded unless a turn fails.
    const r = createReporter({ agent: "bench", version: "abcdef1", stateDir: state, env: {}, uploadSnapshot: async (tar) => ({ sha256: "", size: tar.length }), recordCalls: false });
    const turns: number[] = [];
    const copies: number[] = [];
    for (let k = 0; k < 23; k++) {
      let t = performance.now();
      await r.turn(() => undefined);
      const turn = performance.now() - t;
      const dst = join(root, `copy-${mib}-${k}`);
      t = performance.now();
      execFileSync("cp", ["-r", state, dst]);
      const copy = performance.now() - t;
      rmSync(dst, { recursive: true, force: true });
      if (k >= 3) {
        turns.push(turn);
        copies.push(copy);
      }
    }
    await r.close();
    const turnMs = median(turns);
    const copyMs = median(copies);
    console.log(`${mib} MiB state: turn ${turnMs.toFixed(1)} ms (snapshot included), cp -r ${copyMs.toFixed(1)} ms`);
    out[`turnMs${mib}MiB`] = Number(turnMs.toFixed(2));
    out[`copyMs${mib}MiB`] = Number(copyMs.toFixed(2));
    out[`ratio${mib}MiB`] = Number((turnMs / copyMs).toFixed(3));
  }
  out["method"] = "plain copy (tar in memory), no copy-on-write";
  Object.assign(out, await trialFigures((l) => console.log(l)));
} finally {
  rmSync(root, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
