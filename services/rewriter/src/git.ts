import { existsSync, rmSync } from "node:fs";
import { simpleGit, type SimpleGit } from "simple-git";

export interface AttemptCommit {
  commit: string;
  filesChanged: string[];
}

/** Git operations of one agent repository, through simple-git. */
export class AgentRepo {
  private readonly git: SimpleGit;
  constructor(readonly dir: string) {
    this.git = simpleGit(dir);
  }

  /** The commit on `branch` that carries `Moss-Attempt` trailers, if an earlier delivery already made it. */
  async existingAttempt(branch: string, base: string): Promise<AttemptCommit | undefined> {
    const ref = await this.git.raw(["rev-parse", "--verify", "--quiet", `refs/heads/${branch}`]).catch(() => "");
    const sha = ref.trim();
    if (!sha || sha.startsWith(base)) return undefined;
    return { commit: sha, filesChanged: await this.changedFiles(base, sha) };
  }

  /** A fresh worktree at `base` on a new branch (an aborted earlier try of the same attempt is cleared first). */
  async addWorktree(path: string, branch: string, base: string): Promise<void> {
    if (existsSync(path)) await this.removeWorktree(path);
    await this.git.raw(["worktree", "prune"]);
    await this.git.raw(["worktree", "add", "-f", "-B", branch, path, base]);
  }

  async removeWorktree(path: string): Promise<void> {
    await this.git.raw(["worktree", "remove", "--force", path]).catch(() => undefined);
    rmSync(path, { recursive: true, force: true });
    await this.git.raw(["worktree", "prune"]).catch(() => undefined);
  }

  /** Stages everything the coding agent changed; undefined when it changed nothing. */
  async commitAll(worktree: string, message: string, trailers: Record<string, string>): Promise<AttemptCommit | undefined> {
    const wt = simpleGit(worktree);
    await wt.raw(["add", "-A"]);
    const status = await wt.raw(["status", "--porcelain"]);
    if (!status.trim()) return undefined;
    const args = ["-c", "user.name=Moss", "-c", "user.email=moss@localhost", "commit", "--no-verify", "-m", message];
    for (const [k, v] of Object.entries(trailers)) args.push("--trailer", `${k}: ${v}`);
    await wt.raw(args);
    const commit = (await wt.raw(["rev-parse", "HEAD"])).trim();
    const base = (await wt.raw(["rev-parse", "HEAD~1"])).trim();
    return { commit, filesChanged: await this.changedFiles(base, commit) };
  }

  async diff(base: string, commit: string): Promise<string> {
    return this.git.raw(["diff", "--stat", "--patch", `${base}..${commit}`]);
  }

  async resolve(rev: string): Promise<string> {
    return (await this.git.raw(["rev-parse", "--verify", `${rev}^{commit}`])).trim();
  }

  private async changedFiles(base: string, commit: string): Promise<string[]> {
    const out = await this.git.raw(["diff", "--name-only", `${base}..${commit}`]);
    return out.split("\n").filter(Boolean);
  }
}
