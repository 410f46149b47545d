import { describe, expect, it } from "vitest";
import { DEFAULT_LIBRARY_PATTERNS, FingerprintConfig } from "@moss/config";

const messages = (input: unknown) => {
  const res = FingerprintConfig.safeParse(input);
  return res.success ? [] : res.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
};

describe("FingerprintConfig", () => {
  it("fills every default", () => {
    expect(FingerprintConfig.parse({})).toEqual({
      frames: 3,
      messageMaxLength: 300,
      appRoots: [],
      rootPatterns: [expect.stringContaining("usr/src/app|usr/app|app|")],
      inApp: { include: [], exclude: [], builtinLibraries: true },
      signals: { route: true, tags: ["tool", "stage"] },
      rules: [],
    });
    expect(DEFAULT_LIBRARY_PATTERNS).toContain("(?:^|/)node_modules/");
  });

  it("names the rule and the field of an invalid regex", () => {
    expect(
      messages({
        rules: [
          { errorType: "^TypeError$", fingerprint: "ok" },
          { message: "timeout (after", fingerprint: "x" },
          { tags: { tool: "[search" }, extend: ["y"] },
        ],
      }),
    ).toEqual([
      expect.stringMatching(/^rules\.1\.message: rules\[1\]\.message is not a valid regular expression \(Invalid regular expression: .*Unterminated group\)$/),
      expect.stringMatching(/^rules\.2\.tags\.tool: rules\[2\]\.tags\.tool is not a valid regular expression/),
    ]);
  });

  it("rejects invalid in-app and root patterns", () => {
    expect(messages({ inApp: { include: ["("] }, rootPatterns: ["*"] })).toEqual([
      expect.stringMatching(/^rootPatterns\.0: not a valid regular expression/),
      expect.stringMatching(/^inApp\.include\.0: not a valid regular expression/),
    ]);
  });

  it("requires exactly one action per rule and rejects unknown keys", () => {
    expect(messages({ rules: [{ errorType: "x" }] })).toEqual(["rules.0: rules[0]: give exactly one action, `fingerprint` or `extend`"]);
    expect(messages({ rules: [{ errorType: "x", fingerprint: "a", extend: ["b"] }] })).toEqual([
      "rules.0: rules[0]: give exactly one action, `fingerprint` or `extend`",
    ]);
    // a typo must not silently turn a condition into "match everything"
    expect(messages({ rules: [{ errortype: "x", fingerprint: "a" }] })).toEqual([expect.stringMatching(/^rules\.0: Unrecognized key: "errortype"/)]);
  });
});
