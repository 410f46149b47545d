import { archiveCommit as archive } from "@moss/git";
import { GitArchiveError } from "./errors";

/** Resolves `commit` to a full sha and returns `git archive --format=tar` of it (the build context), through @moss/git. */
export async function archiveCommit(repoDir: string, commit: string): Promise<{ sha: string; tar: Buffer }> {
  try {
    return await archive(repoDir, commit);
  } catch (err) {
    throw new GitArchiveError(repoDir, commit, (err as Error).message, { cause: err });
  }
}
