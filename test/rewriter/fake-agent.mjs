// A scripted stand-in coding agent, run through the rewriter's `command` preset as
//   node fake-agent.mjs {stage} {worktree} {evidence} {prompt} {output}
// One script plays every stage: $FAKE_DIR/script.json maps a stage to its steps, the n-th call of a stage takes
// step n (the last one repeats; a stage without steps just answers "<stage> done"). A counter file per stage in
// $FAKE_DIR says which call this is. Every call is logged to $FAKE_DIR/calls.jsonl, with what the stage found in
// the worktree, and the evidence and prompt it was handed are copied to $FAKE_DIR/<stage>-<n>.{evidence.json,prompt.md}
// (the rewriter may remove or rewrite them afterwards).
//
// A step: { write?: {path: content}, answer?: string, stdout?: string, exit?: number, hang?: boolean,
//           failIfExists?: string, gitCommit?: string }
import { execFileSync } from "node:child_process";
import { appendFileSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

const [stage, worktree, evidence, prompt, output] = process.argv.slice(2);
const dir = process.env.FAKE_DIR;
if (!dir || !stage || !worktree || !evidence || !prompt || !output) {
  console.error("fake-agent: usage: fake-agent.mjs {stage} {worktree} {evidence} {prompt} {output} (with FAKE_DIR set)");
  process.exit(64);
}

const counter = join(dir, `${stage}.count`);
const n = (existsSync(counter) ? Number(readFileSync(counter, "utf8")) : 0) + 1;
writeFileSync(counter, String(n));
const script = JSON.parse(readFileSync(join(dir, "script.json"), "utf8"));
const steps = script[stage] ?? [{ answer: `${stage} done` }];
const step = steps[Math.min(n, steps.length) - 1] ?? {};

const git = (...args) => execFileSync("git", ["-c", "user.name=Fake Agent", "-c", "user.email=fake@localhost", "-c", "commit.gpgsign=false", ...args], { cwd: worktree, encoding: "utf8" });
const read = (p) => (existsSync(join(worktree, p)) ? readFileSync(join(worktree, p), "utf8") : null);
copyFileSync(evidence, join(dir, `${stage}-${n}.evidence.json`));
copyFileSync(prompt, join(dir, `${stage}-${n}.prompt.md`));
appendFileSync(
  join(dir, "calls.jsonl"),
  JSON.stringify({ stage, n, cwd: process.cwd(), worktree, status: git("status", "--porcelain"), head: git("rev-parse", "HEAD").trim(), app: read("src/app.js"), envStage: process.env.MOSS_STAGE }) + "\n",
);

if (step.failIfExists && existsSync(join(worktree, step.failIfExists))) {
  console.error(`fake-agent: ${step.failIfExists} is still in the worktree: an earlier run's edit leaked into this one`);
  process.exit(3);
}
for (const [p, content] of Object.entries(step.write ?? {})) {
  mkdirSync(dirname(join(worktree, p)), { recursive: true });
  writeFileSync(join(worktree, p), content);
}
if (step.gitCommit) {
  git("add", "-A");
  git("commit", "-q", "--no-verify", "-m", step.gitCommit);
}
if (step.answer !== undefined) writeFileSync(output, step.answer);
if (step.stdout) console.log(step.stdout);
if (step.hang) {
  console.log(`fake-agent: ${stage} hangs`);
  setInterval(() => {}, 1_000);
} else {
  process.exit(step.exit ?? 0);
}
