import { join } from "node:path";
import { InvalidCommitInputError, commitSigned, commitTrailers, ensureSigningKey, verifyCommit } from "@moss/git";
import { describe, expect, it } from "vitest";
import { git, isolatedHome, newRepo, stage, thrown } from "./helpers";

const tmp = isolatedHome();

describe("commit trailers", () => {
  it("round-trip the trailers Moss writes, in a signed commit whose message is kept", async () => {
    const keys = await ensureSigningKey(join(tmp.root(), "keys"));
    const repo = newRepo(tmp.root());
    const trailers = {
      "Moss-Batch": "01JD3K4B5C6D7E8F9G0H1J2K3M",
      "Moss-Attempt": "2",
      "Moss-Failures": "fp-3f2a9c, fp-77b0e1, fp-c0ffee",
      "Moss-Stage-Verdicts": "lint=pass, unit=pass, replay: 12/12 passed",
    };
    const message = "moss: handle empty input in parser\n\n# not a comment: kept verbatim\nThe parser crashed on an empty body.";
    const sha = await commitSigned(repo, { message, trailers, signing: { key: keys.key } });

    expect(await commitTrailers(repo, sha)).toEqual({
      "Moss-Batch": ["01JD3K4B5C6D7E8F9G0H1J2K3M"],
      "Moss-Attempt": ["2"],
      "Moss-Failures": ["fp-3f2a9c, fp-77b0e1, fp-c0ffee"],
      "Moss-Stage-Verdicts": ["lint=pass, unit=pass, replay: 12/12 passed"],
    });
    // What git shows a human: the message, a blank line, then the trailer block in insertion order.
    expect(git(repo, "log", "-1", "--format=%B", sha).trim()).toBe(
      `${message}\n\n` +
        "Moss-Batch: 01JD3K4B5C6D7E8F9G0H1J2K3M\n" +
        "Moss-Attempt: 2\n" +
        "Moss-Failures: fp-3f2a9c, fp-77b0e1, fp-c0ffee\n" +
        "Moss-Stage-Verdicts: lint=pass, unit=pass, replay: 12/12 passed",
    );
    // Trailers are inside the signed content.
    expect((await verifyCommit(repo, sha, keys.allowedSigners)).status).toBe("good");
  });

  it("a key repeated in the block gives all its values; a commit without trailers gives {}", async () => {
    const repo = newRepo(tmp.root());
    const plain = await commitSigned(repo, { message: "plain", trailers: {}, signing: {} });
    expect(await commitTrailers(repo, plain)).toEqual({});

    stage(repo, "b.txt", "b\n");
    git(repo, "-c", "user.name=T", "-c", "user.email=t@x", "commit", "-q", "-m", "hand-made\n\nMoss-Failure: fp-1\nMoss-Failure: fp-2\nConstructor: odd key");
    expect(await commitTrailers(repo, "HEAD")).toEqual({ "Moss-Failure": ["fp-1", "fp-2"], Constructor: ["odd key"] });
  });

  it("refuses trailers git cannot carry as one line, before committing", async () => {
    const repo = newRepo(tmp.root());
    const bad: Array<Record<string, string>> = [
      { "Moss Batch": "b-1" },
      { "Moss-Batch:": "b-1" },
      { "Moss-Failures": "fp-1\nfp-2" },
      { "Moss-Attempt": "  " },
    ];
    for (const trailers of bad) {
      const err = await thrown(commitSigned(repo, { message: "m", trailers, signing: {} }));
      expect(err).toBeInstanceOf(InvalidCommitInputError);
      expect(err).toMatchObject({ code: "MOSS_E_INVALID_COMMIT_INPUT", retryable: false });
    }
    expect(await thrown(commitSigned(repo, { message: " \n", trailers: {}, signing: {} }))).toBeInstanceOf(InvalidCommitInputError);
    expect(() => git(repo, "rev-parse", "--verify", "-q", "HEAD")).toThrow();
  });
});
