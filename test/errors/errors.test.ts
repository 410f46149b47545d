import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { AllCodes, Codes, MossError, causeText, createError, errorCode, isTerminal } from "@moss/errors";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Product source files (no tests, no dependencies, no generated schemas). */
function sources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (name === "node_modules" || name === "schemas" || name.startsWith(".")) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) sources(p, out);
    else if (/\.(ts|mjs|js|py)$/.test(name)) out.push(p);
  }
  return out;
}

describe("MossError", () => {
  it("carries a stable code from the registry, its HTTP status, whether retrying helps, and its cause", () => {
    const cause = new Error("ECONNREFUSED");
    const err = new MossError(Codes.BLOB_NOT_FOUND, "snapshot blob abc is missing; re-send the failure", { cause });
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ name: "MossError", code: "MOSS_E_BLOB_NOT_FOUND", httpStatus: 404, retryable: false, cause, message: "snapshot blob abc is missing; re-send the failure" });
    expect(err.stack).toContain("errors.test.ts");
    // A subclass may decide per instance (a Docker 4xx is terminal, a 5xx is not).
    expect(new MossError(Codes.DOCKER, "x", { retryable: false }).retryable).toBe(false);
    expect(new MossError(Codes.DOCKER, "x").retryable).toBe(true);
  });

  it("createError makes a named class for a code whose errors carry a message and a cause", () => {
    const ConfigBroken = createError("ConfigBroken", Codes.CONFIG);
    const cause = new Error("EACCES");
    const err = new ConfigBroken("cannot read moss.config.json", { cause });
    expect(err).toBeInstanceOf(ConfigBroken);
    expect(err).toBeInstanceOf(MossError);
    expect(ConfigBroken.name).toBe("ConfigBroken");
    expect(err).toMatchObject({ name: "ConfigBroken", code: "MOSS_E_CONFIG", httpStatus: 400, retryable: false, cause, message: "cannot read moss.config.json" });
  });

  it("only an explicit retryable:false is terminal; unknown errors are retried", () => {
    expect(isTerminal(new MossError(Codes.BATCH_NOT_FOUND, "x"))).toBe(true);
    expect(isTerminal(new MossError(Codes.CAS_CONFLICT, "x"))).toBe(false);
    expect(isTerminal({ retryable: false })).toBe(true);
    expect(isTerminal(new Error("socket hang up"))).toBe(false);
    expect(isTerminal("string thrown")).toBe(false);
    expect(isTerminal(null)).toBe(false);
  });

  it("errorCode keeps Moss codes and maps everything else to MOSS_E_INTERNAL", () => {
    expect(errorCode(new MossError(Codes.BATCH_NOT_FOUND, "x"))).toBe("MOSS_E_BATCH_NOT_FOUND");
    expect(errorCode(Object.assign(new Error("x"), { code: "ENOENT" }))).toBe("MOSS_E_INTERNAL");
    expect(errorCode({ code: 42 })).toBe("MOSS_E_INTERNAL");
    expect(errorCode(undefined)).toBe("MOSS_E_INTERNAL");
  });

  it("causeText names a system error's code once, and says so when there is no cause", () => {
    expect(causeText(Object.assign(new Error("connect refused"), { code: "ECONNREFUSED" }))).toBe("ECONNREFUSED: connect refused");
    expect(causeText(Object.assign(new Error("EEXIST: file already exists"), { code: "EEXIST" }))).toBe("EEXIST: file already exists");
    expect(causeText(new MossError(Codes.CONFIG, " bad config "))).toBe("bad config");
    expect(causeText(undefined)).toBe("unknown cause");
    expect(causeText("plain")).toBe("plain");
  });
});

describe("the registry of codes", () => {
  const codes = AllCodes.map((c) => c.code);

  it("holds every code once, each with a status, a package and what to do", () => {
    expect(new Set(codes).size).toBe(codes.length);
    expect(Object.keys(Codes)).toHaveLength(codes.length);
    for (const [key, c] of Object.entries(Codes)) {
      expect(c.code, key).toBe(`MOSS_E_${key}`);
      expect(c.status, c.code).toBeGreaterThanOrEqual(400);
      expect(c.status, c.code).toBeLessThan(600);
      expect(c.raisedBy, c.code).toMatch(/^(any|@moss\/[a-z-]+)$/);
      expect(c.doc.length, c.code).toBeGreaterThan(20);
    }
  });

  it("documents every code in libs/errors/README.md, with its status and whether it is retried", () => {
    const readme = readFileSync(join(ROOT, "libs/errors/README.md"), "utf8");
    const rows = new Map(
      readme
        .split("\n")
        .filter((l) => l.startsWith("| `MOSS_E_"))
        .map((l) => {
          const cells = l.split("|").map((c) => c.trim());
          return [cells[1]!.replaceAll("`", ""), cells] as const;
        }),
    );
    expect([...rows.keys()].sort()).toEqual([...codes].sort());
    for (const c of AllCodes) {
      const cells = rows.get(c.code)!;
      expect(cells[2], c.code).toBe(String(c.status));
      expect(cells[3], c.code).toBe(c.retryable ? "yes" : "no");
      expect(cells[4], c.code).toBe(c.raisedBy.replace(/^@moss\//, ""));
      expect(cells[5], c.code).toBe(c.doc);
    }
  });

  it("is the only place a code is spelled: every MOSS_E_ in the product's source is one of the registry's", () => {
    const registry = join(ROOT, "libs/errors/src/codes.ts");
    const strays: string[] = [];
    for (const dir of ["libs", "services", "cli", "examples"]) {
      for (const file of sources(join(ROOT, dir))) {
        if (file === registry) continue;
        for (const m of readFileSync(file, "utf8").matchAll(/MOSS_E_[A-Z0-9_]+/g)) {
          if (!codes.includes(m[0] as (typeof codes)[number])) strays.push(`${relative(ROOT, file)}: ${m[0]}`);
        }
      }
    }
    expect(strays).toEqual([]);
  });
});
