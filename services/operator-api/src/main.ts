// Operator API: the one door for operators (reads and actions); the only identity on the bus that may publish consent. Wiring only.
import { bisectStore, findFailures, openStores, regressionStore, reviewStore, timeTravelStore } from "@moss/batch";
import { askQuery, kvGet, kvValues } from "@moss/bus";
import { Buckets, Messages, Queries, ReviewedBaseline, RollbackDone, ServiceStatus } from "@moss/contracts";
import { runService } from "@moss/lifecycle";
import { Gauge } from "prom-client";
import { buildApp, countByState } from "./http";
import { jaegerSpans } from "./jaeger";
import { readOperators } from "./operators";

await runService({
  name: "operator-api",
  env: process.env,
  async start({ config, log, bus, blob, metrics }) {
    const operatorsFile = config.paths.operators;
    const n = readOperators(operatorsFile).operators.length;
    if (n === 0) log.warn("no operators yet: nobody can approve, reject or reset until `moss operator add NAME`", { operatorsFile });
    const stores = await openStores(bus);
    // Batches by state, counted from their records at each scrape (the operator API reads them all anyway).
    new Gauge({
      name: "moss_batches",
      help: "Batches by state, as their records say now.",
      labelNames: ["state"],
      registers: [metrics],
      async collect() {
        this.reset();
        for (const [state, n] of Object.entries(countByState(await stores.batches.list()))) this.set({ state }, n);
      },
    });
    const reviewed = await bus.kv(Buckets.reviewed);
    const review = { reviews: reviewStore(await bus.kv(Buckets.reviews)), baseline: async (agent: string) => (await kvGet(reviewed, agent, ReviewedBaseline))?.value, known: (agent: string) => agent in config.agents };
    // The promoter's rollback outcomes, as published: each request's waiter is registered before the request goes out.
    const waiting = new Map<string, (d: RollbackDone) => void>();
    const sub = bus.nc.subscribe(Messages.rollbackDone.subject, {
      callback: (_err, m) => {
        const d = RollbackDone.safeParse(m.json());
        if (d.success) waiting.get(d.data.requestId)?.(d.data);
      },
    });
    const rollbacks = {
      wait: (requestId: string, ms: number) =>
        new Promise<RollbackDone | undefined>((resolve) => {
          const t = setTimeout(() => (waiting.delete(requestId), resolve(undefined)), ms);
          waiting.set(requestId, (d) => (clearTimeout(t), waiting.delete(requestId), resolve(d)));
        }),
    };
    const servicesKv = await bus.kv(Buckets.services);
    const audit = (url: string) => askQuery(bus.nc, Queries.audit, { method: "GET", url }, { blob: (sha) => blob.get(sha) });
    const services = async () => (await kvValues(servicesKv, ServiceStatus)).map((e) => e.value);
    return {
      onStop: async () => sub.unsubscribe(),
      consumers: [],
      http: { app: buildApp({ stores, review, regressions: regressionStore(await bus.kv(Buckets.regressions)), timeTravel: { travels: timeTravelStore(await bus.kv(Buckets.timeTravel)), bisects: bisectStore(await bus.kv(Buckets.bisects)), findFailures: async (id) => findFailures(await bus.kv(Buckets.batches), id), blob }, publish: (def, msg, o) => bus.publish(def, msg, o), operatorsFile, log, audit, services, rollbacks, ...(config.telemetry.jaegerQuery ? { spans: jaegerSpans(config.telemetry.jaegerQuery) } : {}) }), host: config.operatorApi.host, port: config.operatorApi.port },
    };
  },
});
