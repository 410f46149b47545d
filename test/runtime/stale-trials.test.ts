// A replayer that dies mid-trial leaves its container behind; the next one sweeps what is old enough.
import { randomBytes } from "node:crypto";
import Docker from "dockerode";
import { createRuntime } from "@moss/runtime";
import { afterAll, describe, expect, it } from "vitest";

const docker = new Docker();
const prefix = `mt${randomBytes(3).toString("hex")}`;

describe("removeStaleTrials", () => {
  afterAll(async () => {
    const left = await docker.listContainers({ all: true, filters: { label: [`moss.prefix=${prefix}`] } });
    await Promise.all(left.map((c) => docker.getContainer(c.Id).remove({ force: true })));
  });

  it("removes this prefix's trial containers older than the age given, and nothing younger or foreign", async () => {
    const make = (labels: Record<string, string>) => docker.createContainer({ Image: "moss/node-base:latest", Cmd: ["/usr/bin/node", "-e", "0"], Labels: labels });
    await make({ "moss.role": "trial", "moss.prefix": prefix });
    await make({ "moss.role": "live", "moss.prefix": prefix });
    const runtime = createRuntime({ namePrefix: prefix });
    expect(await runtime.removeStaleTrials(60 * 60_000)).toBe(0); // too young
    await new Promise((r) => setTimeout(r, 1_100)); // Docker's creation time has 1 s resolution
    expect(await runtime.removeStaleTrials(0)).toBe(1);
    const left = await docker.listContainers({ all: true, filters: { label: [`moss.prefix=${prefix}`] } });
    expect(left.map((c) => c.Labels["moss.role"])).toEqual(["live"]);
  });
});
