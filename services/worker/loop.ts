// A worker (or the merger: the same loop over the merger's task kinds). It waits for its run to
// be registered, attaches to it (models load once, on the first task that needs them), and
// pulls task messages from its role's consumer, `concurrency` at a time, so the next task's
// reads overlap the current one's inference (which runs in worker threads: acks and heartbeats
// keep flowing). A message holds one task or several quick ones of one kind; the worker runs them
// in order with its job (the same function the embedded runner runs), publishes one result for
// all of them (their done record) and only then acknowledges the message.
//
// The error's class decides: permanent (bad input) → that task's failure outcome; transient →
// nak the message with backoff (its tasks run again), a failure outcome on the last delivery; a
// malformed or foreign message → logged and terminated. A job that can run nothing more in
// this process (an inference thread died) → its messages handed back at once and runWorker
// throws, so the process exits and its supervisor restarts it. SIGTERM: nak the messages in
// hand (another worker takes them at once) and return.
import * as os from 'node:os';
import * as path from 'node:path';
import type { NatsConnection } from '@nats-io/nats-core';
import { type JsMsg, jetstream } from '@nats-io/jetstream';
import {
  type Logger, type Role, type Expect, type RunRecord, type TaskMessage, type TaskOutcome, type TaskRef, type KindSpec, type TesseraConfig,
  type TaskKind, ConfigError, roleOf, attachRun, isVirtual, encode, isPermanent, loadConfig, parseTask, readRun, runNames, runTask, runsBucket, taskId, waitForRun,
} from '../../shared/index.ts';
import type { WorkerMetrics } from '../metrics.ts';

export interface WorkerOptions {
  nc: NatsConnection;
  run: string;
  role: Role;
  /** Tasks in hand at once. @default 2 */
  concurrency?: number;
  /**
   * Directories the run's input and output must lie in (the paths come from the run record,
   * never from task messages). Empty: any.
   */
  roots?: string[];
  log: Logger;
  signal?: AbortSignal;
  metrics?: WorkerMetrics;
  /** What runs the tasks. @default pipelineJob */
  job?: (record: RunRecord, config: TesseraConfig, log: Logger) => Promise<WorkerJob>;
}

/**
 * A run as a worker sees it: the job function (as in BullMQ: the worker owns the transport, the
 * job is one function) and each kind's task grid, which every task index is checked against.
 */
export interface WorkerJob {
  kinds: readonly Pick<KindSpec, 'name' | 'range'>[];
  run(t: TaskRef): Promise<Record<string, number>>;
  /** Seconds of inference so far (a metric). */
  busySeconds(): number;
  /**
   * Set once the job can run nothing more in this process (an inference thread died): the
   * worker then hands back what it holds and stops with this error, so that its supervisor
   * restarts it, instead of pulling and failing task after task.
   */
  failure?(): Error | undefined;
  close(): Promise<void>;
}

/** The pipeline's tasks over the run's input and output (models load on the first task that needs them). */
export async function pipelineJob(record: RunRecord, config: TesseraConfig, log: Logger): Promise<WorkerJob> {
  const ctx = await attachRun({
    config, input: record.input, output: record.output, roi: { begin: record.roi.begin, end: record.roi.end },
    identity: record.identity, log, signal: undefined,
  });
  return {
    kinds: ctx.graph.kinds,
    run: (t) => runTask(ctx, t),
    busySeconds: () => ctx.pool.busyMs / 1000,
    failure: () => ctx.pool.failure,
    close: () => ctx.pool.close(),
  };
}

export interface WorkerReport {
  done: number;
  failed: number;
  /** Transient failures handed back for another delivery. */
  retried: number;
  rejected: number;
  /** Tasks handed back unfinished at shutdown. */
  released: number;
}

const sleep = (ms: number, signal?: AbortSignal) => new Promise<void>((r) => {
  const t = setTimeout(r, ms);
  signal?.addEventListener('abort', () => { clearTimeout(t); r(); }, { once: true });
});

/** Refuse a run whose input or output lies outside `roots` (none: any path). */
export function confine(r: Pick<RunRecord, "run" | "input" | "output">, roots: readonly string[]): void {
  if (!roots.length) return;
  for (const p of [r.input, r.output]) {
    // A virtual input is generated, not read from anywhere.
    if (isVirtual(p)) continue;
    const abs = path.resolve(p);
    if (!roots.some((root) => { const rel = path.relative(path.resolve(root), abs); return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel)); })) {
      throw new ConfigError('root', `run "${r.run}" names ${abs}, outside this worker's roots (${roots.join(', ')})`);
    }
  }
}

export async function runWorker(o: WorkerOptions): Promise<WorkerReport> {
  const names = runNames(o.run);
  const me = `${os.hostname()}/${process.pid}`;
  const log = o.log.child({ run: o.run, service: o.role, worker: me });
  const report: WorkerReport = { done: 0, failed: 0, retried: 0, rejected: 0, released: 0 };
  const kv = await runsBucket(o.nc);
  log.info('waiting for the run');
  const record = await waitForRun(kv, o.run, o.signal);
  if (!record) return report;
  confine(record, o.roots ?? []);
  // The record's config is validated like a config file: a worker never trusts it blindly.
  const config = loadConfig({ overrides: record.config as unknown as Record<string, unknown> });
  const job = await (o.job ?? pipelineJob)(record, config, log);
  const kinds = job.kinds.map((k) => k.name).filter((k) => roleOf(k as TaskKind) === o.role);
  const expect: Expect = { run: o.run, kinds };
  const js = jetstream(o.nc);
  const heartbeatMs = (config.nats.ackWait * 1000) / 3;
  const maxDeliver = config.nats.maxDeliver;
  const inHand = new Set<JsMsg>();
  let finished = false;
  let fatal: Error | undefined;

  const publishResult = async (m: JsMsg, kind: string, results: TaskOutcome[]) => {
    // Retried until it lands (a broker restart): the result is the tasks' done record, and the
    // message is acknowledged only after it. The id makes a retried publish land once.
    const msgID = `${taskId({ kind, index: results[0].index })}+${results.length}#${m.seq}.${m.info.deliveryCount}`;
    for (let attempt = 0; ; attempt++) {
      try {
        await js.publish(names.result, encode({ v: 1, run: o.run, kind, results, worker: me, delivery: m.info.deliveryCount }), { msgID, timeout: 5000 });
        return;
      } catch (err) {
        if (o.signal?.aborted) throw err;
        if (attempt % 10 === 0) log.warn({ err: (err as Error).message }, 'result publish failed; retrying');
        await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 5)), o.signal);
      }
    }
  };

  // One message: its tasks in order, then one result for all of them. A transient failure hands
  // the whole message back (its tasks run again on the next delivery: every task writes the same
  // bytes whenever it runs); a permanent one, or any on the last delivery, is that task's result.
  const handle = async (m: JsMsg) => {
    let msg: TaskMessage;
    try {
      msg = parseTask(m.subject, m.data, expect);
      const k = job.kinds.find((x) => x.name === msg.kind)!;
      for (const index of msg.indices) {
        if (index.some((v, a) => v < k.range.lo[a] || v >= k.range.hi[a])) {
          throw new ConfigError('index', `task ${taskId({ kind: msg.kind, index })} is outside the run's ${msg.kind} grid`);
        }
      }
    } catch (err) {
      report.rejected++;
      o.metrics?.rejected();
      log.warn({ subject: m.subject, err: (err as Error).message }, 'task message rejected');
      m.term();
      return;
    }
    inHand.add(m);
    const beat = setInterval(() => m.working(), heartbeatMs);
    const results: TaskOutcome[] = [];
    try {
      for (const index of msg.indices) {
        const t = { kind: msg.kind, index };
        const tlog = log.child({ task: taskId(t), chunk: index.join('_'), delivery: m.info.deliveryCount });
        const t0 = performance.now();
        try {
          const stats = await job.run(t);
          results.push({ index, ok: true, stats, ms: performance.now() - t0 });
          tlog.debug({ ms: Math.round(performance.now() - t0) }, 'task done');
        } catch (err) {
          if (o.signal?.aborted) return;
          const ms = performance.now() - t0;
          const last = m.info.deliveryCount >= maxDeliver;
          const broken = job.failure?.();
          if (broken && !fatal) {
            fatal = broken;
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
      await publishResult(m, msg.kind, results);
      m.ack();
      for (const r of results) {
        if (r.ok) report.done++;
        else report.failed++;
        o.metrics?.task(msg.kind, r.ok ? 'done' : 'failed', r.ms, m.info.redelivered);
      }
    } finally {
      clearInterval(beat);
      inHand.delete(m);
    }
  };

  // Stop when the run is over (a Kubernetes Job's workers then complete).
  const watch = setInterval(() => {
    o.metrics?.busy(job.busySeconds());
    void readRun(kv, o.run).then((r) => { if (r && (r.status === 'complete' || r.status === 'failed') && r.epoch >= record.epoch) finished = true; }).catch(() => undefined);
  }, 2000);
  const onAbort = () => {
    // Hand back what is in hand: another worker picks it up now, not after ack_wait.
    for (const m of inHand) {
      m.nak();
      report.released++;
    }
    inHand.clear();
  };
  o.signal?.addEventListener('abort', onAbort, { once: true });
  log.info({ kinds, concurrency: o.concurrency ?? 2 }, 'attached; pulling tasks');
  const consumer = await js.consumers.get(names.tasksStream, names.consumer(o.role));
  const lane = async () => {
    while (!o.signal?.aborted && !finished && !fatal) {
      let m: JsMsg | null;
      try {
        m = await consumer.next({ expires: 2000 });
      } catch (err) {
        // Broker restarting, stream being recreated: wait and pull again.
        log.debug({ err: (err as Error).message }, 'pull failed; retrying');
        await sleep(500, o.signal);
        continue;
      }
      if (m && !o.signal?.aborted && !fatal) await handle(m);
      else if (m) m.nak();
    }
  };
  // On SIGTERM do not wait for the tasks in hand: they are handed back (onAbort) and whatever
  // they were writing is atomic, so stopping mid-task loses nothing.
  const stopped = new Promise<void>((r) => {
    if (o.signal?.aborted) r();
    o.signal?.addEventListener('abort', () => r(), { once: true });
  });
  try {
    await Promise.race([Promise.all(Array.from({ length: Math.max(1, o.concurrency ?? 2) }, lane)), stopped]);
  } finally {
    clearInterval(watch);
    o.signal?.removeEventListener('abort', onAbort);
    if (o.signal?.aborted) onAbort();
    // The naks above reach the broker if it is there; a broker that is gone is not waited for.
    await Promise.race([o.nc.flush().catch(() => undefined), new Promise((r) => setTimeout(r, 3000).unref())]);
    await job.close();
  }
  if (fatal) throw fatal;
  log.info(report, 'worker stopped');
  return report;
}
