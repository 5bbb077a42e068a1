// The coordinator's executor for drive(): publish a task, resolve when its result comes back.
// Owns the transport's side of the coordinator — publishing with retries and de-duplication ids,
// the results consumer, the max-deliveries advisory and the sweep for tasks whose every delivery
// died — so the coordinator's loop is the same drive() as the embedded runner's, and the bench
// can drive a bare scheduler over the broker with it.
import type { NatsConnection } from '@nats-io/nats-core';
import { type JsMsg, type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import {
  type Logger, type TaskRef, type Expect, type RunNames, type ResultMessage, type TesseraConfig,
  TaskError, encode, isNotFound, parseResult, parseTask, taskId,
} from '../../shared/index.ts';
import type { CoordinatorMetrics } from '../metrics.ts';

export interface ExecutorStats {
  published: number;
  /** Results for tasks not in hand (a task that ran twice): ignored. */
  duplicates: number;
  /** Tasks failed because every delivery died with its worker (max deliveries reached). */
  lost: number;
  /** Bad messages dropped. */
  rejected: number;
}

export interface BusExecutorOptions {
  nc: NatsConnection;
  names: RunNames;
  expect: Expect;
  nats: TesseraConfig['nats'];
  /** This coordinator's start number (part of every message id). */
  epoch: number;
  log: Logger;
  signal?: AbortSignal;
  metrics?: CoordinatorMetrics;
}

export interface BusExecutor {
  /** drive()'s executor: publish `t`, resolve with its counters when a worker reports it done. */
  exec(t: TaskRef): Promise<Record<string, number>>;
  /** Acknowledge `t`'s result: call once its done marker is written. */
  ack(t: TaskRef): void;
  /** Tasks published and not yet reported. */
  readonly inFlight: number;
  /** Summed task seconds per kind (`task:<kind>`), from the workers' reports. */
  readonly busy: Record<string, number>;
  readonly stats: ExecutorStats;
  close(): void;
}

interface Waiter {
  resolve: (stats: Record<string, number>) => void;
  reject: (err: unknown) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Parse a message; a bad one is logged, terminated (never redelivered) and counted. */
export function parseOr<T>(m: JsMsg, parse: () => T, log: Logger, stats: { rejected: number }): T | undefined {
  try {
    return parse();
  } catch (err) {
    stats.rejected++;
    log.warn({ subject: m.subject, err: (err as Error).message }, 'message rejected');
    m.term();
    return undefined;
  }
}

/**
 * Results that arrived while no coordinator listened (the results consumer must be fresh, see
 * freshResultsConsumer), handed to `f` one by one and acknowledged after it returns.
 */
export async function drainResults(nc: NatsConnection, names: RunNames, expect: Expect, log: Logger, stats: { rejected: number }, f: (r: ResultMessage) => Promise<void>): Promise<void> {
  const rc = await jetstream(nc).consumers.get(names.resultsStream, names.resultsConsumer);
  for (;;) {
    const batch = await rc.fetch({ max_messages: 512, expires: 1000 });
    let n = 0;
    for await (const m of batch) {
      n++;
      const r = parseOr(m, () => parseResult(m.subject, m.data, expect), log, stats);
      if (!r) continue;
      await f(r);
      m.ack();
    }
    if (n === 0) return;
  }
}

export async function busExecutor(o: BusExecutorOptions): Promise<BusExecutor> {
  const { names, log } = o;
  const js: JetStreamClient = jetstream(o.nc);
  const jsm: JetStreamManager = await jetstreamManager(o.nc);
  const stats: ExecutorStats = { published: 0, duplicates: 0, lost: 0, rejected: 0 };
  const busy: Record<string, number> = {};
  const waiting = new Map<string, Waiter>();
  const toAck = new Map<string, JsMsg>();
  const stops: (() => void)[] = [];
  const aborted = () => o.signal?.aborted ?? false;
  const onAbort = () => {
    for (const w of waiting.values()) w.reject(o.signal!.reason);
    waiting.clear();
  };
  o.signal?.addEventListener('abort', onAbort, { once: true });
  stops.push(() => o.signal?.removeEventListener('abort', onAbort));

  // Results as they come: settle the waiting task. A success is acknowledged by ack(), once its
  // done marker is written, so a coordinator killed in between drains it again at its restart.
  const rc = await js.consumers.get(names.resultsStream, names.resultsConsumer);
  const messages = await rc.consume({ max_messages: 256 });
  stops.push(() => messages.stop());
  void (async () => {
    for await (const m of messages) {
      const r = parseOr(m, () => parseResult(m.subject, m.data, o.expect), log, stats);
      if (!r) continue;
      const id = taskId({ kind: r.kind, index: r.index });
      const w = waiting.get(id);
      if (!w) {
        stats.duplicates++;
        m.ack();
        continue;
      }
      waiting.delete(id);
      busy[`task:${r.kind}`] = (busy[`task:${r.kind}`] ?? 0) + r.ms / 1000;
      o.metrics?.result(r.kind, r.ok, r.ms, r.delivery);
      if (r.ok) {
        toAck.set(id, m);
        w.resolve(r.stats);
      } else {
        m.ack();
        w.reject(new TaskError(id, r.error ?? 'failed'));
      }
    }
  })().catch((err) => log.error({ err }, 'results consumer ended'));

  // A task whose every delivery died with its worker stays in the stream (JetStream keeps it
  // after max_deliver): fail it and delete it, from the advisory or, if that was missed (the
  // coordinator was disconnected), from a periodic sweep.
  const giveUp = async (seq: number, why: string) => {
    let m;
    try {
      m = await jsm.streams.getMessage(names.tasksStream, { seq });
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    if (!m) return;
    await jsm.streams.deleteMessage(names.tasksStream, seq).catch(() => false);
    let t;
    try {
      t = parseTask(m.subject, m.data, o.expect);
    } catch {
      return;
    }
    const id = taskId(t);
    const w = waiting.get(id);
    if (!w) return;
    waiting.delete(id);
    stats.lost++;
    w.reject(new TaskError(id, why));
  };
  const advisories = o.nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${names.tasksStream}.*`);
  stops.push(() => advisories.unsubscribe());
  void (async () => {
    for await (const a of advisories) {
      try {
        const d = a.json<{ stream_seq: number; deliveries: number }>();
        await giveUp(d.stream_seq, `delivered ${d.deliveries} time${d.deliveries === 1 ? '' : 's'} and never finished: its worker died each time (killed, out of memory?)`);
      } catch (err) {
        log.warn({ err }, 'max-deliveries advisory not handled');
      }
    }
  })();
  const sweep = async () => {
    if (waiting.size === 0) return;
    for (const role of ['worker', 'merger'] as const) {
      const ci = await jsm.consumers.info(names.tasksStream, names.consumer(role));
      if (ci.num_pending > 0 || ci.num_ack_pending > 0) return;
    }
    // Nothing deliverable and nothing in a worker's hands, yet task messages remain: each has
    // used up its deliveries.
    for (let seq = 0; ;) {
      let m;
      try {
        m = await jsm.streams.getMessage(names.tasksStream, { seq, next_by_subj: `tessera.${names.run}.task.>` } as never);
      } catch {
        return;
      }
      if (!m) return;
      await giveUp(m.seq, `used all ${o.nats.maxDeliver} deliveries without a result`);
      seq = m.seq + 1;
    }
  };
  const timers = [
    setInterval(() => { void sweep().catch((err) => log.debug({ err }, 'sweep skipped')); }, o.nats.ackWait * 1000),
    setInterval(() => o.metrics?.queue(waiting.size), 2000),
  ];
  stops.push(() => timers.forEach(clearInterval));

  const publish = async (t: TaskRef): Promise<void> => {
    const msg = encode({ v: 1, run: names.run, kind: t.kind, index: t.index, epoch: o.epoch });
    // The same message id on every attempt: a publish whose acknowledgement was lost (broker
    // restart) is not queued twice.
    const msgID = `${taskId(t)}@${o.epoch}`;
    for (let attempt = 0; ; attempt++) {
      try {
        await js.publish(names.task(t.kind as never), msg, { msgID, timeout: 5000 });
        stats.published++;
        return;
      } catch (err) {
        if (aborted()) throw o.signal!.reason;
        if (attempt % 10 === 0) log.warn({ task: taskId(t), err: (err as Error).message }, 'publish failed; retrying');
        await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 5)));
      }
    }
  };

  return {
    exec: (t) => new Promise<Record<string, number>>((resolve, reject) => {
      if (aborted()) return reject(o.signal!.reason);
      const id = taskId(t);
      waiting.set(id, { resolve, reject });
      publish(t).catch((err) => {
        waiting.delete(id);
        reject(err);
      });
    }),
    ack: (t) => {
      const id = taskId(t);
      toAck.get(id)?.ack();
      toAck.delete(id);
    },
    get inFlight() {
      return waiting.size;
    },
    busy,
    stats,
    close: () => {
      for (const stop of stops) stop();
      stops.length = 0;
    },
  };
}
