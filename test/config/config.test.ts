import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, isLoaderVariable, loadConfig, parseConfig, type LoadedConfig } from "@moss/config";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "moss-config-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(rel: string, content: unknown): string {
  const file = join(dir, rel);
  mkdirSync(join(file, ".."), { recursive: true });
  writeFileSync(file, typeof content === "string" ? content : JSON.stringify(content));
  return file;
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error("expected a ConfigError, nothing was thrown");
}

// Sections are matched, not pinned: a new setting with a default must not break these; a changed default must.
describe("defaults", () => {
  it("an empty environment and no file give a working local setup under the working directory", () => {
    const cfg = loadConfig({}, { cwd: dir });
    expect(cfg.source).toBeUndefined();
    // Where everything lives.
    expect(cfg.dataDir).toBe(join(dir, ".moss"));
    expect(cfg.paths).toEqual({
      dataDir: join(dir, ".moss"),
      blobs: join(dir, ".moss", "blobs"),
      worktrees: join(dir, ".moss", "worktrees"),
      audit: join(dir, ".moss", "audit", "audit.jsonl"),
      natsStore: join(dir, ".moss", "nats"),
      natsCredentials: join(dir, ".moss", "credentials", "nats"),
      natsConfig: join(dir, ".moss", "nats.conf"),
      operators: join(dir, ".moss", "credentials", "operators.json"),
      operatorToken: join(dir, ".moss", "credentials", "operator.token"),
    });
    expect(cfg.blob).toEqual({ kind: "fs", dir: join(dir, ".moss", "blobs") });
    // Local NATS with an nkey identity per process, no trace export, the APIs on loopback.
    expect(cfg.nats).toEqual({ url: "nats://127.0.0.1:4222", auth: "nkey", replicas: 1 });
    expect(cfg.operatorApi).toEqual({ host: "127.0.0.1", port: 7422 });
    expect(cfg.telemetry.otlpEndpoint).toBeUndefined();
    expect(cfg.auditor).toMatchObject({ host: "127.0.0.1", port: 7420 });
    // A batch closes at 3 failures or 10 s; 20 samples kept.
    expect(cfg.curator).toMatchObject({ batchSize: 3, batchWindowMs: 10_000, maxSamples: 20 });
    // No coding agent configured: nothing is rewritten until one is; 10 min limit, empty env.
    expect(cfg.rewriter.command).toBeUndefined();
    expect(cfg.rewriter).toMatchObject({ timeoutMs: 600_000, buildTimeoutMs: 600_000, envAllow: [] });
    expect(cfg.replayer).toMatchObject({ concurrency: 2, memoryMb: 256, pidsLimit: 128 });
    // The staged rewriter: every stage on, the standard depth (3 attempts), signatures required.
    expect(cfg.rewriter.stages).toEqual({ locate: true, plan: true, planReview: true, codeReview: true });
    expect(cfg.rewriter.depth).toBe("standard");
    expect(cfg.rewriter.tiers.standard).toEqual({ maxAttempts: 3, planRounds: 2, reviewRounds: 1, trialsPerFailure: 1 });
    expect(cfg.rewriter.signing.required).toBe(true);
    // A human approves every promotion unless autoApprove is set; attempts come from the depth tier; 5 s bake.
    expect(cfg.promoter.maxAttempts).toBeUndefined();
    expect(cfg.promoter).toMatchObject({
      autoApprove: false,
      bakeMs: 5_000,
      probeIntervalMs: 500,
      probeTimeoutMs: 1_000,
      maxFailedProbes: 2,
      startupMs: 15_000,
    });
    expect(cfg.agents).toEqual({});
  });

  it("an agent needs only its repo; port, live port, health path and env default", () => {
    const cfg = parseConfig({ agents: { shop: { repo: "/srv/shop" } } });
    expect(cfg.agents["shop"]).toMatchObject({ repo: "/srv/shop", port: 8080, livePort: 8080, healthPath: "/health", env: {} });
    expect(cfg.agents["shop"]?.stateDir).toBeUndefined();
  });

  it("the coding agent runs in a container with no network unless an allow-list names destinations", () => {
    expect(parseConfig({}).rewriter.sandbox).toEqual({ kind: "container", uidRange: [200_000, 265_535], image: "moss/coding-agent:latest", mounts: [], allow: [], memoryMiB: 4096, pids: 1024 });
    const ok = parseConfig({ rewriter: { sandbox: { allow: ["api.anthropic.com", "172.17.0.1:8080"], mounts: ["/opt/claude"] } } });
    expect(ok.rewriter.sandbox.allow).toEqual(["api.anthropic.com", "172.17.0.1:8080"]);
    const err = configError(() => parseConfig({ rewriter: { sandbox: { allow: ["https://api.anthropic.com/v1"], mounts: ["opt/claude"] } } }));
    expect(err.message).toContain("rewriter.sandbox.allow.0");
    expect(err.message).toContain("host:port");
    expect(err.message).toContain("rewriter.sandbox.mounts.0");
  });

  it("an s3 blob store keeps its own settings and defaults", () => {
    const cfg = parseConfig({ blob: { kind: "s3", endPoint: "minio", accessKey: "ak", secretKey: "sk" } }, { base: dir });
    expect(cfg.blob).toEqual({ kind: "s3", endPoint: "minio", accessKey: "ak", secretKey: "sk", useSSL: false, bucket: "moss" });
    expect(cfg.paths.blobs).toBe(join(dir, ".moss", "blobs"));
  });
});

describe("env overrides", () => {
  it("MOSS_<SECTION>__<KEY> values are typed: booleans, numbers; shorthands set url, data dir and OTLP endpoint", () => {
    const cfg = loadConfig(
      {
        MOSS_PROMOTER__AUTO_APPROVE: "true",
        MOSS_CURATOR__BATCH_SIZE: "5",
        MOSS_CURATOR__BATCH_WINDOW_MS: "2500",
        MOSS_NATS_URL: "nats://nats.internal:4222",
        MOSS_DATA_DIR: "/var/lib/moss",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://jaeger:4318/v1/traces",
        MOSS_REWRITER__COMMAND: '["claude","-p","@{prompt}"]',
      },
      { cwd: dir },
    );
    expect(cfg.promoter.autoApprove).toBe(true);
    expect(cfg.curator.batchSize).toBe(5);
    expect(cfg.curator.batchWindowMs).toBe(2500);
    expect(cfg.nats.url).toBe("nats://nats.internal:4222");
    expect(cfg.dataDir).toBe("/var/lib/moss");
    expect(cfg.paths.audit).toBe("/var/lib/moss/audit/audit.jsonl");
    expect(cfg.telemetry.otlpEndpoint).toBe("http://jaeger:4318/v1/traces");
    expect(cfg.rewriter.command).toEqual(["claude", "-p", "@{prompt}"]);
  });

  it("env wins over the file (MOSS_CONFIG names it) and leaves the file's other keys alone", () => {
    const file = writeConfig("moss.json", { curator: { batchSize: 7, batchWindowMs: 2_000 }, promoter: { autoApprove: true }, nats: { url: "nats://from-file:4222" } });
    const cfg = loadConfig({ MOSS_CONFIG: file, MOSS_CURATOR__BATCH_SIZE: "5", MOSS_PROMOTER__AUTO_APPROVE: "false", MOSS_NATS_URL: "" }, { cwd: "/" });
    expect(cfg.source).toBe(file);
    expect(cfg.curator).toMatchObject({ batchSize: 5, batchWindowMs: 2_000, maxSamples: 20 });
    expect(cfg.promoter.autoApprove).toBe(false);
    // An empty variable is treated as unset.
    expect(cfg.nats.url).toBe("nats://from-file:4222");
  });

  it("a bad env value is reported like a bad file value, with the field and the value", () => {
    const err = configError(() => loadConfig({ MOSS_CURATOR__BATCH_SIZE: "five", MOSS_AUDITOR__PORT: "99999" }, { cwd: dir }));
    expect(err.problems).toEqual([
      { path: "curator.batchSize", value: "five", why: expect.stringMatching(/number/) },
      { path: "auditor.port", value: 99999, why: expect.stringMatching(/65535/) },
    ]);
  });

  // Env values are text: JSON parsing types them for number/boolean/list settings, but a string setting keeps a
  // digit-only value as the string it was (shorthands are never parsed at all).
  it("string settings given in env keep digit-only values as strings", () => {
    const cfg = loadConfig(
      { MOSS_DATA_DIR: "2024", MOSS_BLOB__KIND: "s3", MOSS_BLOB__END_POINT: "minio", MOSS_BLOB__ACCESS_KEY: "moss", MOSS_BLOB__SECRET_KEY: "12345678" },
      { cwd: dir },
    );
    expect(cfg.dataDir).toBe(join(dir, "2024"));
    expect(cfg.blob).toMatchObject({ kind: "s3", secretKey: "12345678" });
  });

  it("a string setting keeps env text that looks like a boolean, null or a number, next to typed settings", () => {
    const cfg = loadConfig(
      { MOSS_AUDITOR__HOST: "0", MOSS_AUDITOR__PORT: "7500", MOSS_CURATOR__HTTP__TOKEN: "1234567890123456789012", MOSS_NATS_URL: "true", MOSS_AGENTS__SHOP__REPO: "null" },
      { cwd: dir },
    );
    expect(cfg.auditor).toMatchObject({ host: "0", port: 7500 });
    // Beyond Number.MAX_SAFE_INTEGER: the raw text, not a rounded number printed back.
    expect(cfg.curator.http.token).toBe("1234567890123456789012");
    expect(cfg.nats.url).toBe("true");
    expect(cfg.agents["shop"]?.repo).toBe(join(dir, "null"));
  });

  it("a typed env value that is wrong for its setting is still reported with its parsed value", () => {
    const err = configError(() => loadConfig({ MOSS_PROMOTER__AUTO_APPROVE: "1", MOSS_CURATOR__HTTP__TOKEN: "12345" }, { cwd: dir }));
    expect(err.problems).toEqual([
      { path: "curator.http.token", value: "12345", why: expect.stringMatching(/16/) },
      { path: "promoter.autoApprove", value: 1, why: expect.stringMatching(/boolean/) },
    ]);
  });
});

describe("paths", () => {
  it("relative repo and data paths resolve against the config file's directory, not the working directory", () => {
    const file = writeConfig("etc/moss/moss.json", {
      dataDir: "state",
      agents: { shop: { repo: "../../agents/shop" }, ledger: { repo: "/abs/ledger" } },
    });
    const elsewhere = join(dir, "somewhere", "else");
    mkdirSync(elsewhere, { recursive: true });
    const cfg = loadConfig({ MOSS_CONFIG: "../../etc/moss/moss.json" }, { cwd: elsewhere });
    expect(cfg.source).toBe(file);
    expect(cfg.agents["shop"]?.repo).toBe(join(dir, "agents", "shop"));
    expect(cfg.agents["ledger"]?.repo).toBe("/abs/ledger");
    expect(cfg.dataDir).toBe(join(dir, "etc", "moss", "state"));
    expect(cfg.paths.worktrees).toBe(join(dir, "etc", "moss", "state", "worktrees"));
  });

  it("a relative fs blob dir lives under the data dir", () => {
    const cfg = parseConfig({ dataDir: "/data", blob: { kind: "fs", dir: "cas" } });
    expect(cfg.blob).toEqual({ kind: "fs", dir: "/data/cas" });
    expect(cfg.paths.blobs).toBe("/data/cas");
  });
});

describe("errors", () => {
  it("reports every problem at once with path, value and why, in the error and its message", () => {
    const file = writeConfig("moss.json", {
      nats: { url: 4222 },
      curator: { batchSize: 0 },
      promoter: { autoApprove: "yes" },
      telemetry: { otlpEndpoint: "not a url" },
      agents: { shop: { repo: "/srv/shop", port: 70_000, healthPath: "health" } },
    });
    const err = configError(() => loadConfig({}, { file }));
    expect(err.name).toBe("ConfigError");
    expect(err.code).toBe("MOSS_E_CONFIG");
    expect(err.retryable).toBe(false);

    const byPath = new Map(err.problems.map((p) => [p.path, p]));
    expect([...byPath.keys()].sort()).toEqual(
      ["agents.shop.healthPath", "agents.shop.port", "curator.batchSize", "nats.url", "promoter.autoApprove", "telemetry.otlpEndpoint"].sort(),
    );
    expect(byPath.get("nats.url")).toMatchObject({ value: 4222, why: expect.stringMatching(/string/) });
    expect(byPath.get("curator.batchSize")).toMatchObject({ value: 0, why: expect.stringMatching(/>=\s*1/) });
    expect(byPath.get("promoter.autoApprove")).toMatchObject({ value: "yes", why: expect.stringMatching(/boolean/) });
    expect(byPath.get("agents.shop.port")).toMatchObject({ value: 70_000 });
    expect(byPath.get("agents.shop.healthPath")).toMatchObject({ value: "health", why: expect.stringMatching(/"\/"/) });

    // The message alone is enough to fix the file: which file, which field, what was there.
    expect(err.message).toContain(`invalid Moss config in ${file}`);
    for (const p of err.problems) expect(err.message).toContain(`  - ${p.path}: ${p.why} (got ${JSON.stringify(p.value)})`);
  });

  it("a missing required field says it got nothing", () => {
    const err = configError(() => parseConfig({ agents: { shop: {} } }));
    expect(err.problems).toEqual([{ path: "agents.shop.repo", value: undefined, why: expect.any(String) }]);
    expect(err.message).toContain("agents.shop.repo");
    expect(err.message).toContain("(got nothing)");
  });

  it("an agent name that cannot be a NATS token is rejected", () => {
    const err = configError(() => parseConfig({ agents: { "My Shop": { repo: "/srv" } } }));
    expect(err.problems.map((p) => p.path)).toEqual(["agents.My Shop"]);
  });

  it("an unreadable file names the file and what to do", () => {
    const missing = join(dir, "nope", "moss.json");
    const err = configError(() => loadConfig({ MOSS_CONFIG: missing }));
    expect(err.message).toContain(`cannot read config file ${missing}`);
    expect(err.message).toContain("MOSS_CONFIG");
    expect(err.problems).toEqual([]);
    expect((err.cause as NodeJS.ErrnoException).code).toBe("ENOENT");
  });

  it("a file that is not JSON names the file", () => {
    const file = writeConfig("moss.json", '{ "curator": { "batchSize": 3, } }');
    const err = configError(() => loadConfig({}, { file }));
    expect(err.message).toContain(`config file ${file} is not valid JSON`);
    expect(err.cause).toBeInstanceOf(SyntaxError);
  });

  // A file that parses but is not an object is a ConfigError naming the file, with or without env overrides.
  it("a file holding JSON null is a ConfigError even with env overrides", () => {
    const file = writeConfig("moss.json", "null");
    const err = configError(() => loadConfig({ MOSS_NATS_URL: "nats://x:4222" }, { file }));
    expect(err.message).toContain(file);
  });

  it.each([
    ["an array", "[]"],
    ["a string", '"moss.json"'],
    ["a number", "42"],
  ])("a file holding %s is a ConfigError that says it must be a JSON object", (got, text) => {
    const file = writeConfig("moss.json", text);
    for (const env of [{}, { MOSS_CURATOR__BATCH_SIZE: "5" }]) {
      const err = configError(() => loadConfig(env, { file }));
      expect(err.message).toContain(`config file ${file} must be a JSON object`);
      expect(err.message).toContain(`got ${got}`);
      expect(err.problems).toEqual([{ path: "(root)", value: JSON.parse(text), why: "must be a JSON object" }]);
    }
  });
});

describe("result", () => {
  it("is deeply frozen", () => {
    const cfg: Readonly<LoadedConfig> = loadConfig({}, { file: writeConfig("moss.json", { agents: { shop: { repo: "/srv/shop", env: { A: "1" } } } }) });
    expect(Object.isFrozen(cfg)).toBe(true);
    for (const part of [cfg.curator, cfg.paths, cfg.blob, cfg.agents, cfg.agents["shop"], cfg.agents["shop"]?.env, cfg.rewriter.envAllow]) expect(Object.isFrozen(part)).toBe(true);
    // Modules are strict: writing a frozen property throws instead of being ignored.
    expect(() => {
      (cfg.curator as { batchSize: number }).batchSize = 99;
    }).toThrow(TypeError);
    expect(() => {
      (cfg.agents["shop"]!.env as Record<string, string>)["B"] = "2";
    }).toThrow(TypeError);
    expect(cfg.curator.batchSize).toBe(3);
  });
});

describe("agents.<name>.replay", () => {
  it("takes pass predicates, resolves a grader's relative path against the config's directory, and refuses a bad check", () => {
    const cfg = parseConfig(
      { agents: { shop: { repo: "/srv/shop", replay: { expect: { statusMax: 299, json: [{ path: "$.total", exists: true }], grader: { command: ["./graders/total.py", "--strict"] } } } } } },
      { base: "/etc/moss" },
    );
    expect(cfg.agents["shop"]!.replay.expect).toEqual({ statusMax: 299, json: [{ path: "$.total", exists: true }], grader: { command: ["/etc/moss/graders/total.py", "--strict"], timeoutMs: 10_000 } });
    const onPath = parseConfig({ agents: { shop: { repo: "/srv/shop", replay: { expect: { grader: { command: ["grade-shop"] } } } } } }, { base: "/etc/moss" });
    expect(onPath.agents["shop"]!.replay.expect.grader!.command).toEqual(["grade-shop"]);
    const err = configError(() =>
      parseConfig({ agents: { shop: { repo: "/srv/shop", replay: { expect: { statusMin: 700, json: [{ path: "$.a", equals: 1, absent: true }], grader: { command: [] } } } } } }),
    );
    expect(err.problems.map((p) => p.path)).toEqual(["agents.shop.replay.expect.statusMin", "agents.shop.replay.expect.json.0", "agents.shop.replay.expect.grader.command"]);
  });

  it("takes no recorded env and no network by default, and refuses a loader variable in the allow-list", () => {
    const cfg = parseConfig({ agents: { shop: { repo: "/srv/shop" } } });
    expect(cfg.agents["shop"]!.replay).toEqual({ envAllow: [], network: false, forward: [], expect: {} });
    const err = configError(() => parseConfig({ agents: { shop: { repo: "/srv/shop", replay: { envAllow: ["LOCALE", "NODE_OPTIONS", "LD_PRELOAD"] } } } }));
    expect(err.problems.map((p) => p.path)).toEqual(["agents.shop.replay.envAllow.1", "agents.shop.replay.envAllow.2"]);
    expect(err.message).toContain("NODE_OPTIONS changes how the agent's runtime loads code; it can never be taken from a failure event");
    for (const n of ["NODE_OPTIONS", "LD_LIBRARY_PATH", "PYTHONPATH", "DYLD_INSERT_LIBRARIES", "PATH"]) expect(isLoaderVariable(n), n).toBe(true);
    for (const n of ["LOCALE", "TZ", "MODEL"]) expect(isLoaderVariable(n), n).toBe(false);
  });

  it("forwards unrecorded calls only to base URLs, and says so when one is not", () => {
    const ok = parseConfig({ agents: { shop: { repo: "/srv/shop", replay: { forward: ["https://staging-model.internal/v1", "http://10.0.0.5:8080"] } } } });
    expect(ok.agents["shop"]!.replay.forward).toEqual(["https://staging-model.internal/v1", "http://10.0.0.5:8080"]);
    const err = configError(() => parseConfig({ agents: { shop: { repo: "/srv/shop", replay: { forward: ["staging-model:8080"] } } } }));
    expect(err.problems.map((p) => p.path)).toEqual(["agents.shop.replay.forward.0"]);
    expect(err.message).toContain("a base URL: http(s)://host[:port][/path]");
  });
});
