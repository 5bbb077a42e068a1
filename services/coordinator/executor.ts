// The coordinator's executor for drive(): publish a task, resolve when its result comes back
// (quick tasks of one kind go out several to a message, see batchSize and BATCH_HOLD_MS). Owns
// the transport's side of the coordinator — publishing with retries and de-duplication ids, the
// results consumer, the max-deliveries advisory and the sweep for tasks whose every delivery
// died — so the coordinator's loop is the same drive() as the embedded runner's, and the bench
// can drive a bare scheduler over the broker with it.
import type { NatsConnection } from '@nats-io/nats-core';
import { type JsMsg, type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import {
  type Logger, type Role, type TaskKind, type TaskRef, type Expect, type RunNames, type TaskOutcome, type TesseraConfig, type Vec3,
  MAX_BATCH, TaskError, encode, roleOf, isNotFound, parseResult, parseTask, taskId,
} from '../../shared/index.ts';
import type { CoordinatorMetrics } from '../metrics.ts';

export interface ExecutorStats {
  /** Tasks published. */
  published: number;
  /** Task messages published (several quick tasks travel in one, see nats.batch). */
  messages: number;
  /** Results for tasks not in hand (a task that ran twice): ignored. */
  duplicates: number;
  /** Tasks failed because every delivery died with its worker (max deliveries reached). */
  lost: number;
  /** Bad messages dropped. */
  rejected: number;
  /** Processes that reported results, per role (distinct `worker` fields: several mergers share the border tasks). */
  senders: Record<Role, number>;
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
  kind: string;
  resolve: (stats: Record<string, number>) => void;
  reject: (err: unknown) => void;
  /** Published (counted in its kind's tasks out). */
  sent?: boolean;
}

/**
 * How long a part-filled message of a kind whose tasks are out waits for more tasks (the
 * results of those in flight free the slots that fill it): long beside a quick task's round trip,
 * nothing beside the second of work a full message carries.
 */
export const BATCH_HOLD_MS = 20;

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
 * freshResultsConsumer), handed to `f` task by task; each message is acknowledged after `f`
 * returned for all of its tasks.
 */
export async function drainResults(nc: NatsConnection, names: RunNames, expect: Expect, log: Logger, stats: { rejected: number }, f: (kind: string, r: TaskOutcome) => Promise<void>): Promise<void> {
  const rc = await jetstream(nc).consumers.get(names.resultsStream, names.resultsConsumer);
  for (;;) {
    const batch = await rc.fetch({ max_messages: 512, expires: 1000 });
    let n = 0;
    for await (const m of batch) {
      n++;
      const r = parseOr(m, () => parseResult(m.subject, m.data, expect), log, stats);
      if (!r) continue;
      for (const x of r.results) await f(r.kind, x);
      m.ack();
    }
    if (n === 0) return;
  }
}

/**
 * How many tasks of a kind go in one message: about `batchSeconds` of work at the kind's mean
 * task time measured so far (one until a result came back), at most `nats.batch` and at most
 * inFlight / 8, so that at least eight messages are out for the workers to share.
 */
export function batchSize(meanMs: number | undefined, n: Pick<TesseraConfig['nats'], 'batch' | 'batchSeconds' | 'inFlight'>): number {
  const cap = Math.max(1, Math.min(n.batch, MAX_BATCH, Math.floor(n.inFlight / 8)));
  if (meanMs === undefined) return 1;
  return Math.max(1, Math.min(cap, Math.floor((n.batchSeconds * 1000) / Math.max(meanMs, 1e-3))));
}

export async function busExecutor(o: BusExecutorOptions): Promise<BusExecutor> {
  const { names, log } = o;
  const js: JetStreamClient = jetstream(o.nc);
  const jsm: JetStreamManager = await jetstreamManager(o.nc);
  const stats: ExecutorStats = { published: 0, messages: 0, duplicates: 0, lost: 0, rejected: 0, senders: { worker: 0, merger: 0 } };
  // One entry per process that ever reported (a handful), never per task.
  const senders = { worker: new Set<string>(), merger: new Set<string>() };
  const busy: Record<string, number> = {};
  const waiting = new Map<string, Waiter>();
  // Tasks published and not yet settled, per kind.
  const out = new Map<string, number>();
  const take = (id: string): Waiter | undefined => {
    const w = waiting.get(id);
    if (!w) return undefined;
    waiting.delete(id);
    if (w.sent) out.set(w.kind, out.get(w.kind)! - 1);
    return w;
  };
  // A result message is acknowledged once every successful task in it has its done marker
  // (ack() per task): a coordinator killed in between drains it again at its restart.
  const toAck = new Map<string, { m: JsMsg; left: number }>();
  const settle = (pending: { m: JsMsg; left: number }) => {
    if (--pending.left === 0) pending.m.ack();
  };
  // Mean task milliseconds per kind, from the results (sizes the messages, see batchSize).
  const mean = new Map<string, { ms: number; n: number }>();
  const measured = (kind: string, ms: number) => {
    const e = mean.get(kind) ?? { ms: 0, n: 0 };
    // A running mean over the first 64 tasks, then exponential: follows a kind whose tasks get
    // slower (empty chunks first, tissue later) without one outlier resizing the messages.
    e.n = Math.min(e.n + 1, 64);
    e.ms += (ms - e.ms) / e.n;
    mean.set(kind, e);
  };
  const stops: (() => void)[] = [];
  const aborted = () => o.signal?.aborted ?? false;
  const onAbort = () => {
    for (const w of waiting.values()) w.reject(o.signal!.reason);
    waiting.clear();
  };
  o.signal?.addEventListener('abort', onAbort, { once: true });
  stops.push(() => o.signal?.removeEventListener('abort', onAbort));

  const rc = await js.consumers.get(names.resultsStream, names.resultsConsumer);
  const messages = await rc.consume({ max_messages: 256 });
  stops.push(() => messages.stop());
  void (async () => {
    for await (const m of messages) {
      const r = parseOr(m, () => parseResult(m.subject, m.data, o.expect), log, stats);
      if (!r) continue;
      const role = roleOf(r.kind as TaskKind);
      if (!senders[role].has(r.worker)) {
        senders[role].add(r.worker);
        stats.senders[role] = senders[role].size;
      }
      const pending = { m, left: r.results.length };
      for (const x of r.results) {
        const id = taskId({ kind: r.kind, index: x.index });
        const w = take(id);
        if (!w) {
          stats.duplicates++;
          settle(pending);
          continue;
        }
        busy[`task:${r.kind}`] = (busy[`task:${r.kind}`] ?? 0) + x.ms / 1000;
        measured(r.kind, x.ms);
        o.metrics?.result(r.kind, x.ok, x.ms, r.delivery);
        if (x.ok) {
          toAck.set(id, pending);
          w.resolve(x.stats);
        } else {
          settle(pending);
          w.reject(new TaskError(id, x.error ?? 'failed'));
        }
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
    for (const index of t.indices) {
      const id = taskId({ kind: t.kind, index });
      const w = take(id);
      if (!w) continue;
      stats.lost++;
      w.reject(new TaskError(id, why));
    }
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

  const publish = async (kind: string, indices: Vec3[]): Promise<void> => {
    const msg = encode({ v: 1, run: names.run, kind, indices, epoch: o.epoch });
    // The same message id on every attempt: a publish whose acknowledgement was lost (broker
    // restart) is not queued twice. A task is in one message per epoch, so its first task names it.
    const msgID = `${taskId({ kind, index: indices[0] })}+${indices.length}@${o.epoch}`;
    for (let attempt = 0; ; attempt++) {
      try {
        await js.publish(names.task(kind as never), msg, { msgID, timeout: 5000 });
        stats.published += indices.length;
        stats.messages++;
        return;
      } catch (err) {
        if (aborted()) throw o.signal!.reason;
        if (attempt % 10 === 0) log.warn({ task: taskId({ kind, index: indices[0] }), tasks: indices.length, err: (err as Error).message }, 'publish failed; retrying');
        await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 5)));
      }
    }
  };
  // Tasks handed over in one turn of the event loop (drive() hands out every free slot at once)
  // go out per kind, batchSize() to a message, when the turn ends. A part-filled message waits
  // up to BATCH_HOLD_MS while tasks of its kind are out: their results free the slots that fill
  // it (without the wait, one result freeing one slot would send one task, for ever).
  const queued = new Map<string, { indices: Vec3[]; since: number }>();
  let flushAt = Infinity;
  let timer: NodeJS.Timeout | undefined;
  const fail = (kind: string, indices: Vec3[], err: unknown) => {
    for (const index of indices) take(taskId({ kind, index }))?.reject(err);
  };
  const send = (kind: string, indices: Vec3[]) => {
    for (const index of indices) waiting.get(taskId({ kind, index }))!.sent = true;
    out.set(kind, (out.get(kind) ?? 0) + indices.length);
    publish(kind, indices).catch((err) => fail(kind, indices, err));
  };
  const flush = () => {
    timer = undefined;
    flushAt = Infinity;
    // Aborted: their waiters were rejected (onAbort); nothing more goes out.
    if (aborted()) return queued.clear();
    const now = performance.now();
    for (const [kind, q] of queued) {
      const size = batchSize(mean.get(kind)?.ms, o.nats);
      let i = 0;
      for (; q.indices.length - i >= size; i += size) send(kind, q.indices.slice(i, i + size));
      const rest = q.indices.length - i;
      if (rest > 0 && (now - q.since >= BATCH_HOLD_MS || !out.get(kind))) {
        send(kind, q.indices.slice(i));
        i = q.indices.length;
      }
      if (i === q.indices.length) queued.delete(kind);
      else {
        q.indices = q.indices.slice(i);
        schedule(q.since + BATCH_HOLD_MS - now);
      }
    }
  };
  const schedule = (ms: number) => {
    const at = performance.now() + Math.max(0, ms);
    if (at >= flushAt) return;
    clearTimeout(timer);
    flushAt = at;
    timer = setTimeout(flush, Math.max(0, ms));
  };
  stops.push(() => clearTimeout(timer));

  return {
    exec: (t) => new Promise<Record<string, number>>((resolve, reject) => {
      if (aborted()) return reject(o.signal!.reason);
      waiting.set(taskId(t), { kind: t.kind, resolve, reject });
      const q = queued.get(t.kind);
      if (q) q.indices.push(t.index);
      else queued.set(t.kind, { indices: [t.index], since: performance.now() });
      schedule(0);
    }),
    ack: (t) => {
      const id = taskId(t);
      const pending = toAck.get(id);
      toAck.delete(id);
      if (pending) settle(pending);
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
