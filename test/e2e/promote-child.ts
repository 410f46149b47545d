// A promoter in a process of its own, to be killed mid-bake by test/e2e/promotion.test.ts: it promotes one batch of the
// harness's agent (spec in MOSS_TEST_CHILD, JSON) under a lease of its own, and says on stdout when it has started.
import { deploymentStore, leaseStore } from "@moss/batch";
import { createBus } from "@moss/bus";
import { promote } from "@moss/promoter";
import { createRuntime } from "@moss/runtime";
import { silent } from "../helpers/env";
import { promotionDeps, type ChildSpec } from "../helpers/promotion";

const spec = JSON.parse(process.env["MOSS_TEST_CHILD"]!) as ChildSpec & { batchId: string; bakeMs: number; leaseTtlMs: number };
const bus = await createBus({ url: spec.natsUrl, name: "promote-child", logger: silent });
const kv = {
  batches: await bus.kv(spec.buckets.batches),
  deployments: deploymentStore(await bus.kv(spec.buckets.deployments)),
  routes: await bus.kv(spec.buckets.routes),
  stats: await bus.kv(spec.buckets.stats),
};
const deps = promotionDeps({ agent: spec.agent, runtime: createRuntime({ namePrefix: spec.prefix }), statsIntervalMs: spec.statsIntervalMs, kv, publish: async () => undefined });
const batch = (await deps.batches.get(spec.batchId))!;
console.log("promoting");
await promote(batch, "tester", { ...deps, bake: { ...deps.bake, bakeMs: spec.bakeMs }, leases: leaseStore(await bus.kv(spec.buckets.leases), "child-replica"), leaseTtlMs: spec.leaseTtlMs });
console.log("done");
await bus.close();
