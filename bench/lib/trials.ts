// What a replay trial costs on the real Docker engine, next to a bare run of the same image and command measured in
// the same run, and how a 16-failure batch scales with a replica's concurrency and with a second replica, through the
// real work queue (nats-server, JetStream, KV join) and the real replayer handlers.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { batchStore } from "@moss/batch";
import { createBlobStore } from "@moss/blob";
import { createBus, route, type Bus } from "@moss/bus";
import { knownAgent, parseConfig } from "@moss/config";
import { Buckets, CandidateReady, Consumers, Messages, type FailureRef, type Publish } from "@moss/contracts";
import { replay, replayTrial, type ReplayerDeps } from "@moss/replayer";
import { createRuntime, type Runtime, type TrialSpec } from "@moss/runtime";
import Docker from "dockerode";
import { batchRecord, CANDIDATE, failure, seed, silent, VERSION } from "../../test/helpers/env";
import { startNats } from "../../test/helpers/nats";

const APP = `import http from "node:http";
http.createServer((req, res) => { res.writeHead(200, { "content-type": "application/json" }); res.end('{"ok":true}'); }).listen(Number(process.env.PORT), "0.0.0.0");
`;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const secs = (ms: number) => Number((ms / 1000).toFixed(3));

export interface TrialFigures {
  baseline_s: number;
  trial_s: number;
  trial_ratio: number;
  pool_trial_s: number;
  pool_trial_ratio: number;
  batch_c1_s: number;
  batch_c2_s: number;
  batch_c4_s: number;
  batch_2_replicas_s: number;
  speedup_c2: number;
  speedup_c4: number;
  speedup_2_replicas: number;
  /** Bare runs of the same image two at a time against one at a time: what the engine allows here. */
  bare_speedup_c2: number;
}

export async function trialFigures(log: (line: string) => void): Promise<TrialFigures> {
  const prefix = `mb${process.pid}`;
  const docker = new Docker();
  const runtime = createRuntime({ namePrefix: prefix });
  const repo = mkdtempSync(join(tmpdir(), "moss-bench-trial-"));
  const tag = `moss-bench/${prefix}-agent:1`;
  const nats = await startNats();
  const buses: Bus[] = [];
  try {
    writeFileSync(join(repo, "app.mjs"), APP);
    writeFileSync(join(repo, "Dockerfile"), `FROM moss/node-base\nCOPY app.mjs /app/app.mjs\nCMD ["/usr/bin/node", "/app/app.mjs"]\n`);
    const git = (...a: string[]) => execFileSync("git", ["-c", "user.name=b", "-c", "user.email=b@b", ...a], { cwd: repo, stdio: "pipe" });
    git("init", "-q");
    git("add", ".");
    git("commit", "-qm", "bench agent");
    await runtime.buildImage({ repoDir: repo, commit: "HEAD", tag, labels: { "moss.bench": prefix } });

    // Baseline: the engine's own run of the same image and command, until it answers one request, then removed.
    const bare = async (): Promise<number> => {
      const t0 = performance.now();
      const c = await docker.createContainer({ Image: tag, Env: ["PORT=8080"], Labels: { "moss.bench": prefix }, HostConfig: { NetworkMode: "bridge" } });
      try {
        await c.start();
        const ip = (await c.inspect()).NetworkSettings.Networks["bridge"]!.IPAddress;
        for (;;) {
          const ok = await fetch(`http://${ip}:8080/`).then((r) => r.ok, () => false);
          if (ok) break;
          await new Promise((r) => setTimeout(r, 5));
        }
      } finally {
        await c.remove({ force: true });
      }
      return performance.now() - t0;
    };
    const spec: TrialSpec = { image: tag, port: 8080, env: {}, timeoutMs: 10_000, stateDir: "/data", request: { method: "GET", path: "/", headers: {} } };
    const trial = async (rt: Runtime = runtime): Promise<number> => {
      const t0 = performance.now();
      const r = await rt.runTrial(spec);
      if (r.response?.status !== 200) throw new Error(`bench trial did not answer 200: ${r.error ?? r.response?.status}`);
      return performance.now() - t0;
    };
    const bares: number[] = [];
    const trials: number[] = [];
    for (let i = 0; i < 9; i++) {
      const b = await bare();
      const t = await trial();
      if (i >= 2) {
        bares.push(b);
        trials.push(t);
      }
    }
    const baseline = median(bares);
    const one = median(trials);
    log(`bare run ${secs(baseline)} s, one trial end to end ${secs(one)} s (ratio ${(one / baseline).toFixed(2)}); medians of 7 after 2 warm-ups`);
    // The same trial, its pod taken from the warm pool (made while the trial before ran, as in a replica), its
    // removal behind its result; the pool refilled and the last pod removed between trials, so each is measured alone.
    const warm = createRuntime({ namePrefix: prefix, trialPoolSize: 1 });
    const pooled: number[] = [];
    try {
      for (let i = 0; i < 9; i++) {
        if ((await warm.warmTrials(spec)) < 1) throw new Error("the warm pool made no pod");
        await warm.idle();
        const t = await trial(warm);
        if (i >= 2) pooled.push(t);
      }
    } finally {
      await warm.close();
    }
    const pool = median(pooled);
    log(`one trial with its pod from the warm pool ${secs(pool)} s (ratio ${(pool / baseline).toFixed(2)})`);

    // A 16-failure batch through the work queue: one replica at concurrency 1, 2, 4; two replicas at concurrency 1.
    const blobDir = mkdtempSync(join(tmpdir(), "moss-bench-blob-"));
    const blob = createBlobStore({ kind: "fs", dir: blobDir });
    await blob.init();
    const admin = await createBus({ url: nats.url, name: "bench", logger: silent });
    buses.push(admin);
    await admin.provision();
    const config = parseConfig({ agents: { "chat-bot": { repo, port: 8080, stateDir: "/data" } } });
    const events = Array.from({ length: 16 }, (_, i) => failure({ id: `bench-${i}`, request: { method: "GET", path: "/", headers: {} } }));
    const failures: FailureRef[] = [];
    for (const ev of events) failures.push({ id: ev.id, event: await blob.put(JSON.stringify(ev), { contentType: "application/json" }) });
    let n = 0;
    // As a replayer replica runs: a warm pool as deep as its concurrency.
    const runtimes: Runtime[] = [];
    const pooledRuntime = (size: number): Runtime => {
      const r = createRuntime({ namePrefix: prefix, trialPoolSize: size });
      void r.warmTrials();
      runtimes.push(r);
      return r;
    };
    const batch = async (replicas: number, concurrency: number): Promise<number> => {
      const batchId = `bench${++n}`;
      await seed(await admin.kv(Buckets.batches), batchRecord({ batchId, failures, state: "candidate", attempt: 1 }));
      let finished: () => void = () => undefined;
      const done = new Promise<void>((r) => (finished = r));
      const consumers: Array<{ stop(): Promise<void> }> = [];
      let start: (() => Promise<void>) | undefined;
      for (let i = 0; i < replicas; i++) {
        const bus = await createBus({ url: nats.url, name: `bench-replayer-${i}`, logger: silent });
        buses.push(bus);
        const publish: Publish = async (def, msg, opts) => {
          const r = await bus.publish(def, msg, opts);
          if (def.name === Messages.replayCompleted.name && (msg as { batchId: string }).batchId === batchId) finished();
          return r;
        };
        const deps: ReplayerDeps = {
          agent: (name) => knownAgent(config, name).entry,
          blob,
          runtime: pooledRuntime(concurrency),
          batches: batchStore(await bus.kv(Buckets.batches)),
          replays: await bus.kv(Buckets.replays),
          publish,
          log: silent,
        };
        consumers.push(await bus.consume(Consumers.replayerTrials, [route(Messages.replayTrial, (m, ctx) => replayTrial(m, deps, ctx))], { concurrency, prefetch: concurrency }));
        if (!start) {
          const msg = CandidateReady.parse({ batchId, agent: "chat-bot", fingerprint: "fp", fingerprintKey: "fpk", baseVersion: VERSION, failures, count: 16, attempt: 1, commit: CANDIDATE, branch: `moss/${batchId}/1`, image: tag, diff: await blob.put("diff"), filesChanged: ["app.mjs"] });
          start = () => replay(msg, deps);
        }
      }
      // The pools full, as they would be between batches.
      await Promise.all(runtimes.map((r) => r.warmTrials()));
      const t0 = performance.now();
      await start!();
      await done;
      const ms = performance.now() - t0;
      for (const c of consumers) await c.stop();
      for (const r of runtimes.splice(0)) await r.close();
      return ms;
    };
    // What the engine itself gives at concurrency 2 on this machine: 16 bare runs, one at a time and two at a time.
    const bareBatch = async (concurrency: number): Promise<number> => {
      const t0 = performance.now();
      let next = 0;
      await Promise.all(Array.from({ length: concurrency }, async () => {
        while (next++ < 16) await bare();
      }));
      return performance.now() - t0;
    };
    const b1 = await bareBatch(1);
    const b2 = await bareBatch(2);
    log(`16 bare runs: one at a time ${secs(b1)} s, two at a time ${secs(b2)} s (the engine's own speedup ${(b1 / b2).toFixed(2)})`);
    const c1 = await batch(1, 1);
    const c2 = await batch(1, 2);
    const c4 = await batch(1, 4);
    const r2 = await batch(2, 1);
    log(`16-failure batch: concurrency 1 ${secs(c1)} s, 2 ${secs(c2)} s, 4 ${secs(c4)} s; two replicas at concurrency 1 ${secs(r2)} s`);
    rmSync(blobDir, { recursive: true, force: true });
    return {
      baseline_s: secs(baseline),
      trial_s: secs(one),
      trial_ratio: Number((one / baseline).toFixed(3)),
      pool_trial_s: secs(pool),
      pool_trial_ratio: Number((pool / baseline).toFixed(3)),
      batch_c1_s: secs(c1),
      batch_c2_s: secs(c2),
      batch_c4_s: secs(c4),
      batch_2_replicas_s: secs(r2),
      speedup_c2: Number((c1 / c2).toFixed(3)),
      speedup_c4: Number((c1 / c4).toFixed(3)),
      speedup_2_replicas: Number((c1 / r2).toFixed(3)),
      bare_speedup_c2: Number((b1 / b2).toFixed(3)),
    };
  } finally {
    for (const b of buses.reverse()) await b.close().catch(() => undefined);
    await nats.stop();
    for (const c of [
      ...(await docker.listContainers({ all: true, filters: { label: [`moss.bench=${prefix}`] } })),
      ...(await docker.listContainers({ all: true, filters: { label: [`moss.prefix=${prefix}`] } })),
    ]) await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
    await docker.getImage(tag).remove({ force: true }).catch(() => undefined);
    rmSync(repo, { recursive: true, force: true });
  }
}
