// The coordinator's executor for drive(): publish a task, resolve when its result comes back
// (quick tasks of one kind go out several to a message, see batchSize and BATCH_HOLD_MS). Owns
// the transport's side of the coordinator, in three parts:
//
//   publisher.ts   batching publisher: tasks handed over in one turn go out per kind, batched,
//                  with retries and de-duplication ids
//   intake.ts      results intake: the results consumer; a result of another scope is rejected
//                  and counted, never recorded
//   giveup.ts      give-up: the max-deliveries advisory and the sweep for tasks whose every
//                  delivery died, failed one ack wait later unless their result lands meanwhile
//
// so the coordinator's loop is the same drive() as the embedded runner's, and the bench can
// drive a bare scheduler over the broker with it.
import type { NatsConnection } from '@nats-io/nats-core';
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import {
  type Logger, type TaskRef, type Expect, type RunNames, type TaskOutcome, type Scope, parseResult, staleness, taskId,
} from '../../shared/index.ts';
import type { CoordinatorMetrics } from '../metrics.ts';
import { startIntake } from './intake.ts';
import { startGiveUps } from './giveup.ts';
import { batchingPublisher } from './publisher.ts';
import { type BusExecutorOptions, type ExecutorStats, InHand, parseOr } from './in-hand.ts';

export { type BusExecutorOptions, type ExecutorStats, BATCH_HOLD_MS, batchSize } from './in-hand.ts';

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


/**
 * Results that arrived while no coordinator listened (the results consumer must be fresh, see
 * freshResultsConsumer), handed to `f` task by task; each message is acknowledged after `f`
 * returned for all of its tasks. Results of another scope are terminated and counted.
 */
export async function drainResults(
  nc: NatsConnection, names: RunNames, expect: Expect, scope: Scope, log: Logger,
  stats: { rejected: number; stale: ExecutorStats['stale'] }, f: (kind: string, r: TaskOutcome) => Promise<void>, metrics?: CoordinatorMetrics,
): Promise<void> {
  const rc = await jetstream(nc).consumers.get(names.resultsStream, names.resultsConsumer);
  for (;;) {
    const batch = await rc.fetch({ max_messages: 512, expires: 1000 });
    let n = 0;
    for await (const m of batch) {
      n++;
      const r = parseOr(m, () => parseResult(m.subject, m.data, expect), log, stats);
      if (!r) continue;
      const why = staleness(r, scope);
      if (why) {
        stats.stale[why]++;
        metrics?.stale?.(why);
        log.warn({ kind: r.kind, tasks: r.results.length, identity: r.identity.slice(0, 12), epoch: r.epoch, reason: why }, 'stale result rejected');
        m.term();
        continue;
      }
      for (const x of r.results) await f(r.kind, x);
      m.ack();
    }
    if (n === 0) return;
  }
}


export async function busExecutor(o: BusExecutorOptions): Promise<BusExecutor> {
  const js: JetStreamClient = jetstream(o.nc);
  const jsm: JetStreamManager = await jetstreamManager(o.nc);
  const stats: ExecutorStats = { published: 0, messages: 0, duplicates: 0, lost: 0, rejected: 0, stale: { identity: 0, epoch: 0 }, senders: { worker: 0, merger: 0 } };
  const hand = new InHand();
  const stops: (() => void)[] = [];
  const onAbort = () => {
    for (const w of hand.waiting.values()) w.reject(o.signal!.reason);
    hand.waiting.clear();
  };
  o.signal?.addEventListener('abort', onAbort, { once: true });
  stops.push(() => o.signal?.removeEventListener('abort', onAbort));

  const intake = await startIntake({ ...o, js, hand, stats });
  stops.push(intake.stop);
  stops.push(startGiveUps({ ...o, jsm, hand, stats }));
  const publisher = batchingPublisher({ ...o, js, hand, stats, meanMs: intake.meanMs });
  stops.push(publisher.stop);
  const gauge = setInterval(() => o.metrics?.queue(hand.waiting.size), 2000);
  stops.push(() => clearInterval(gauge));

  return {
    exec: (t) => new Promise<Record<string, number>>((resolve, reject) => {
      if (o.signal?.aborted) return reject(o.signal.reason);
      hand.waiting.set(taskId(t), { kind: t.kind, resolve, reject });
      publisher.add(t);
    }),
    ack: intake.ack,
    get inFlight() {
      return hand.waiting.size;
    },
    busy: intake.busy,
    stats,
    close: () => {
      for (const stop of stops) stop();
      stops.length = 0;
    },
  };
}
