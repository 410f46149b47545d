import { Consumers, RetiredConsumers, StreamDefs, type ConsumerDef, type StreamDef } from "@moss/contracts";
import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError, RetentionPolicy, StorageType, type JetStreamManager } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";

/** A stream or consumer that does not exist yet, by JetStream's API error code. */
const notFound = (err: unknown) =>
  err instanceof JetStreamApiError && (err.code === JetStreamApiCodes.StreamNotFound || err.code === JetStreamApiCodes.ConsumerNotFound);

/** Creates or updates every Moss stream and durable consumer, and deletes retired ones. Idempotent: safe at every service start. */
export async function provision(
  jsm: JetStreamManager,
  streams: readonly StreamDef[] = StreamDefs,
  consumers: readonly ConsumerDef[] = Object.values(Consumers),
  retired: ReadonlyArray<{ stream: string; durable: string }> = RetiredConsumers,
  replicas = 1,
): Promise<void> {
  for (const s of streams) {
    const cfg = {
      name: s.name,
      subjects: [...s.subjects],
      retention: s.retention === "workqueue" ? RetentionPolicy.Workqueue : RetentionPolicy.Limits,
      storage: StorageType.File,
      max_age: nanos(s.maxAgeMs),
      duplicate_window: nanos(s.duplicateWindowMs),
      allow_direct: true,
      num_replicas: replicas,
    };
    try {
      const info = await jsm.streams.info(s.name);
      const same = info.config.subjects?.join(",") === cfg.subjects.join(",") && info.config.max_age === cfg.max_age && info.config.duplicate_window === cfg.duplicate_window && (info.config.num_replicas || 1) === replicas;
      if (!same) await jsm.streams.update(s.name, { subjects: cfg.subjects, max_age: cfg.max_age, duplicate_window: cfg.duplicate_window, num_replicas: replicas });
    } catch (err) {
      if (!notFound(err)) throw err;
      await addIgnoringRace(() => jsm.streams.add(cfg));
    }
  }
  for (const c of consumers) {
    const filters = [...c.filterSubjects];
    const cfg = {
      durable_name: c.durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(c.ackWaitMs),
      // The bus counts deliveries itself and dead-letters at c.maxDeliver: the server never silently drops one.
      max_deliver: -1,
      max_ack_pending: 1_000,
      ...(filters.length === 1 ? { filter_subject: filters[0] } : { filter_subjects: filters }),
    };
    try {
      const info = await jsm.consumers.info(c.stream, c.durable);
      const had = info.config.filter_subjects?.length ? info.config.filter_subjects : info.config.filter_subject ? [info.config.filter_subject] : [];
      // Only what differs is written: a service whose grant lets it read its consumer need not be able to change it.
      const same = info.config.ack_wait === cfg.ack_wait && info.config.max_ack_pending === cfg.max_ack_pending && had.join(",") === filters.join(",");
      if (!same) await jsm.consumers.update(c.stream, c.durable, { ack_wait: cfg.ack_wait, max_ack_pending: cfg.max_ack_pending, ...(filters.length === 1 ? { filter_subject: filters[0] } : { filter_subjects: filters }) });
    } catch (err) {
      if (!notFound(err)) throw err;
      await addIgnoringRace(() => jsm.consumers.add(c.stream, cfg));
    }
  }
  for (const r of retired) await retire(jsm, r.stream, r.durable);
}

/** Deletes a consumer that no service reads any more; one that is already gone is fine. */
async function retire(jsm: JetStreamManager, stream: string, durable: string): Promise<void> {
  try {
    await jsm.consumers.delete(stream, durable);
  } catch (err) {
    if (!notFound(err)) throw err;
  }
}

/** Two services starting at once both see "not found" and both add: the loser's identical add is fine. */
async function addIgnoringRace(add: () => Promise<unknown>): Promise<void> {
  try {
    await add();
  } catch (err) {
    if (!/already in use|already exists/i.test((err as Error)?.message ?? "")) throw err;
  }
}
