// The demo's agent: a copy of examples/agent made into a git repository of its own (the Moss checkout never changes).
import { cp, mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { bundleSdk } from "@moss/agent-sdk";
import { commitSigned, runGit } from "@moss/git";

/** The example agent the demo copies (read as files; the CLI imports none of its code). */
export const EXAMPLE_AGENT = fileURLToPath(new URL("../../../examples/agent/", import.meta.url));

/** What goes into the agent's repository, besides a stand-alone package.json and the vendored SDK. */
const COPIED = ["src", "moss", "Dockerfile", ".dockerignore", "README.md"] as const;
const DEMO_AUTHOR = { name: "Moss Demo", email: "demo@moss.invalid" };

/** Where the Dockerfile's esbuild alias expects the SDK. */
export const VENDORED_SDK = "vendor/moss-agent-sdk.mjs";
/** Where it expects the `openai` client (bundled from the example's dependency; images build offline). */
export const VENDORED_OPENAI = "vendor/openai.mjs";

/**
 * Make a stand-alone git repository of the demo agent in `destDir` (created if missing; must be
 * empty): the agent's files, `vendor/moss-agent-sdk.mjs` from `bundleSdk`, one commit "agent v1"
 * by "Moss Demo <demo@moss.invalid>". Returns the repository path and the commit sha.
 */
export async function prepareAgentRepo(destDir: string): Promise<{ repoDir: string; commit: string }> {
  const repoDir = await emptyDir(destDir);
  for (const name of COPIED) {
    await cp(join(EXAMPLE_AGENT, name), join(repoDir, name), { recursive: true, filter: (src) => !src.split(/[\\/]/).includes("node_modules") });
  }
  const pkg = JSON.parse(await readFile(join(EXAMPLE_AGENT, "package.json"), "utf8")) as Record<string, unknown>;
  const standalone = {
    name: pkg.name,
    version: pkg.version,
    private: true,
    type: "module",
    description: pkg.description,
    // The SDK is vendored: the repository builds with esbuild alone, like its Dockerfile does.
    scripts: {
      build: "esbuild src/main.ts --bundle --platform=node --format=esm --target=node20 --sourcemap --outfile=dist/main.mjs --alias:@moss/agent-sdk=./vendor/moss-agent-sdk.mjs --alias:openai=./vendor/openai.mjs",
      start: "node --enable-source-maps dist/main.mjs",
    },
  };
  await writeFile(join(repoDir, "package.json"), `${JSON.stringify(standalone, null, 2)}\n`);
  await writeFile(join(repoDir, ".gitignore"), "node_modules/\ndist/\n");
  await bundleSdk(join(repoDir, VENDORED_SDK));
  await bundleOpenAi(join(repoDir, VENDORED_OPENAI));

  return { repoDir, commit: await commitV1(repoDir) };
}

/** The Python example agent the demo can run instead (`moss demo --python`). */
export const PYTHON_EXAMPLE_AGENT = fileURLToPath(new URL("../../../examples/python-agent/", import.meta.url));

/**
 * Make a stand-alone git repository of the Python example agent in `destDir` (empty or missing): its files as they
 * are (standard library only, nothing to vendor), one commit "agent v1". Returns the repository path and the commit.
 */
export async function preparePythonAgentRepo(destDir: string): Promise<{ repoDir: string; commit: string }> {
  const repoDir = await emptyDir(destDir);
  for (const name of ["agent.py", "moss_report.py", "Dockerfile", "README.md", "moss"]) await cp(join(PYTHON_EXAMPLE_AGENT, name), join(repoDir, name), { recursive: true });
  await writeFile(join(repoDir, ".gitignore"), "__pycache__/\n");
  return { repoDir, commit: await commitV1(repoDir) };
}

/** The official `openai` client, as the example agent depends on it, in one minified ESM file. */
async function bundleOpenAi(outFile: string): Promise<void> {
  const esbuild = await import("esbuild");
  await esbuild.build({
    stdin: { contents: 'export { default, OpenAI } from "openai";', resolveDir: EXAMPLE_AGENT, loader: "js" },
    outfile: outFile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    minify: true,
    logLevel: "silent",
    legalComments: "inline",
    banner: { js: "// The openai client (npm `openai`), bundled for the demo agent by moss demo. Do not edit: regenerate it." },
  });
}

async function emptyDir(destDir: string): Promise<string> {
  const repoDir = resolve(destDir);
  await mkdir(repoDir, { recursive: true });
  const existing = await readdir(repoDir);
  if (existing.length > 0) throw new Error(`prepareAgentRepo: ${repoDir} is not empty (${existing.slice(0, 5).join(", ")}); give it a fresh directory`);
  return repoDir;
}

/** `git init` and the one commit "agent v1" by the demo's author. */
async function commitV1(repoDir: string): Promise<string> {
  const git = (...args: string[]) => runGit(repoDir, args);
  await git("init", "-q", "-b", "main");
  // Whoever commits in the demo repository by hand commits as the demo's author, unsigned.
  await git("config", "user.name", DEMO_AUTHOR.name);
  await git("config", "user.email", DEMO_AUTHOR.email);
  await git("config", "commit.gpgsign", "false");
  await git("add", "-A");
  return commitSigned(repoDir, { message: "agent v1", trailers: {}, signing: {}, author: DEMO_AUTHOR });
}
