// Give-up: a task whose every delivery died with its worker stays in the stream (JetStream keeps
// it after max_deliver). It is deleted and failed — from the max-deliveries advisory or, if that
// was missed (the coordinator was disconnected), from a periodic sweep — but only one ack wait
// after the give-up: the last delivery's worker may be alive with its heartbeats lost, and a
// result that lands meanwhile settles the task (no failed run whose work was all done).
import type { JetStreamManager } from '@nats-io/jetstream';
import { type TaskMessage, TaskError, isNotFound, parseTask, staleness, taskId } from '../../shared/index.ts';
import type { BusExecutorOptions, ExecutorStats, InHand } from './in-hand.ts';

export function startGiveUps(o: BusExecutorOptions & { jsm: JetStreamManager; hand: InHand; stats: ExecutorStats }): () => void {
  const { names, jsm, hand, stats, log } = o;
  const graceMs = o.nats.ackWait * 1000;
  const pending = new Set<NodeJS.Timeout>();
  const failLater = (t: TaskMessage, why: string) => {
    const timer = setTimeout(() => {
      pending.delete(timer);
      for (const index of t.indices) {
        const id = taskId({ kind: t.kind, index });
        const w = hand.take(id);
        if (!w) continue;
        stats.lost++;
        w.reject(new TaskError(id, why));
      }
    }, graceMs);
    pending.add(timer);
  };
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
    // Another scope's task was never in hand here.
    if (!staleness(t, o.scope)) failLater(t, why);
  };
  const advisories = o.nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${names.tasksStream}.*`);
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
    if (hand.waiting.size === 0) return;
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
  const timer = setInterval(() => { void sweep().catch((err) => log.debug({ err }, 'sweep skipped')); }, graceMs);
  return () => {
    clearInterval(timer);
    for (const t of pending) clearTimeout(t);
    advisories.unsubscribe();
  };
}
