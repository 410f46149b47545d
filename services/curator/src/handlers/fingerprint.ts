import { createHash } from "node:crypto";
import type { FailureEvent } from "@moss/contracts";

/** Version of the grouping algorithm; recorded on every batch so a change of rules is visible. */
export const FINGERPRINT_VERSION = "fp1";

const frameRe = /^\s*at (?:(?<fn>[^\s(]+) \()?(?<file>[^()]+?)(?::\d+){0,2}\)?\s*$/;

/** The top in-app stack frame as `file#function`, library and runtime frames skipped, line numbers dropped. */
export function topFrame(err: FailureEvent["error"]): string | undefined {
  const frames = err.frames?.map((f) => ({ fn: f.function, file: f.file })) ?? parseStack(err.stack);
  const inApp = frames.find((f) => f.file && !/node_modules|^node:|internal\//.test(f.file));
  if (!inApp) return undefined;
  return `${inApp.file!.replace(/^file:\/\//, "")}#${inApp.fn ?? "<anonymous>"}`;
}

function parseStack(stack?: string): Array<{ fn?: string; file?: string }> {
  if (!stack) return [];
  const out: Array<{ fn?: string; file?: string }> = [];
  for (const line of stack.split("\n")) {
    const m = frameRe.exec(line);
    if (m?.groups) out.push({ fn: m.groups["fn"], file: m.groups["file"] });
  }
  return out;
}

/**
 * First fingerprint: error type + top in-app frame + route. An agent-supplied fingerprint wins.
 * Returns the readable fingerprint and a short hash usable in KV keys.
 */
export function fingerprintOf(ev: FailureEvent): { fingerprint: string; key: string } {
  const fingerprint = ev.fingerprint ?? [FINGERPRINT_VERSION, ev.error.type, topFrame(ev.error) ?? "-", ev.route ?? "-"].join("|");
  const key = createHash("sha256").update(fingerprint).digest("hex").slice(0, 20);
  return { fingerprint, key };
}
