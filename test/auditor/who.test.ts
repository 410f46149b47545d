// Who is on every audit record: the publishing process as it names itself, held to the grants (NATS let only those
// identities publish the kind, so any other name is recorded as an unverified claim); an agent's own failures are
// the agent's; an operator-only message also names the operator the operator API authenticated.
import { whoOf } from "@moss/auditor";
import { describe, expect, it } from "vitest";

describe("who published a message, as the auditor records it", () => {
  it("a service's claim within its grant is recorded as it names itself", () => {
    expect(whoOf("moss.promotion.outcome.v1", { "Moss-From": "promoter#2@host-b" }, {})).toBe("promoter#2@host-b");
    // batch.verdict is published by the curator and the promoter: either claim holds.
    expect(whoOf("moss.batch.verdict.v1", { "Moss-From": "curator@host-a" }, {})).toBe("curator@host-a");
  });

  it("a claim outside the grants is recorded as unverified, naming who may publish the kind", () => {
    expect(whoOf("moss.promotion.outcome.v1", { "Moss-From": "gateway@host-c" }, {})).toBe("gateway@host-c (unverified: only promoter may publish promotion.outcome.v1)");
  });

  it("an agent's failure (its SDK names no process) is the agent's; with no claim, the kind's only publisher is named", () => {
    expect(whoOf("moss.failure.shop", {}, { id: "f1" })).toBe("agent.shop");
    expect(whoOf("moss.failure.shop", { "moss-from": "curator#1@host-a" }, { id: "f1" })).toBe("curator#1@host-a");
    expect(whoOf("moss.candidate.ready.v1", {}, {})).toBe("rewriter");
  });

  it("an operator's decision names the operator the operator API authenticated", () => {
    expect(whoOf("moss.approval.v1", { "Moss-From": "operator-api@host-a" }, { batchId: "b1", decision: "reject", by: "ana" })).toBe("operator-api@host-a for operator ana");
    // Only an operator-only message is taken to name an operator.
    expect(whoOf("moss.promotion.outcome.v1", { "Moss-From": "promoter@h" }, { approvedBy: "ana", by: "x" })).toBe("promoter@h");
  });
});
