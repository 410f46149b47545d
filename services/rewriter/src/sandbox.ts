/**
 * The coding agent's sandbox. The tool is a black box Moss did not write, so it runs where it can see its work and its
 * evidence only:
 *
 * - a private copy of the worktree's files with a throwaway git repository of its own (it may `git diff`, commit,
 *   set config and hooks there: none of it touches Moss's repository, and Moss's own git honours none anyway),
 *   plus copies of the evidence and the stage's prompt, in a fresh directory (the box) only it may enter;
 * - as a fresh unprivileged uid (one per run, no entry in /etc/passwd, so nothing else runs as it);
 * - `container` (the default): in a container of its own (./container.ts) that holds the box and nothing else of the
 *   host, with no network or, when `allow` names destinations, an egress proxy that lets through those only;
 * - `user`: as that uid on the host: Moss's data directory (signing key, NATS credentials, blob store, other agents'
 *   repositories) is mode 700 and out of reach; without a credential it cannot use the bus, but the network is open;
 * - when it exits, every process of that uid is killed (its container removed), and only then are its files copied
 *   back into Moss's worktree without following a single link: a symlink comes back as a symlink (the guardrails
 *   judge where it points), its `.git` never comes back at all. What it committed in its own repository is simply
 *   what its files say.
 *
 * Moss then checks the guardrails and commits exactly that tree, signed.
 */
import { randomInt } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, sep } from "node:path";
import { runGit } from "@moss/git";
import { BASE_IMAGE, createDockerClient, RUNTIME_DEFAULTS } from "@moss/runtime";
import type { Logger } from "@moss/telemetry";
import type { AdapterResult, CodingAgentAdapter, StageInvocation } from "./adapters";
import { readRegular } from "./adapters/common";
import { killAllOf, type ProcessOptions } from "./adapters/process";
import { openEgress, runInContainer, sweepSandboxes, type ContainerSpec, type Egress } from "./container";
import { AdapterConfigError } from "./errors";

export interface SandboxConfig {
  /** `container` (default) or `user`, as above. `none`: the tool runs as the rewriter's own user. */
  kind: "container" | "user" | "none";
  /** The uids (and equal gids) a run may get: unused by anything else on the host. */
  uidRange: readonly [number, number];
  /** `container`: the image the tool runs in. */
  image: string;
  /** `container`: host paths mounted read-only at the same path (the tool's installation). */
  mounts: readonly string[];
  /** `container`: the `host:port` destinations the tool may reach (the model API); empty: no network at all. */
  allow: readonly string[];
  /** `container`: memory limit, MiB. */
  memoryMiB: number;
  /** `container`: most processes at once. */
  pids: number;
}

/** Largest answer file taken back from a stage. */
const MAX_ANSWER = 2_000_000;

/** The adapter as the rewriter runs it: inside the sandbox the config asks for. */
export function sandboxed(inner: CodingAgentAdapter, cfg: SandboxConfig, log?: Logger, dockerSocket = RUNTIME_DEFAULTS.socketPath): CodingAgentAdapter {
  if (cfg.kind === "none" || inner.name === "symbolic") return inner;
  if (process.getuid?.() !== 0) {
    throw new AdapterConfigError(
      `rewriter.sandbox.kind "${cfg.kind}" runs the coding agent as a fresh unprivileged uid, which needs the rewriter to run as root (it runs as uid ${process.getuid?.()}). Run it as root, or set rewriter.sandbox.kind to "none" — then the coding agent can read everything the rewriter can, the signing key and the NATS credentials included.`,
    );
  }
  const [lo, hi] = cfg.uidRange;
  const docker = cfg.kind === "container" ? createDockerClient(dockerSocket) : undefined;
  const spec: ContainerSpec = { image: cfg.image, proxyImage: BASE_IMAGE, mounts: cfg.mounts, allow: cfg.allow, memoryMiB: cfg.memoryMiB, pids: cfg.pids };
  let swept: Promise<void> | undefined;
  return {
    name: inner.name,
    version: () => inner.version(),
    async run(inv: StageInvocation): Promise<AdapterResult> {
      const uid = randomInt(lo, hi + 1);
      // The box is root's (0711): the tool may enter its rooms, never rename or replace one. Its rooms are its own.
      const box = mkdtempSync(join(tmpdir(), "moss-sandbox-"));
      chmodSync(box, 0o711);
      let egress: Egress | undefined;
      try {
        const work = join(box, "work");
        copyTree(inv.worktree, work);
        await runGit(work, ["init", "-q", "-b", "main"]);
        await runGit(work, ["add", "-A"]);
        await runGit(work, ["-c", "user.name=Moss", "-c", "user.email=moss@localhost", "commit", "-q", "--allow-empty", "--no-verify", "-m", "the code as Moss handed it over"]);
        for (const d of ["home", "tmp", "out"]) mkdirSync(join(box, d));
        for (const d of ["work", "home", "tmp", "out"]) chownTree(join(box, d), uid);
        // Evidence and prompt stay root's: readable, not writable.
        const evidencePath = join(box, "evidence.json");
        const promptPath = join(box, `${inv.stage}.prompt.md`);
        copyFileSync(inv.evidencePath, evidencePath);
        copyFileSync(inv.promptPath, promptPath);
        for (const f of [evidencePath, promptPath]) chmodSync(f, 0o644);
        const outputPath = join(box, "out", `${inv.stage}.out.md`);
        rmSync(inv.outputPath, { force: true });

        const env = { ...inv.env, HOME: join(box, "home"), TMPDIR: join(box, "tmp") };
        let exec: StageInvocation["exec"];
        if (docker) {
          swept ??= sweepSandboxes(docker, log).catch(() => undefined);
          await swept;
          if (cfg.allow.length) {
            try {
              egress = await openEgress(docker, spec);
            } catch (err) {
              return { outcome: "failure", reason: `cannot set up the sandbox's network (rewriter.sandbox.allow): ${(err as Error).message}`, output: "", exitCode: null, durationMs: 0 };
            }
          }
          const e = egress;
          exec = (argv: readonly string[], o: ProcessOptions) => runInContainer(docker, spec, box, e, argv, o);
        }
        let r: AdapterResult;
        try {
          r = await inner.run({ ...inv, worktree: work, evidencePath, promptPath, outputPath, env, runAs: { uid, gid: uid }, ...(exec ? { exec } : {}) });
        } finally {
          // Nothing of the tool may still run while its files are read, however the run ended (runProcess kills them
          // at the tool's exit; a tool stuck past its timeout never exits).
          killAllOf(uid);
        }
        if (egress) r = withEgress(r, egress, inv, log);
        syncBack(work, inv.worktree);
        const answer = readRegular(outputPath, MAX_ANSWER);
        if (answer !== undefined) writeFileSync(inv.outputPath, answer);
        return r;
      } finally {
        await egress?.close();
        rmSync(box, { recursive: true, force: true });
        log?.debug("sandbox removed", { stage: inv.stage, uid });
      }
    },
  };
}

/** The proxy's refusals go with the stage's output (the audit trail keeps it) and to the log. */
function withEgress(r: AdapterResult, egress: Egress, inv: StageInvocation, log?: Logger): AdapterResult {
  const refused = egress.decisions().filter((d) => d.egress === "refused");
  if (!refused.length) return r;
  const targets = [...new Set(refused.map((d) => d.target))];
  log?.warn("the sandbox refused the coding agent's connections to destinations not in rewriter.sandbox.allow", { stage: inv.stage, refused: targets, attempts: refused.length });
  return { ...r, output: `${r.output}\n[moss sandbox] refused ${refused.length} connection(s) to destinations not in rewriter.sandbox.allow: ${targets.join(", ")}\n` };
}

/**
 * Which of Moss's own paths a container sandbox's mounts would put in front of the coding agent: a mount that is one
 * of them, holds one, or lies inside one. The rewriter refuses to start with such a mount.
 */
export function exposedByMounts(mounts: readonly string[], secret: readonly string[]): string[] {
  const inside = (a: string, b: string) => a === b || a.startsWith(b.endsWith(sep) ? b : b + sep);
  return secret.filter((s) => mounts.some((m) => inside(s, m) || inside(m, s)));
}

function chownTree(dir: string, uid: number): void {
  lchownSync(dir, uid, uid);
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) chownTree(p, uid);
    else lchownSync(p, uid, uid);
  }
}

/** The files of a worktree, its `.git` link left out: regular files, directories and symlinks (as links), nothing else. */
function copyTree(from: string, to: string, root = true): void {
  mkdirSync(to, { recursive: true });
  for (const e of readdirSync(from, { withFileTypes: true })) {
    if (root && e.name === ".git") continue;
    const src = join(from, e.name);
    const dst = join(to, e.name);
    if (e.isSymbolicLink()) symlinkSync(readlinkSync(src), dst);
    else if (e.isDirectory()) copyTree(src, dst, false);
    else if (e.isFile()) {
      copyFileSync(src, dst);
    }
  }
}

type Entry = { kind: "dir" } | { kind: "link"; target: string } | { kind: "file"; exec: boolean };

/** Every entry under `dir` by relative path, read with lstat only (a link is never followed); `.git` at the top skipped. */
function entries(dir: string): Map<string, Entry> {
  const out = new Map<string, Entry>();
  const walk = (rel: string) => {
    for (const name of readdirSync(join(dir, rel))) {
      if (rel === "" && name === ".git") continue;
      const r = rel ? `${rel}${sep}${name}` : name;
      const st = lstatSync(join(dir, r));
      if (st.isSymbolicLink()) out.set(r, { kind: "link", target: readlinkSync(join(dir, r)) });
      else if (st.isDirectory()) {
        out.set(r, { kind: "dir" });
        walk(r);
      } else if (st.isFile()) out.set(r, { kind: "file", exec: (st.mode & 0o111) !== 0 });
      // Sockets, fifos, devices: not code; never copied.
    }
  };
  walk("");
  return out;
}

/**
 * Makes Moss's worktree hold what the sandbox's work tree holds: entries gone or changed in kind are removed first,
 * then directories, links and files are created parents first. File contents are read with O_NOFOLLOW and checked to
 * be regular files; a link is recreated, never read through.
 */
function syncBack(work: string, worktree: string): void {
  const want = entries(work);
  const have = entries(worktree);
  const same = (a: Entry, b: Entry) => a.kind === b.kind && (a.kind !== "link" || a.target === (b as { target: string }).target);
  // Deepest first, so a directory is emptied before it goes.
  for (const rel of [...have.keys()].sort().reverse()) {
    const w = want.get(rel);
    if (!w || !same(w, have.get(rel)!)) rmSync(join(worktree, rel), { recursive: true, force: true });
  }
  for (const rel of [...want.keys()].sort()) {
    const w = want.get(rel)!;
    const dst = join(worktree, rel);
    if (w.kind === "dir") mkdirSync(dst, { recursive: true });
    else if (w.kind === "link") {
      if (!existsLink(dst)) symlinkSync(w.target, dst);
    } else {
      const data = readRegular(join(work, rel));
      if (data === undefined) continue;
      mkdirSync(dirname(dst), { recursive: true });
      const cur = readRegular(dst);
      if (!cur || !cur.equals(data)) writeFileSync(dst, data);
      const mode = w.exec ? 0o755 : 0o644;
      if ((lstatSync(dst).mode & 0o777) !== mode) chmodSync(dst, mode);
    }
  }
}

function existsLink(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * The paths a foreign uid could read: every directory on the way lets others through (o+x) and the path itself lets
 * others read it (o+r). What the rewriter warns about at start when the sandbox is on.
 */
export function readableByOthers(path: string): boolean {
  let st;
  try {
    st = statSync(path);
  } catch {
    return false;
  }
  if ((st.mode & 0o004) === 0) return false;
  for (let d = dirname(path); ; d = dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) return false;
    if (dirname(d) === d) return true;
  }
}
