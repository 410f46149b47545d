// docker-compose.yml, read as compose reads it (YAML merge keys resolved): a service per Moss service, each running
// its own main, with its ops listener bound and a healthcheck on that listener's /readyz. (The stack itself is not
// brought up here: no image can be pulled on this machine.)
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ServiceIdentities } from "@moss/contracts";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

type ComposeService = { command?: string[]; environment?: Record<string, string>; healthcheck?: { test: string[] } };
const compose = parse(readFileSync(join(import.meta.dirname, "..", "..", "docker-compose.yml"), "utf8"), { merge: true }) as { services: Record<string, ComposeService> };

describe("docker-compose.yml", () => {
  it("runs every Moss service, each with its ops listener and a healthcheck on its /readyz", () => {
    for (const id of ServiceIdentities) {
      const s = compose.services[id];
      expect(s, id).toBeDefined();
      expect(s!.command).toEqual([`services/${id}/src/main.ts`]);
      const port = s!.environment?.["MOSS_OPS__PORT"];
      expect(port, id).toMatch(/^\d+$/);
      expect(s!.environment?.["MOSS_OPS__HOST"], id).toBeDefined();
      expect(s!.healthcheck?.test.join(" "), id).toContain(`http://127.0.0.1:${port}/readyz`);
    }
  });
});
