import { execFile } from "node:child_process";
import { cp, mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { bundleSdk } from "@moss/agent-sdk";

const run = promisify(execFile);
const HERE = dirname(fileURLToPath(import.meta.url));

/** What goes into the agent's repository, besides a stand-alone package.json and the vendored SDK. */
const COPIED = ["src", "moss", "Dockerfile", ".dockerignore", "README.md"] as const;
/** Where the Dockerfile's esbuild alias expects the SDK. */
export const VENDORED_SDK = "vendor/moss-agent-sdk.mjs";

/**
 * Make a stand-alone git repository of the demo agent in `destDir` (created if missing; must be
 * empty): the agent's files, `vendor/moss-agent-sdk.mjs` from `bundleSdk`, one commit "agent v1"
 * by "Moss Demo <demo@moss.invalid>". Returns the repository path and the commit sha.
 */
export async function prepareAgentRepo(destDir: string): Promise<{ repoDir: string; commit: string }> {
  const repoDir = resolve(destDir);
  await mkdir(repoDir, { recursive: true });
  const existing = await readdir(repoDir);
  if (existing.length > 0) throw new Error(`prepareAgentRepo: ${repoDir} is not empty (${existing.slice(0, 5).join(", ")}); give it a fresh directory`);

  for (const name of COPIED) {
    await cp(join(HERE, name), join(repoDir, name), { recursive: true, filter: (src) => !src.split(/[\\/]/).includes("node_modules") });
  }
  const pkg = JSON.parse(await readFile(join(HERE, "package.json"), "utf8")) as Record<string, unknown>;
  const standalone = {
    name: pkg.name,
    version: pkg.version,
    private: true,
    type: "module",
    description: pkg.description,
    // The SDK is vendored: the repository builds with esbuild alone, like its Dockerfile does.
    scripts: {
      build: "esbuild src/main.ts --bundle --platform=node --format=esm --target=node20 --sourcemap --outfile=dist/main.mjs --alias:@moss/agent-sdk=./vendor/moss-agent-sdk.mjs",
      start: "node --enable-source-maps dist/main.mjs",
    },
  };
  await writeFile(join(repoDir, "package.json"), `${JSON.stringify(standalone, null, 2)}\n`);
  await writeFile(join(repoDir, ".gitignore"), "node_modules/\ndist/\n");
  await bundleSdk(join(repoDir, VENDORED_SDK));

  const git = (...args: string[]) => run("git", args, { cwd: repoDir });
  await git("init", "-q", "-b", "main");
  await git("config", "user.name", "Moss Demo");
  await git("config", "user.email", "demo@moss.invalid");
  await git("config", "commit.gpgsign", "false");
  await git("add", "-A");
  await git("commit", "-q", "-m", "agent v1");
  const { stdout } = await git("rev-parse", "HEAD");
  return { repoDir, commit: stdout.trim() };
}
