// A worker (or the merger: the same loop over the merger's task kinds). It follows its run's
// record (follow.ts: a KV watch), attaches to the newest epoch (models load once, on the first
// task that needs them), and pulls task messages from its role's consumer, `concurrency` at a
// time, so the next task's reads overlap the current one's inference (which runs in worker
// threads: acks and heartbeats keep flowing). A message holds one task or several quick ones of
// one kind; the worker runs them in order with its job (the same function the embedded runner
// runs), publishes one result for all of them (their done record, echoing the message's identity
// and epoch) and only then acknowledges the message.
//
// The error's class decides: permanent (bad input) → that task's failure outcome; transient →
// nak the message with backoff (its tasks run again), a failure outcome on the last delivery; a
// malformed or foreign message, or one of an older scope → logged, counted and terminated; one
// this worker cannot serve yet (a newer epoch) → handed back after a refresh of the record. A
// job that can run nothing more in this process (an inference thread died) → its messages
// handed back at once and runWorker throws, so the process exits and its supervisor restarts
// it. SIGTERM: nak the messages in hand (another worker takes them at once) and return. Whatever
// it opened (record watch, jobs and their inference threads) is closed on every path.
//
//   job.ts      the options, the job, the counters (what the parts share)
//   follow.ts   the record watch, attaching to an epoch, classifying a message against both
//   handle.ts   one message: admit, run its tasks, publish their result
//   loop.ts     the lanes that pull, and runWorker's wiring
import * as os from 'node:os';
import { type JsMsg, type Consumer, jetstream } from '@nats-io/jetstream';
import { backoff, isNotFound, retrying, runNames, runsBucket, sleep } from '../../shared/index.ts';
import { followRun, isOver } from './follow.ts';
import { type WorkerState, attached, handle } from './handle.ts';
import type { WorkerOptions, WorkerReport } from './job.ts';

export { confine } from './follow.ts';
export { type WorkerJob, type WorkerOptions, type WorkerReport, pipelineJob } from './job.ts';

const stopping = (w: WorkerState) => !!w.o.signal?.aborted || !!w.fatal || isOver(w.follow.latest());

/**
 * The role's consumer, once it exists: a worker started before its coordinator registered the
 * streams (or after they were removed) waits for them; undefined when stopping (the run is over).
 */
async function consumerOf(w: WorkerState): Promise<Consumer | undefined> {
  const names = runNames(w.o.run);
  for (let attempt = 0; !stopping(w); attempt++) {
    try {
      return await jetstream(w.o.nc).consumers.get(names.tasksStream, names.consumer(w.o.role));
    } catch (err) {
      if (!isNotFound(err)) w.log.debug({ err: (err as Error).message }, 'consumer lookup failed; retrying');
      else if (attempt === 0) w.log.info('the run\'s streams are not there yet; waiting');
      await sleep(isNotFound(err) ? 1000 : backoff(attempt), w.o.signal);
    }
  }
  return undefined;
}

/** One lane: pull a message, handle it, until the run is over, the worker broken or stopped. */
async function lane(w: WorkerState, shared: { consumer?: Promise<Consumer | undefined> }): Promise<void> {
  while (!stopping(w)) {
    const consumer = await (shared.consumer ??= consumerOf(w));
    if (!consumer) return;
    await attached(w);
    let m: JsMsg | null;
    try {
      m = await consumer.next({ expires: 2000 });
    } catch (err) {
      // Broker restarting, stream being recreated: look the consumer up again and pull again.
      w.log.debug({ err: (err as Error).message }, 'pull failed; retrying');
      if (isNotFound(err)) shared.consumer = undefined;
      await sleep(500, w.o.signal);
      continue;
    }
    if (m && !w.o.signal?.aborted && !w.fatal) await handle(w, m);
    else if (m) m.nak();
  }
}

export async function runWorker(o: WorkerOptions): Promise<WorkerReport> {
  const me = `${os.hostname()}/${process.pid}`;
  const log = o.log.child({ run: o.run, service: o.role, worker: me });
  const report: WorkerReport = { done: 0, failed: 0, retried: 0, rejected: 0, stale: 0, deferred: 0, released: 0 };
  const kv = await retrying('reaching the run registry', o.signal, log, () => runsBucket(o.nc)).catch((err) => {
    if (o.signal?.aborted) return undefined;
    throw err;
  });
  if (!kv) return report;
  const follow = await followRun(kv, o.run, log);
  const w: WorkerState = { o, log, me, report, follow, inHand: new Set() };
  const onAbort = () => {
    // Hand back what is in hand: another worker picks it up now, not after ack_wait.
    for (const m of w.inHand) {
      m.nak();
      report.released++;
    }
    w.inHand.clear();
  };
  o.signal?.addEventListener('abort', onAbort, { once: true });
  const metrics = setInterval(() => {
    if (w.current) o.metrics?.busy(w.current.job.busySeconds());
    // A safety net under the watch (which a broker restart may end): read the record now and then.
    void follow.refresh();
  }, 5000);
  try {
    log.info('waiting for the run');
    while (!follow.latest() && !o.signal?.aborted) await follow.changed(o.signal);
    if (o.signal?.aborted) return report;
    if (isOver(follow.latest())) {
      log.info({ status: follow.latest()!.status }, 'the run is over: nothing to do');
      return report;
    }
    log.info({ concurrency: o.concurrency ?? 2 }, 'pulling tasks');
    // On SIGTERM do not wait for the tasks in hand: they are handed back (onAbort) and whatever
    // they were writing is atomic, so stopping mid-task loses nothing.
    const stopped = new Promise<void>((r) => {
      if (o.signal?.aborted) r();
      o.signal?.addEventListener('abort', () => r(), { once: true });
    });
    const shared = {};
    await Promise.race([Promise.all(Array.from({ length: Math.max(1, o.concurrency ?? 2) }, () => lane(w, shared))), stopped]);
  } catch (err) {
    w.fatal ??= err as Error;
  } finally {
    clearInterval(metrics);
    follow.stop();
    o.signal?.removeEventListener('abort', onAbort);
    if (o.signal?.aborted) onAbort();
    // The naks above reach the broker if it is there; a broker that is gone is not waited for.
    await Promise.race([o.nc.flush().catch(() => undefined), new Promise((r) => setTimeout(r, 3000).unref())]);
    const pending = w.attaching;
    await Promise.allSettled([w.current?.job.close(), pending?.then((a) => a.job.close())]);
  }
  if (w.fatal) throw w.fatal;
  log.info(report, 'worker stopped');
  return report;
}
