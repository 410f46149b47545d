// Operator API: approve, reject, reset, regression pins; the only identity on the bus that may publish consent. Wiring only.
import { bisectStore, findFailures, openStores, regressionStore, reviewStore, timeTravelStore } from "@moss/batch";
import { kvGet } from "@moss/bus";
import { Buckets, ReviewedBaseline } from "@moss/contracts";
import { runService } from "@moss/lifecycle";
import { buildApp } from "./http";
import { readOperators } from "./operators";

await runService({
  name: "operator-api",
  env: process.env,
  async start({ config, log, bus, blob }) {
    const operatorsFile = config.paths.operators;
    const n = readOperators(operatorsFile).operators.length;
    if (n === 0) log.warn("no operators yet: nobody can approve, reject or reset until `moss operator add NAME`", { operatorsFile });
    const stores = await openStores(bus);
    const reviewed = await bus.kv(Buckets.reviewed);
    const review = { reviews: reviewStore(await bus.kv(Buckets.reviews)), baseline: async (agent: string) => (await kvGet(reviewed, agent, ReviewedBaseline))?.value, known: (agent: string) => agent in config.agents };
    return {
      consumers: [],
      http: { app: buildApp({ stores, review, regressions: regressionStore(await bus.kv(Buckets.regressions)), timeTravel: { travels: timeTravelStore(await bus.kv(Buckets.timeTravel)), bisects: bisectStore(await bus.kv(Buckets.bisects)), findFailures: async (id) => findFailures(await bus.kv(Buckets.batches), id), blob }, publish: (def, msg, o) => bus.publish(def, msg, o), operatorsFile, log }), host: config.operatorApi.host, port: config.operatorApi.port },
    };
  },
});
