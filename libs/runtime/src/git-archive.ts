import { execFile } from "node:child_process";
import { GitArchiveError } from "./errors";

/** Agent repos are small; this only guards against a runaway archive filling memory. */
const MAX_ARCHIVE_BYTES = 1024 * 1024 * 1024;

/** Resolves `commit` to a full sha and returns `git archive --format=tar` of it (the build context). */
export async function archiveCommit(repoDir: string, commit: string): Promise<{ sha: string; tar: Buffer }> {
  if (commit.startsWith("-")) throw new GitArchiveError(repoDir, commit, "a commit cannot start with '-'");
  const shaOut = await git(repoDir, commit, ["rev-parse", "--verify", "--end-of-options", `${commit}^{commit}`]);
  const sha = shaOut.toString("utf8").trim();
  const tar = await git(repoDir, commit, ["archive", "--format=tar", sha]);
  return { sha, tar };
}

function git(repoDir: string, commit: string, args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(
      "git",
      ["-C", repoDir, ...args],
      { encoding: "buffer", maxBuffer: MAX_ARCHIVE_BYTES, env: { ...process.env, GIT_TERMINAL_PROMPT: "0" } },
      (err, stdout, stderr) => {
        if (err) reject(new GitArchiveError(repoDir, commit, stderr.toString("utf8"), { cause: err }));
        else resolve(stdout);
      },
    );
  });
}
