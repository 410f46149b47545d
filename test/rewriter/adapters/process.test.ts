import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CappedText, runProcess } from "@moss/rewriter";
import { alive, fakeEnv, tempRoot, waitFor } from "./helpers";

const root = tempRoot("adapters-process");
afterAll(() => rmSync(root, { recursive: true, force: true }));
const env = fakeEnv(root);
const node = process.execPath;

describe("runProcess", () => {
  it("captures stdout and stderr apart, and interleaved", async () => {
    const r = await runProcess([node, "-e", "console.log('out-1'); console.error('err-1'); console.log('out-2')"], { cwd: root, env, timeoutMs: 10_000 });
    expect(r).toMatchObject({ kind: "exited", exitCode: 0 });
    expect(r.stdout).toBe("out-1\nout-2\n");
    expect(r.stderr).toBe("err-1\n");
    expect(r.output).toContain("out-1");
    expect(r.output).toContain("err-1");
  });

  it("decodes a multi-byte character split across chunks whole", async () => {
    const script = "const b = Buffer.from('é€😀'); process.stdout.write(b.subarray(0, 3)); setTimeout(() => process.stdout.write(b.subarray(3)), 50);";
    const r = await runProcess([node, "-e", script], { cwd: root, env, timeoutMs: 10_000 });
    expect(r.stdout).toBe("é€😀");
  });

  it("gives stdin EOF at once, or a file's content", async () => {
    const echo = [node, "-e", "let s=''; process.stdin.on('data', d => s += d).on('end', () => console.log('got:' + JSON.stringify(s)))"];
    const closed = await runProcess(echo, { cwd: root, env, timeoutMs: 10_000 });
    expect(closed.stdout).toBe('got:""\n');
    const file = join(root, "stdin.txt");
    writeFileSync(file, "the prompt");
    const fed = await runProcess(echo, { cwd: root, env, timeoutMs: 10_000, stdinFile: file });
    expect(fed.stdout).toBe('got:"the prompt"\n');
  });

  it("ends when the process exits, even when a background child holds the pipes, and kills that child", async () => {
    const pidFile = join(root, "holder.pid");
    const script = `const c = require('child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'inherit' }); c.unref(); require('fs').writeFileSync(${JSON.stringify(pidFile)}, String(c.pid)); console.log('done');`;
    const r = await runProcess([node, "-e", script], { cwd: root, env, timeoutMs: 20_000 });
    expect(r).toMatchObject({ kind: "exited", exitCode: 0 });
    expect(r.durationMs).toBeLessThan(5_000);
    expect(await waitFor(() => !alive(Number(readFileSync(pidFile, "utf8"))))).toBe(true);
  });

  it("kills the whole group at the timeout", async () => {
    const pidFile = join(root, "grandchild.pid");
    const script = `const c = require('child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' }); require('fs').writeFileSync(${JSON.stringify(pidFile)}, String(c.pid)); setInterval(() => {}, 1000);`;
    const r = await runProcess([node, "-e", script], { cwd: root, env, timeoutMs: 1_000 });
    expect(r.kind).toBe("timeout");
    expect(r.durationMs).toBeLessThan(5_000);
    expect(await waitFor(() => !alive(Number(readFileSync(pidFile, "utf8"))))).toBe(true);
  });

  it("reports a command that cannot start", async () => {
    const r = await runProcess([join(root, "missing-tool")], { cwd: root, env, timeoutMs: 5_000 });
    expect(r.kind).toBe("spawn-error");
    expect(r.error).toContain("ENOENT");
    const nul = await runProcess([node, "bad\0arg"], { cwd: root, env, timeoutMs: 5_000 });
    expect(nul.kind).toBe("spawn-error");
  });

  it("caps a flood of output, keeping its head and its tail", async () => {
    const script = "console.log('FIRST'); for (let i = 0; i < 2000; i++) console.log('x'.repeat(100)); console.log('LAST')";
    const r = await runProcess([node, "-e", script], { cwd: root, env, timeoutMs: 20_000, maxOutput: 10_000 });
    expect(r.stdoutTruncated).toBe(true);
    expect(r.stdout.length).toBeLessThan(10_200);
    expect(r.stdout.startsWith("FIRST\n")).toBe(true);
    expect(r.stdout.trimEnd().endsWith("LAST")).toBe(true);
    expect(r.stdout).toMatch(/\[\d+ characters omitted\]/);
  });
});

describe("CappedText", () => {
  it("keeps everything under the cap", () => {
    const t = new CappedText(10);
    t.push("abc");
    t.push("def");
    expect(t.text()).toBe("abcdef");
    expect(t.truncated).toBe(false);
  });

  it("says how much of the middle it dropped", () => {
    const t = new CappedText(10);
    for (const c of "0123456789ABCDEFGHIJ") t.push(c);
    expect(t.text()).toBe("01234\n… [10 characters omitted] …\nFGHIJ");
  });
});
