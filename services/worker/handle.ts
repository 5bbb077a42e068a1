// One task message in a worker's hands: admitted (parsed, and classified against the run's
// record and the job this worker is attached to — see follow.ts), run task by task with the
// job, and answered with one result that echoes the message's identity and epoch.
import { type JsMsg, jetstream } from '@nats-io/jetstream';
import { type Logger, type RunRecord, type TaskMessage, type TaskOutcome, backoff, encode, isPermanent, parseTask, runNames, sleep, taskId } from '../../shared/index.ts';
import { type Attachment, type RunFollower, attach, classify, isOver, use } from './follow.ts';
import { type WorkerOptions, type WorkerReport, pipelineJob } from './job.ts';

/** A short hand-back: the record (or this worker's attachment) catches up within a moment. */
const DEFER_MS = 1000;

export interface WorkerState {
  o: WorkerOptions;
  log: Logger;
  me: string;
  report: WorkerReport;
  follow: RunFollower;
  current?: Attachment;
  attaching?: Promise<Attachment>;
  inHand: Set<JsMsg>;
  fatal?: Error;
}

/** Attach to the newest record unless attached to it already (one attach at a time). */
export async function attached(w: WorkerState): Promise<Attachment> {
  const r = w.follow.latest()!;
  if (w.current && w.current.record.epoch >= r.epoch) return w.current;
  w.attaching ??= (async () => {
    try {
      const next = await attach(r, w.o.role, w.o.roots ?? [], w.o.job ?? pipelineJob, w.log);
      const old = w.current;
      w.current = next;
      if (old) {
        old.superseded = true;
        if (old.users === 0) await old.job.close();
      }
      return next;
    } finally {
      w.attaching = undefined;
    }
  })();
  return w.attaching;
}

function moot(r: RunRecord | undefined, msg: TaskMessage): boolean {
  return isOver(r) || (!!r && (r.identity !== msg.identity || msg.epoch < (r.scopeEpoch ?? 1)));
}

async function publishResult(w: WorkerState, m: JsMsg, msg: TaskMessage, results: TaskOutcome[]): Promise<void> {
  const names = runNames(w.o.run);
  const js = jetstream(w.o.nc);
  // Retried until it lands (a broker restart): the result is the tasks' done record, and the
  // message is acknowledged only after it. The id makes a retried publish land once.
  const msgID = `${taskId({ kind: msg.kind, index: results[0].index })}+${results.length}#${m.seq}.${m.info.deliveryCount}`;
  const data = encode({ v: 1, run: w.o.run, kind: msg.kind, results, identity: msg.identity, epoch: msg.epoch, worker: w.me, delivery: m.info.deliveryCount });
  for (let attempt = 0; ; attempt++) {
    try {
      await js.publish(names.result, data, { msgID, timeout: 5000 });
      return;
    } catch (err) {
      if (w.o.signal?.aborted) throw err;
      // Nobody will read it: the run ended (its streams are gone: retrying would hold this worker
      // for ever) or moved to another scope (its coordinator rejects the result anyway).
      if (moot(w.follow.latest(), msg)) {
        w.log.info({ task: taskId({ kind: msg.kind, index: results[0].index }) }, 'result dropped: the run ended or moved to another scope');
        return;
      }
      if (attempt % 10 === 0) w.log.warn({ err: (err as Error).message }, 'result publish failed; retrying');
      await sleep(backoff(attempt), w.o.signal);
    }
  }
}

/** Parse and classify a message: the attachment to serve it with, or undefined when it was handed back or dropped. */
async function admit(w: WorkerState, m: JsMsg): Promise<{ msg: TaskMessage; a: Attachment } | undefined> {
  const drop = (counter: 'rejected' | 'stale', err: string, reason?: 'identity' | 'epoch') => {
    w.report[counter]++;
    if (reason) w.o.metrics?.stale?.(reason);
    else w.o.metrics?.rejected();
    w.log.warn({ subject: m.subject, err }, counter === 'stale' ? 'stale task message dropped' : 'task message rejected');
    m.term();
    return undefined;
  };
  let msg: TaskMessage;
  try {
    msg = parseTask(m.subject, m.data, { run: w.o.run });
  } catch (err) {
    return drop('rejected', (err as Error).message);
  }
  for (let refreshed = false; ; refreshed = true) {
    const a = await attached(w);
    const v = classify(msg, w.follow.latest()!, { scope: a.record, kinds: a.kinds, job: a.job });
    if (v.kind === 'serve') return { msg, a };
    if (v.kind === 'stale') return drop('stale', v.why, v.reason);
    if (v.kind === 'bad') return drop('rejected', v.why);
    if (refreshed) {
      w.report.deferred++;
      w.log.info({ subject: m.subject, why: v.why }, 'task message handed back: not of the run this worker knows yet');
      m.nak(DEFER_MS);
      return undefined;
    }
    await w.follow.refresh();
  }
}

/**
 * One message: its tasks in order, then one result for all of them. A transient failure hands
 * the whole message back (its tasks run again on the next delivery: every task writes the same
 * bytes whenever it runs); a permanent one, or any on the last delivery, is that task's result.
 */
export async function handle(w: WorkerState, m: JsMsg): Promise<void> {
  const admitted = await admit(w, m);
  if (!admitted) return;
  const { msg, a } = admitted;
  const { o, log, report } = w;
  const done = use(a);
  w.inHand.add(m);
  const beat = setInterval(() => m.working(), (a.config.nats.ackWait * 1000) / 3);
  const results: TaskOutcome[] = [];
  try {
    for (const index of msg.indices) {
      const t = { kind: msg.kind, index };
      const tlog = log.child({ task: taskId(t), chunk: index.join('_'), delivery: m.info.deliveryCount });
      const t0 = performance.now();
      try {
        const stats = await a.job.run(t);
        results.push({ index, ok: true, stats, ms: performance.now() - t0 });
        tlog.debug({ ms: Math.round(performance.now() - t0) }, 'task done');
      } catch (err) {
        if (o.signal?.aborted) return;
        const ms = performance.now() - t0;
        const last = m.info.deliveryCount >= a.config.nats.maxDeliver;
        const broken = a.job.failure?.();
        if (broken && !w.fatal) {
          w.fatal = broken;
          log.error({ err: broken.message }, 'this worker can run no more tasks; handing back what it holds and stopping');
        }
        if (!isPermanent(err) && !last) {
          tlog.warn({ err: (err as Error)?.message, tasks: msg.indices.length }, 'task failed; its message is handed back for another delivery');
          // A broken process hands the message back for immediate redelivery elsewhere.
          m.nak(broken ? 0 : Math.min(30_000, 1000 * 2 ** (m.info.deliveryCount - 1)));
          report.retried++;
          o.metrics?.task(t.kind, 'retried', ms, m.info.redelivered);
          return;
        }
        const error = (err as Error)?.message ?? String(err);
        tlog.error({ err: error, permanent: isPermanent(err) }, 'task failed');
        results.push({ index, ok: false, stats: {}, ms, error: last && !isPermanent(err) ? `${error} (after ${m.info.deliveryCount} deliveries)` : error });
      }
      if (o.signal?.aborted) return;
    }
    await publishResult(w, m, msg, results);
    m.ack();
    for (const r of results) {
      if (r.ok) report.done++;
      else report.failed++;
      o.metrics?.task(msg.kind, r.ok ? 'done' : 'failed', r.ms, m.info.redelivered);
    }
  } finally {
    clearInterval(beat);
    w.inHand.delete(m);
    await done();
  }
}

