/**
 * Every service's operations listener, apart from its own API: `/healthz` (the process is alive), `/readyz` (the bus
 * is connected, its consumers are bound, and the last handler error, if any) and `/metrics` (Prometheus text, from
 * prom-client): messages handled by consumer, kind and outcome, handler durations (each stage's), messages published
 * by kind and outcome (promotions, rollbacks, replay pass rate, verdicts), dead letters, consumer lag, and what the
 * service adds itself (the operator API: batches by state).
 */
import type { BusObserver, Consumption } from "@moss/bus";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import Fastify, { type FastifyInstance } from "fastify";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

export interface Ops {
  /** Where a service registers metrics of its own. */
  readonly registry: Registry;
  /** What the bus tells the metrics. */
  readonly observe: BusObserver;
  /** Once the service started: its connection and consumers, for readiness and lag. */
  started(nc: NatsConnection, jsm: JetStreamManager, consumers: readonly Consumption[]): void;
  /** Readiness ends when the service stops (a balancer stops sending it work). */
  stopping(): void;
  app: FastifyInstance;
}

export function createOps(service: string): Ops {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry, prefix: "moss_" });
  const handled = new Counter({ name: "moss_messages_handled_total", help: "Messages a consumer handled, by outcome: acked, naked (retried), termed (dead-lettered), dropped (moot).", labelNames: ["consumer", "message", "outcome"], registers: [registry] });
  const deadLetters = new Counter({ name: "moss_dead_letters_total", help: "Messages this service dead-lettered, by consumer and error code.", labelNames: ["consumer", "code"], registers: [registry] });
  const duration = new Histogram({
    name: "moss_handler_seconds",
    help: "How long a handler took for a message it acked: each stage's duration (a rewrite, a replay, a promotion's bake).",
    labelNames: ["consumer", "message"],
    buckets: [0.01, 0.05, 0.25, 1, 5, 15, 60, 180, 600, 1800],
    registers: [registry],
  });
  const published = new Counter({ name: "moss_messages_published_total", help: "Messages this service published, by kind and the outcome they name (promoted, rolled-back, passed, failed, rejected...).", labelNames: ["message", "outcome"], registers: [registry] });
  let conn: { nc: NatsConnection; jsm: JetStreamManager; consumers: readonly Consumption[] } | undefined;
  let lastError: { at: string; consumer: string; message: string; code: string } | undefined;
  let stopping = false;
  let connected = true;
  new Gauge({
    name: "moss_consumer_lag",
    help: "Messages waiting for a consumer (not yet delivered), as the server counts them.",
    labelNames: ["consumer"],
    registers: [registry],
    async collect() {
      if (!conn) return;
      for (const c of conn.consumers) {
        const info = await conn.jsm.consumers.info(c.consumer.stream, c.consumer.durable).catch(() => undefined);
        if (info) this.set({ consumer: c.consumer.durable }, info.num_pending);
      }
    },
  });
  const observe: BusObserver = {
    handled(consumer, message, outcome, seconds, code) {
      handled.inc({ consumer, message, outcome });
      if (seconds !== undefined) duration.observe({ consumer, message }, seconds);
      if (outcome === "termed") deadLetters.inc({ consumer, code: code ?? "MOSS_E_INTERNAL" });
      if (outcome === "naked" || outcome === "termed") lastError = { at: new Date().toISOString(), consumer, message, code: code ?? "MOSS_E_INTERNAL" };
    },
    published(message, outcome) {
      published.inc({ message, outcome: outcome ?? "" });
    },
  };
  const app = Fastify({ logger: false });
  app.get("/healthz", async () => ({ ok: true, service, uptimeSeconds: Math.round(process.uptime()) }));
  app.get("/readyz", async (_req, reply) => {
    const bus = !conn ? "starting" : conn.nc.isClosed() ? "closed" : conn.nc.isDraining() ? "draining" : connected ? "connected" : "reconnecting";
    const consumers = (conn?.consumers ?? []).map((c) => ({ consumer: c.consumer.durable, ...c.stats }));
    const ready = bus === "connected" && !stopping;
    return reply.code(ready ? 200 : 503).send({ ready, service, bus, stopping, consumers, ...(lastError ? { lastError } : {}) });
  });
  app.get("/metrics", async (_req, reply) => reply.type(registry.contentType).send(await registry.metrics()));
  return {
    registry,
    observe,
    app,
    started(nc, jsm, consumers) {
      conn = { nc, jsm, consumers };
      // A lost connection is not ready until it is back (nats.js reconnects on its own).
      void (async () => {
        for await (const st of nc.status()) {
          if (st.type === "disconnect") connected = false;
          else if (st.type === "reconnect") connected = true;
        }
      })().catch(() => undefined);
    },
    stopping() {
      stopping = true;
    },
  };
}

/** The ops port of a process: `ops.ports.<service>` (+ n-1 for replica `service#n`), else `ops.port`. */
export function opsPort(ops: { port: number; ports: Readonly<Record<string, number>> }, name: string): number {
  const [service, replica] = name.split("#");
  const base = ops.ports[service!];
  return base === undefined ? ops.port : base + Math.max(0, Number(replica ?? 1) - 1);
}
