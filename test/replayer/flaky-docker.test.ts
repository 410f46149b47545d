// Flakiness against the real Docker engine: an agent that fails about half the time (real randomness, which no seed
// brings back) replayed 10 times is `flaky` — never a pass — with how many of how many; the same image's steady
// endpoint passes all 10. (The chance that 10 fair coin flips all agree is 1 in 512.)
import { randomBytes } from "node:crypto";
import Docker from "dockerode";
import { batchStore } from "@moss/batch";
import { knownAgent, parseConfig } from "@moss/config";
import { CandidateReady, Messages, replayVerdict, type FailureRef, type ReplayCompleted, type ReplayTrial } from "@moss/contracts";
import { replay, replayTrial, type ReplayerDeps } from "@moss/replayer";
import { createRuntime } from "@moss/runtime";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { recordingPublish } from "../helpers/publish";
import { CANDIDATE, VERSION, batchRecord, failure, seed, silent, startEnv, type Env } from "../helpers/env";
import { createFixtureRepo, type FixtureRepo } from "../runtime/fixture";

const prefix = `mf${randomBytes(4).toString("hex")}`;
const labels = { "moss.test": prefix };
const runtime = createRuntime({ namePrefix: prefix, trialPoolSize: 2 });
const CONFIG = parseConfig({ agents: { coin: { repo: "/srv/coin", port: 8080 } } });

describe("flaky detection with a real agent in Docker", { timeout: 240_000 }, () => {
  let env: Env;
  let repo: FixtureRepo;
  let image: string;
  beforeAll(async () => {
    env = await startEnv("flaky-test");
    repo = createFixtureRepo();
    image = (await runtime.buildImage({ repoDir: repo.dir, commit: repo.v1, tag: `moss-test/${prefix}-coin:v1`, labels })).image;
  }, 240_000);
  afterAll(async () => {
    await runtime.close();
    const docker = new Docker();
    for (const img of await docker.listImages({ filters: { label: [`moss.test=${prefix}`] } })) await docker.getImage(img.Id).remove({ force: true }).catch(() => undefined);
    await env?.stop();
  });

  let n = 0;
  async function replayTen(path: string): Promise<ReplayCompleted> {
    const batches = await env.bucket("batches");
    const ev = failure({ id: `coin${++n}`, agent: "coin", route: path, request: { method: "GET", path, headers: {} } });
    const failures: FailureRef[] = [{ id: ev.id, event: await env.blob.put(JSON.stringify(ev), { contentType: "application/json" }) }];
    const batchId = `flaky${n}`;
    await seed(batches, batchRecord({ batchId, agent: "coin", failures, state: "candidate", attempt: 1 }));
    const sent = recordingPublish();
    const deps: ReplayerDeps = { agent: (name) => knownAgent(CONFIG, name).entry, blob: env.blob, runtime, batches: batchStore(batches), replays: await env.bucket("replays"), publish: sent.publish, log: silent };
    const msg = CandidateReady.parse({
      batchId, agent: "coin", fingerprint: "fp", fingerprintKey: "fpk", baseVersion: VERSION, failures, count: 1, attempt: 1, trialsPerFailure: 10,
      commit: CANDIDATE, branch: `moss/${batchId}/1`, image, diff: await env.blob.put("diff"), filesChanged: ["src/server.ts"],
    });
    await replay(msg, deps);
    const queue: ReplayTrial[] = sent.of(Messages.replayTrial).splice(0);
    expect(queue).toHaveLength(10);
    // Two workers, as a replica at concurrency 2 runs them.
    let next = 0;
    await Promise.all([0, 1].map(async () => { while (next < queue.length) await replayTrial(queue[next++]!, deps); }));
    const done = sent.of(Messages.replayCompleted);
    expect(done).toHaveLength(1);
    return done[0]!;
  }

  it("a coin-flip failure is flaky: never a pass, and the verdict says how many of how many trials passed", async () => {
    const r = await replayTen("/flaky");
    const [f] = r.results;
    expect(r.passed).toBe(false);
    expect(f!.verdict).toBe("flaky");
    expect(f!.trials!.of).toBe(10);
    expect(f!.trials!.passed).toBeGreaterThan(0);
    expect(f!.trials!.passed).toBeLessThan(10);
    expect(f!.reason).toMatch(new RegExp(`^flaky: ${f!.trials!.passed} of 10 trials passed; a failing one: answered 500`));
    expect(replayVerdict(r).verdict).toBe("replay-flaky");
  });

  it("the same image's steady endpoint passes all 10 trials", async () => {
    const r = await replayTen("/health");
    expect(r.passed).toBe(true);
    expect(r.results[0]).toMatchObject({ verdict: "pass", trials: { passed: 10, of: 10 } });
  });
});
