// Curator: failure events in, batches out. Wiring only; decisions live in handlers/.
import { route } from "@moss/bus";
import { Buckets, Consumers, Messages } from "@moss/contracts";
import { runService } from "@moss/lifecycle";
import { extractContext, context } from "@moss/telemetry";
import { handleFailure, sweepExpired, type CuratorDeps } from "./handlers/failure";

await runService({
  name: "curator",
  env: process.env,
  async start({ config, log, bus, blob }) {
    const deps: CuratorDeps = {
      blob,
      batches: await bus.kv(Buckets.batches),
      open: await bus.kv(Buckets.openBatches),
      policy: config.curator,
      log,
      publishReady: async (msg, trace) => {
        await context.with(extractContext(trace), () => bus.publish(Messages.batchReady, msg, { msgId: `batch-ready-${msg.batchId}` }));
      },
    };
    const consumer = await bus.consume(Consumers.curator, [route(Messages.failure, (ev) => handleFailure(ev, deps))]);
    let sweeping = false;
    const timer = setInterval(() => {
      if (sweeping) return;
      sweeping = true;
      sweepExpired(deps)
        .catch((err) => log.warn("sweep failed; next tick retries", { err }))
        .finally(() => (sweeping = false));
    }, Math.min(1_000, Math.max(100, config.curator.batchWindowMs / 4)));
    return { consumers: [consumer], onStop: async () => clearInterval(timer) };
  },
});
