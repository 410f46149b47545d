import { simpleGit } from "simple-git";
import { GitCommandError } from "./errors";

/** A git command that produces no output for this long is killed (a hung signing prompt, a stuck lock). */
const IDLE_TIMEOUT_MS = 60_000;

/**
 * Runs `git -c <config>... <args>` in `cwd` and returns stdout untrimmed.
 *
 * Any non-zero exit rejects with a GitCommandError carrying stderr + stdout: simple-git's `raw()`
 * on its own resolves when git exits non-zero with an empty stderr (`git commit` with nothing
 * staged, `git verify-commit` on an unsigned commit). `-c` values only live for this process; no
 * config file is written. simple-git also strips ambient `GIT_*` variables from the environment, so
 * a caller's GIT_DIR / GIT_AUTHOR_* cannot redirect or re-attribute the command.
 */
export async function runGit(cwd: string, args: readonly string[], config: readonly string[] = []): Promise<string> {
  let git;
  try {
    git = simpleGit({
      baseDir: cwd,
      config: [...config],
      trimmed: false,
      timeout: { block: IDLE_TIMEOUT_MS },
      // These guards refuse `-c core.hooksPath` / `-c gpg.*.program`; we set them only to fixed safe
      // values (hooks off, the stock ssh-keygen), never to caller input.
      unsafe: { allowUnsafeHooksPath: true, allowUnsafeGpgProgram: true },
      errors(error, result) {
        if (error) return error;
        if (result.exitCode === 0) return undefined;
        return Buffer.concat([...result.stdErr, ...result.stdOut, Buffer.from(`(git exited with code ${result.exitCode})`)]);
      },
    });
  } catch (cause) {
    // simple-git refuses a baseDir that does not exist.
    throw new GitCommandError(args, cwd, `${(cause as Error).message}: ${cwd}`, { cause });
  }
  try {
    return await git.raw([...args]);
  } catch (cause) {
    throw new GitCommandError(args, cwd, (cause as Error).message, { cause });
  }
}
