// Shared behaviour of the fake coding-agent CLIs: argv dump, stdin, hanging with a grandchild, a fake edit.
const fs = require("node:fs");
const path = require("node:path");
const { spawn } = require("node:child_process");

const mode = process.env.FAKE_MODE || "edit";

/** Value of an option (`--flag value`), or undefined. */
function opt(name) {
  const i = process.argv.indexOf(name);
  return i === -1 ? undefined : process.argv[i + 1];
}

function readStdin() {
  try {
    return fs.readFileSync(0, "utf8");
  } catch {
    return "";
  }
}

/**
 * Common start of every fake: `--version`, the argv dump, and the modes that do not depend on the tool.
 * Calls `then(stdinText)` to go on with the tool's own behaviour.
 */
function start(tool, then) {
  if (process.argv.includes("--version")) {
    console.log(`${tool} 1.2.3-fake`);
    return;
  }
  // "stdin" reads stdin to its end like a tool that waits for piped input: it only gets on when stdin is closed.
  // Big prompts also come on stdin, so the prompt dump needs it too.
  const wantsStdin = mode === "stdin" || process.env.FAKE_READ_STDIN === "1";
  const stdin = wantsStdin ? readStdin() : "";
  if (process.env.FAKE_ARGV_FILE) {
    const mf = opt("--message-file");
    const messageFile = mf ? fs.readFileSync(mf, "utf8") : undefined;
    fs.writeFileSync(process.env.FAKE_ARGV_FILE, JSON.stringify({ argv: process.argv.slice(2), cwd: process.cwd(), stdin, messageFile, env: { MOSS_STAGE: process.env.MOSS_STAGE } }));
  }
  if (mode === "hang") return hang();
  if (mode === "garbage") {
    console.log("Welcome! Press any key to continue...\n<html>not what you asked for</html>");
    return;
  }
  then(stdin);
}

/** Starts a grandchild that would live for ever (its pid in FAKE_PID_FILE), then never exits itself. */
function hang() {
  const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
  if (process.env.FAKE_PID_FILE) fs.writeFileSync(process.env.FAKE_PID_FILE, String(child.pid));
  console.log("thinking...");
  setInterval(() => {}, 1000);
}

/** The fake's edit: one new file in the worktree. */
function edit(tool) {
  fs.writeFileSync(path.join(process.cwd(), "fixed.txt"), `fixed by ${tool}\n`);
  return "fixed.txt";
}

module.exports = { mode, opt, start, edit, readStdin };
