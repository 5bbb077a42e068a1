// The batching publisher: tasks handed over in one turn of the event loop (drive() hands out
// every free slot at once) go out per kind, batchSize() to a message, when the turn ends. A
// part-filled message waits up to BATCH_HOLD_MS while tasks of its kind are out: their results
// free the slots that fill it (without the wait, one result freeing one slot would send one
// task, for ever).
import type { JetStreamClient } from '@nats-io/jetstream';
import { type TaskRef, type Vec3, backoff, encode, sleep, taskId } from '../../shared/index.ts';
import { BATCH_HOLD_MS, type BusExecutorOptions, type ExecutorStats, type InHand, batchSize } from './in-hand.ts';

export interface Publisher {
  add(t: TaskRef): void;
  stop(): void;
}

export function batchingPublisher(o: BusExecutorOptions & { js: JetStreamClient; hand: InHand; stats: ExecutorStats; meanMs: (kind: string) => number | undefined }): Publisher {
  const { names, hand, stats, log } = o;
  const aborted = () => o.signal?.aborted ?? false;
  const publish = async (kind: string, indices: Vec3[]): Promise<void> => {
    const msg = encode({ v: 1, run: names.run, kind, indices, identity: o.scope.identity, epoch: o.scope.epoch });
    // The same message id on every attempt: a publish whose acknowledgement was lost (broker
    // restart) is not queued twice. A task is in one message per epoch, so its first task names it.
    const msgID = `${taskId({ kind, index: indices[0] })}+${indices.length}@${o.scope.epoch}`;
    for (let attempt = 0; ; attempt++) {
      try {
        await o.js.publish(names.task(kind as never), msg, { msgID, timeout: 5000 });
        stats.published += indices.length;
        stats.messages++;
        return;
      } catch (err) {
        if (aborted()) throw o.signal!.reason;
        if (attempt % 10 === 0) log.warn({ task: taskId({ kind, index: indices[0] }), tasks: indices.length, err: (err as Error).message }, 'publish failed; retrying');
        await sleep(backoff(attempt), o.signal);
      }
    }
  };
  const queued = new Map<string, { indices: Vec3[]; since: number }>();
  let flushAt = Infinity;
  let timer: NodeJS.Timeout | undefined;
  const fail = (kind: string, indices: Vec3[], err: unknown) => {
    for (const index of indices) hand.take(taskId({ kind, index }))?.reject(err);
  };
  const send = (kind: string, indices: Vec3[]) => {
    for (const index of indices) hand.waiting.get(taskId({ kind, index }))!.sent = true;
    hand.out.set(kind, (hand.out.get(kind) ?? 0) + indices.length);
    publish(kind, indices).catch((err) => fail(kind, indices, err));
  };
  const flush = () => {
    timer = undefined;
    flushAt = Infinity;
    // Aborted: their waiters were rejected; nothing more goes out.
    if (aborted()) return queued.clear();
    const now = performance.now();
    for (const [kind, q] of queued) {
      const size = batchSize(o.meanMs(kind), o.nats);
      let i = 0;
      for (; q.indices.length - i >= size; i += size) send(kind, q.indices.slice(i, i + size));
      const rest = q.indices.length - i;
      if (rest > 0 && (now - q.since >= BATCH_HOLD_MS || !hand.out.get(kind))) {
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
  return {
    add: (t) => {
      const q = queued.get(t.kind);
      if (q) q.indices.push(t.index);
      else queued.set(t.kind, { indices: [t.index], since: performance.now() });
      schedule(0);
    },
    stop: () => clearTimeout(timer),
  };
}
