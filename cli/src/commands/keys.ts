import { join, resolve } from "node:path";
import { ensureSigningKey } from "@moss/git";
import type { Command } from "../shared";

export const keys: Command = {
  name: "keys",
  help: "  keys init [DIR]          create the SSH key that signs Moss commits and its allowed_signers file (default .moss/keys)",
  async run({ args }) {
    const [sub, dir] = args;
    if (sub !== "init") throw new Error("usage: moss keys init [DIR]");
    const k = await ensureSigningKey(resolve(dir ?? join(".moss", "keys")));
    console.log(`signing key ${k.key}\nallowed signers ${k.allowedSigners}\n\nAdd to moss.config.json:\n${JSON.stringify({ rewriter: { signing: { key: k.key, allowedSigners: k.allowedSigners } } }, null, 2)}`);
    return 0;
  },
};
