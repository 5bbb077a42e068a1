// The run's streams and consumers, created (or checked) by the coordinator before it registers
// the run. JetStream's nanosecond durations and snake_case fields stay in this file.
import { AckPolicy, DeliverPolicy, DiscardPolicy, type JetStreamManager, JetStreamApiError, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import type { TesseraConfig } from '../config/config.ts';
import type { Role, RunNames } from './subjects.ts';

const nanos = (ms: number) => Math.round(ms * 1e6);

export function isNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && (err.code === 404 || /not found/i.test(err.message));
}

async function ensureStream(jsm: JetStreamManager, name: string, subjects: string[], duplicateWindowS: number): Promise<void> {
  const cfg = {
    name, subjects,
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    duplicate_window: nanos(duplicateWindowS * 1000),
    num_replicas: 1,
  };
  try {
    await jsm.streams.info(name);
    await jsm.streams.update(name, { subjects, duplicate_window: cfg.duplicate_window });
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await jsm.streams.add(cfg);
  }
}

export interface WorkConsumerOptions {
  ackWaitS: number;
  maxDeliver: number;
}

async function ensureConsumer(jsm: JetStreamManager, stream: string, name: string, filter: string, o: WorkConsumerOptions): Promise<void> {
  const cfg = {
    durable_name: name,
    filter_subject: filter,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(o.ackWaitS * 1000),
    max_deliver: o.maxDeliver,
    max_ack_pending: -1,
  };
  try {
    await jsm.consumers.info(stream, name);
    await jsm.consumers.update(stream, name, { ack_wait: cfg.ack_wait, max_deliver: cfg.max_deliver });
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await jsm.consumers.add(stream, cfg);
  }
}

/** Both streams and the workers' and merger's consumers, with the run's settings. */
export async function ensureRunStreams(jsm: JetStreamManager, n: RunNames, c: TesseraConfig['nats']): Promise<void> {
  await ensureStream(jsm, n.tasksStream, [n.taskFilter('worker'), n.taskFilter('merger')], c.duplicateWindow);
  await ensureStream(jsm, n.resultsStream, [n.result], c.duplicateWindow);
  for (const role of ['worker', 'merger'] as Role[]) {
    await ensureConsumer(jsm, n.tasksStream, n.consumer(role), n.taskFilter(role), { ackWaitS: c.ackWait, maxDeliver: c.maxDeliver });
  }
}

/**
 * The coordinator's results consumer, made anew: results an earlier coordinator received but
 * never acknowledged come back at once instead of after their ack wait.
 */
export async function freshResultsConsumer(jsm: JetStreamManager, n: RunNames, c: TesseraConfig['nats']): Promise<void> {
  await jsm.consumers.delete(n.resultsStream, n.resultsConsumer).catch((err) => { if (!isNotFound(err)) throw err; });
  await jsm.consumers.add(n.resultsStream, {
    durable_name: n.resultsConsumer,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(c.ackWait * 1000),
    max_ack_pending: -1,
  });
}

/** Remove a finished run's streams (their consumers go with them). */
export async function removeRunStreams(jsm: JetStreamManager, n: RunNames): Promise<void> {
  for (const s of [n.tasksStream, n.resultsStream]) {
    await jsm.streams.delete(s).catch((err) => { if (!isNotFound(err)) throw err; });
  }
}
