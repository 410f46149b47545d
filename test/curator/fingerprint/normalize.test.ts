import { describe, expect, it } from "vitest";
import { normalizeMessage, normalizeRoute } from "@moss/curator";

describe("normalizeMessage", () => {
  it.each([
    // numbers, including ids glued to a prefix and units
    ["user 12345 not found (took 1534ms)", "user <num> not found (took <num>ms)"],
    ["order ORD-998877 and user_4411 failed", "order ORD-<num> and user_<num> failed"],
    ["Unexpected token } in JSON at position 42", "Unexpected token } in JSON at position <num>"],
    // uuids and hex ids (>= 8 hex chars with a digit, or 0x...)
    ["session 550e8400-e29b-41d4-a716-446655440000 expired", "session <uuid> expired"],
    ["object 65f1c2a9e4b0d3f7a1c2e9b8 missing at 0x7ffd5fbff8a0", "object <hex> missing at <hex>"],
    // long random ids (nanoid, provider request ids)
    ["completion chatcmpl-9XkLmN2pQrStUvWx7Yz invalid", "completion <id> invalid"],
    // quoted values, all three quote styles; apostrophes inside words are not quotes
    ["Cannot read properties of undefined (reading 'content')", "Cannot read properties of undefined (reading <str>)"],
    ['Unknown tool "weather_v2" in `plan`', "Unknown tool <str> in <str>"],
    ["can't find user's file 'notes.md'", "can't find user's file <str>"],
    // file paths: absolute, Windows, relative
    ["ENOENT: no such file or directory, open /app/data/sessions/abc.json", "ENOENT: no such file or directory, open <path>"],
    ["cannot load C:\\Users\\bob\\agent\\tools.ts", "cannot load <path>"],
    ["cannot import ./rel/x.ts or src/tools/search.ts", "cannot import <path> or <path>"],
    // timestamps: ISO 8601, common log format, HTTP date, syslog, Date#toString, bare times
    ["deadline 2025-03-01T10:00:00.123Z passed", "deadline <ts> passed"],
    ["at 2025-03-01 10:00:00+02:00 and 2025/03/01 10:00:00", "at <ts> and <ts>"],
    ["[10/Oct/2000:13:55:36 -0700] GET", "[<ts>] GET"],
    ["expires Tue, 15 Nov 1994 08:12:31 GMT", "expires <ts>"],
    ["Oct  3 13:55:36 host agent: boom", "<ts> host agent: boom"],
    ["Tue Nov 15 1994 08:12:31 GMT+0100 (Central European Standard Time) passed", "<ts> passed"],
    // emails and IPs
    ["no mailbox for alice.smith+bot@example.co.uk", "no mailbox for <email>"],
    ["connect ECONNREFUSED 10.0.3.17:5432", "connect ECONNREFUSED <ip>:<num>"],
    ["connect ECONNREFUSED ::1:5432", "connect ECONNREFUSED <ip>"],
    // URLs: query strings, ids in the path and credentials masked; host and path names kept
    [
      "GET https://api.example.com/v1/users/42/items/550e8400-e29b-41d4-a716-446655440000?token=abc&page=2 failed.",
      "GET https://api.example.com/v1/users/<num>/items/<uuid>?<query> failed.",
    ],
    ["postgres://admin:s3cret@10.0.0.5:5432/app refused", "postgres://<cred>@<ip>:<num>/app refused"],
    // status codes are the root cause, not noise
    ["Request failed with status code 429", "Request failed with status code 429"],
    ["HTTP 503 after 3 retries", "HTTP 503 after <num> retries"],
    // words with digits, MIME types and ratios are not ids or paths
    ["utf8 sha256 Float64Array v2 application/json and/or 1/2", "utf8 sha256 Float64Array v2 application/json and/or <num>/<num>"],
    // whitespace collapses
    ["  multi\n  line\tmessage  ", "multi line message"],
  ])("%j → %j", (input, expected) => {
    expect(normalizeMessage(input)).toBe(expected);
  });

  it("maps occurrences of one failure to one string", () => {
    const a = normalizeMessage("Tool 'search' timed out after 30000ms for session 3f2a9c81b7d04e6f at 2025-03-01T10:00:00Z");
    const b = normalizeMessage("Tool 'lookup' timed out after 12000ms for session 77aa01bc99de4410 at 2025-03-02T11:12:13Z");
    expect(a).toBe(b);
  });

  it("stays linear on adversarial input", () => {
    const evil = ["a".repeat(10_000), "a.".repeat(5_000), "'".repeat(10_000), "1:".repeat(5_000), "a/".repeat(5_000), "x@".repeat(5_000)];
    const started = performance.now();
    for (const s of evil) normalizeMessage(s);
    // Generous bound: quadratic behaviour on 10k chars takes seconds, linear takes well under a millisecond each.
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});

describe("normalizeRoute", () => {
  it("masks id segments and drops the query", () => {
    expect(normalizeRoute("/v1/users/42/sessions/550e8400-e29b-41d4-a716-446655440000?x=1")).toBe("/v1/users/<num>/sessions/<uuid>");
    expect(normalizeRoute("/v1/chat")).toBe("/v1/chat");
    expect(normalizeRoute("book-flight")).toBe("book-flight");
  });
});
