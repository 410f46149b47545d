import { runGit } from "./run";
import { resolveCommit } from "./verify";

/**
 * Trailers of commit `sha` in `repo`, by key as written in the commit, each key's values in order
 * (a key repeated in the trailer block gives several values). Continuation lines are unfolded.
 *
 * Reads `git log -1 --format=%(trailers:only,unfold,...)` with explicit separators, so git itself
 * splits key from value (honouring `trailer.separators`) and a value containing ": " stays whole.
 */
export async function commitTrailers(repo: string, sha: string): Promise<Record<string, string[]>> {
  const commit = await resolveCommit(repo, sha);
  const out = await runGit(repo, [
    "log",
    "-1",
    "--no-show-signature",
    "--format=%(trailers:only=true,unfold=true,separator=%x1e,key_value_separator=%x1f)",
    commit,
    "--",
  ]);
  // A Map, then fromEntries: a key such as "constructor" or "__proto__" becomes a plain own property.
  const trailers = new Map<string, string[]>();
  for (const record of out.replace(/\n$/, "").split("\x1e")) {
    const at = record.indexOf("\x1f");
    if (at <= 0) continue;
    const key = record.slice(0, at).trim();
    const value = record.slice(at + 1).trim();
    const values = trailers.get(key);
    if (values) values.push(value);
    else trailers.set(key, [value]);
  }
  return Object.fromEntries(trailers);
}
