import { parseArgs } from "node:util";
import { COMMANDS } from "./commands";
import { loadCliConfig, type Options } from "./shared";

const HELP = `moss — lets a deployed agent fix its own code, safely

Usage: moss <command> [options]

${COMMANDS.map((c) => c.help).join("\n")}

Config: the JSON file in MOSS_CONFIG (or --config FILE), plus MOSS_* env overrides.`;

/** Options every command takes. */
const GLOBAL: Options = { config: { type: "string" }, help: { type: "boolean", short: "h" } };

/** `moss <command> [options]`: resolves with the exit code; a failure throws, and bin/moss.mjs prints it. */
export async function main(argv: string[]): Promise<number> {
  // The command is the first argument that is not a global option (or its value).
  const rest = [...argv];
  const globals: string[] = [];
  while (rest[0]?.startsWith("-")) {
    const a = rest.shift()!;
    globals.push(a);
    if (a === "--config" && rest.length) globals.push(rest.shift()!);
  }
  const name = rest.shift();
  if (!name || globals.includes("--help") || globals.includes("-h")) {
    console.log(HELP);
    return name || globals.length ? 0 : 2;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    console.error(`unknown command '${name}'\n\n${HELP}`);
    return 2;
  }
  const { values, positionals } = parseArgs({ args: [...globals, ...rest], allowPositionals: true, options: { ...GLOBAL, ...cmd.options } });
  if (values["help"]) {
    console.log(cmd.help);
    return 0;
  }
  let config: ReturnType<typeof loadCliConfig> | undefined;
  return cmd.run({ args: positionals, values, config: () => (config ??= loadCliConfig(values["config"] as string | undefined)) });
}
