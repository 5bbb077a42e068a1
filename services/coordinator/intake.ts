// Results intake: the coordinator's results consumer. A result settles its tasks in hand when it
// is of the coordinator's scope (identity and epoch, see scope.ts); anything else is rejected,
// counted by reason and never recorded. A result message is acknowledged once every successful
// task in it has its done marker (ack() per task): a coordinator killed in between drains it
// again at its restart.
import type { JsMsg, JetStreamClient } from '@nats-io/jetstream';
import { type TaskKind, type TaskRef, type ResultMessage, TaskError, parseResult, roleOf, staleness, taskId } from '../../shared/index.ts';
import { type BusExecutorOptions, type ExecutorStats, type InHand, parseOr } from './in-hand.ts';

export interface Intake {
  ack(t: TaskRef): void;
  /** Mean task milliseconds per kind so far (sizes the messages, see batchSize). */
  meanMs(kind: string): number | undefined;
  /** Summed task seconds per kind (`task:<kind>`). */
  busy: Record<string, number>;
  stop(): void;
}

type Pending = { m: JsMsg; left: number };

export async function startIntake(o: BusExecutorOptions & { js: JetStreamClient; hand: InHand; stats: ExecutorStats }): Promise<Intake> {
  const { log, stats, hand } = o;
  // One entry per process that ever reported (a handful), never per task.
  const senders = { worker: new Set<string>(), merger: new Set<string>() };
  const busy: Record<string, number> = {};
  const toAck = new Map<string, Pending>();
  const settle = (p: Pending) => {
    if (--p.left === 0) p.m.ack();
  };
  const mean = new Map<string, { ms: number; n: number }>();
  const measured = (kind: string, ms: number) => {
    const e = mean.get(kind) ?? { ms: 0, n: 0 };
    // A running mean over the first 64 tasks, then exponential: follows a kind whose tasks get
    // slower (empty chunks first, tissue later) without one outlier resizing the messages.
    e.n = Math.min(e.n + 1, 64);
    e.ms += (ms - e.ms) / e.n;
    mean.set(kind, e);
  };
  const count = (r: ResultMessage) => {
    const role = roleOf(r.kind as TaskKind);
    if (!senders[role].has(r.worker)) {
      senders[role].add(r.worker);
      stats.senders[role] = senders[role].size;
    }
  };
  const accept = async (m: JsMsg, r: ResultMessage) => {
    if (o.beforeSettle) await o.beforeSettle();
    count(r);
    const pending = { m, left: r.results.length };
    for (const x of r.results) {
      const id = taskId({ kind: r.kind, index: x.index });
      const w = hand.take(id);
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
  };

  const rc = await o.js.consumers.get(o.names.resultsStream, o.names.resultsConsumer);
  const messages = await rc.consume({ max_messages: 256 });
  void (async () => {
    for await (const m of messages) {
      const r = parseOr(m, () => parseResult(m.subject, m.data, o.expect), log, stats);
      if (!r) continue;
      const why = staleness(r, o.scope);
      if (why) {
        stats.stale[why]++;
        o.metrics?.stale?.(why);
        log.warn({ kind: r.kind, tasks: r.results.length, identity: r.identity.slice(0, 12), epoch: r.epoch, reason: why, worker: r.worker }, 'stale result rejected');
        m.term();
        continue;
      }
      await accept(m, r);
    }
  })().catch((err) => log.error({ err: (err as Error).message }, 'results consumer ended'));

  return {
    ack: (t) => {
      const id = taskId(t);
      const p = toAck.get(id);
      toAck.delete(id);
      if (p) settle(p);
    },
    meanMs: (kind) => mean.get(kind)?.ms,
    busy,
    stop: () => messages.stop(),
  };
}
