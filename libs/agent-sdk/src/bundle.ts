import { mkdir } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export interface BundleSdkOptions {
  /** Minify the output. Default false (a vendored file people may read). */
  minify?: boolean;
}

/** The bundle's entry: the SDK without this file, so that esbuild itself is never bundled. */
const ENTRY = fileURLToPath(new URL("./sdk.ts", import.meta.url));

/**
 * Bundle the agent SDK and all its dependencies (NATS client, contracts, zod, tar-stream) into ONE
 * self-contained ESM file for Node 20. An agent repository outside the monorepo vendors that file
 * (e.g. `vendor/moss-agent-sdk.mjs`) and aliases `@moss/agent-sdk` to it in its own build.
 */
export async function bundleSdk(outFile: string, opts: BundleSdkOptions = {}): Promise<void> {
  const esbuild = await import("esbuild");
  const out = resolve(outFile);
  await mkdir(dirname(out), { recursive: true });
  await esbuild.build({
    entryPoints: [ENTRY],
    outfile: out,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    minify: opts.minify ?? false,
    logLevel: "silent",
    legalComments: "inline",
    // Some dependencies are CommonJS and `require()` Node built-ins; an ESM bundle has no `require` of its own.
    banner: {
      js: [
        "// @moss/agent-sdk, bundled with its dependencies by bundleSdk(). Do not edit: regenerate it.",
        'import { createRequire as __mossCreateRequire } from "node:module";',
        "const require = __mossCreateRequire(import.meta.url);",
      ].join("\n"),
    },
  });
}
