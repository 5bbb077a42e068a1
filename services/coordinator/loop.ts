// The coordinator: the embedded runner's session with a broker between the scheduler and the
// task functions. It opens the run (input, config, models, output, scheduler restored from the
// done logs), registers it in the KV bucket, publishes ready tasks — never more than
// nats.inFlight at once — and turns results into done markers and freed intermediates, in the
// same drive() loop as the embedded runner. Only this process writes the done logs.
//
// Restarted, it purges the tasks an earlier coordinator published (the scheduler republishes
// what is missing), drains the results that arrived while it was away (recorded as done, not
// run again), and carries on. Tasks in workers' hands at the restart may run twice: every task
// writes the same bytes whenever it runs, so the output is the same.
import * as os from 'node:os';
import * as path from 'node:path';
import type { NatsConnection } from '@nats-io/nats-core';
import { type JsMsg, jetstream, jetstreamManager } from '@nats-io/jetstream';
import {
  type RunReport, type TaskRef, type RunRecord, type Logger, type TesseraConfig, type Box, type Expect,
  ConfigError, TaskError, chunkBox, drive, volumeOf, encode, ensureRunStreams, finishSession, freeAfter, freshResultsConsumer, guard, openSession,
  parseResult, parseTask, readRun, removeRunStreams, runNames, runsBucket, taskId, writeRun, isNotFound,
} from '../../shared/index.ts';
import type { CoordinatorMetrics } from '../metrics.ts';

export interface CoordinatorOptions {
  nc: NatsConnection;
  /** Run id: names the run's streams, consumers and KV entry. */
  run: string;
  config: TesseraConfig;
  input: string;
  output: string;
  roi?: Box;
  overwrite?: boolean;
  keepWork?: boolean;
  log: Logger;
  signal?: AbortSignal;
  progress?: (phase: string, done: number, total: number) => void;
  metrics?: CoordinatorMetrics;
}

export interface DistributedStats {
  run: string;
  /** This coordinator's start number for the run (1 = first). */
  epoch: number;
  published: number;
  /** Results of an earlier coordinator's tasks, recorded at start instead of run again. */
  drained: number;
  /** Results for tasks not in hand (a task that ran twice): ignored. */
  duplicates: number;
  /** Tasks failed because every delivery died with its worker (max deliveries reached). */
  lost: number;
  /** Bad messages dropped. */
  rejected: number;
}

export type CoordinatorReport = RunReport & { distributed: DistributedStats };

interface Waiter {
  resolve: (stats: Record<string, number>) => void;
  reject: (err: unknown) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runCoordinator(o: CoordinatorOptions): Promise<CoordinatorReport> {
  const names = runNames(o.run);
  const log = o.log.child({ run: o.run, service: 'coordinator' });
  let peak = process.memoryUsage().rss;
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 200);
  const s = await openSession({ ...o, log, models: 'lazy' }).catch((err) => { clearInterval(sampler); throw err; });
  const { sched, work, counts0, graph } = s;
  const c = s.ctx.config;
  const kinds = graph.kinds.map((k) => k.name);
  const expect: Expect = { run: o.run, kinds };
  const ds: DistributedStats = { run: o.run, epoch: 0, published: 0, drained: 0, duplicates: 0, lost: 0, rejected: 0 };
  const busy: Record<string, number> = {};
  const timers: NodeJS.Timeout[] = [sampler];
  const stops: (() => void)[] = [];
  try {
    const jsm = await jetstreamManager(o.nc);
    const js = jetstream(o.nc);
    const kv = await runsBucket(o.nc);
    const prev = await readRun(kv, o.run);
    if (prev && path.resolve(prev.output) !== path.resolve(o.output)) {
      throw new ConfigError('run', `run id "${o.run}" is registered for output ${prev.output}, not ${o.output}; choose another --run`);
    }
    ds.epoch = (prev?.epoch ?? 0) + 1;
    await ensureRunStreams(jsm, names, c.nats);
    // Tasks an earlier coordinator published are republished from the scheduler's state.
    await jsm.streams.purge(names.tasksStream);
    await freshResultsConsumer(jsm, names, c.nats);
    const record: RunRecord = {
      v: 1, run: o.run, input: path.resolve(o.input), output: path.resolve(o.output), roi: s.roiDoc, config: c,
      identity: s.identity.hash, epoch: ds.epoch, status: 'running', coordinator: `${os.hostname()}/${process.pid}`, updatedAt: '',
    };
    const progress = () => Object.fromEntries(Object.entries(sched.counts()).map(([k, v]) => [k, { done: v.done, total: v.total, failed: v.failed + v.skipped }]));
    await writeRun(kv, { ...record, progress: progress() });

    const rc = await js.consumers.get(names.resultsStream, names.resultsConsumer);
    // Results that arrived while no coordinator listened: their tasks are done.
    for (;;) {
      const batch = await rc.fetch({ max_messages: 512, expires: 1000 });
      let n = 0;
      for await (const m of batch) {
        n++;
        const r = parseOr(m, () => parseResult(m.subject, m.data, expect), log, ds);
        if (!r) continue;
        const t: TaskRef = { kind: r.kind, index: r.index };
        if (r.ok && sched.state(t) !== 'done' && sched.state(t) !== 'outside') {
          await work.markDone(t.kind, t.index);
          sched.restore(t);
          ds.drained++;
        }
        m.ack();
      }
      if (n === 0) break;
    }
    log.info({ epoch: ds.epoch, tasks: sched.counts(), reused: s.reused, drained: ds.drained, resumed: !!s.opened.resumed }, 'run registered; publishing tasks');

    const waiting = new Map<string, Waiter>();
    const toAck = new Map<string, JsMsg>();
    const aborted = () => o.signal?.aborted ?? false;
    o.signal?.addEventListener('abort', () => {
      for (const w of waiting.values()) w.reject(o.signal!.reason);
      waiting.clear();
    }, { once: true });

    // Results as they come: settle the waiting task; the result is acknowledged once its done
    // marker is written (onSuccess), so a coordinator killed in between drains it again.
    const messages = await rc.consume({ max_messages: 256 });
    stops.push(() => messages.stop());
    void (async () => {
      for await (const m of messages) {
        const r = parseOr(m, () => parseResult(m.subject, m.data, expect), log, ds);
        if (!r) continue;
        const id = taskId({ kind: r.kind, index: r.index });
        const w = waiting.get(id);
        if (!w) {
          ds.duplicates++;
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

    // A task whose every delivery died with its worker stays in the stream (JetStream keeps
    // it after max_deliver): fail it and delete it, from the advisory or, if that was missed
    // (the coordinator was disconnected), from a periodic sweep.
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
        t = parseTask(m.subject, m.data, expect);
      } catch {
        return;
      }
      const id = taskId(t);
      const w = waiting.get(id);
      if (!w) return;
      waiting.delete(id);
      ds.lost++;
      w.reject(new TaskError(id, `${id}: ${why}`));
    };
    const advisories = o.nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${names.tasksStream}.*`);
    stops.push(() => advisories.unsubscribe());
    void (async () => {
      for await (const a of advisories) {
        try {
          const d = a.json<{ stream_seq: number; deliveries: number }>();
          await giveUp(d.stream_seq, `delivered ${d.deliveries} times and never finished: its worker died each time (killed, out of memory?)`);
        } catch (err) {
          log.warn({ err }, 'max-deliveries advisory not handled');
        }
      }
    })();
    timers.push(setInterval(() => {
      void sweep().catch((err) => log.debug({ err }, 'sweep skipped'));
    }, c.nats.ackWait * 1000));
    const sweep = async () => {
      if (waiting.size === 0) return;
      for (const role of ['worker', 'merger'] as const) {
        const ci = await jsm.consumers.info(names.tasksStream, names.consumer(role));
        if (ci.num_pending > 0 || ci.num_ack_pending > 0) return;
      }
      // Nothing deliverable and nothing in a worker's hands, yet task messages remain: each
      // has used up its deliveries.
      for (let seq = 0; ;) {
        let m;
        try {
          m = await jsm.streams.getMessage(names.tasksStream, { seq, next_by_subj: `tessera.${o.run}.task.>` } as never);
        } catch {
          break;
        }
        if (!m) break;
        await giveUp(m.seq, `used all ${c.nats.maxDeliver} deliveries without a result`);
        seq = m.seq + 1;
      }
    };
    timers.push(setInterval(() => {
      void writeRun(kv, { ...record, progress: progress() }).catch(() => undefined);
      o.metrics?.queue(waiting.size);
    }, 2000));

    const publish = async (t: TaskRef): Promise<void> => {
      const msg = encode({ v: 1, run: o.run, kind: t.kind, index: t.index, epoch: ds.epoch });
      // The same message id on every attempt: a publish whose acknowledgement was lost (broker
      // restart) is not queued twice.
      const msgID = `${taskId(t)}@${ds.epoch}`;
      for (let attempt = 0; ; attempt++) {
        try {
          await js.publish(names.task(t.kind as never), msg, { msgID, timeout: 5000 });
          ds.published++;
          return;
        } catch (err) {
          if (aborted()) throw o.signal!.reason;
          if (attempt % 10 === 0) log.warn({ task: taskId(t), err: (err as Error).message }, 'publish failed; retrying');
          await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 5)));
        }
      }
    };
    const exec = (t: TaskRef) => new Promise<Record<string, number>>((resolve, reject) => {
      if (aborted()) return reject(o.signal!.reason);
      const id = taskId(t);
      waiting.set(id, { resolve, reject });
      publish(t).catch((err) => {
        waiting.delete(id);
        reject(err);
      });
    });

    const progressDone: Record<string, number> = Object.fromEntries(Object.entries(counts0).map(([k, v]) => [k, v.done]));
    for (const [k, v] of Object.entries(sched.counts())) o.progress?.(k, v.done, v.total);
    const result = await guard(o.output, () => drive(sched, exec, {
      concurrency: c.nats.inFlight,
      // Workers retried already (up to nats.maxDeliver deliveries): a failure here is final.
      retries: 0,
      signal: o.signal,
      onSuccess: async (t) => {
        await work.markDone(t.kind, t.index);
        const id = taskId(t);
        toAck.get(id)?.ack();
        toAck.delete(id);
      },
      onDone: async (t) => {
        o.progress?.(t.kind, ++progressDone[t.kind], counts0[t.kind].total);
        if (t.kind === 'paste' || t.kind === 'predict') o.metrics?.voxels(volumeOf(chunkBox(t.index, graph.chunk, graph.volume)));
        if (!o.keepWork) await freeAfter(s, t);
      },
      onFailure: (t, err) => log.error({ task: taskId(t), err: (err as Error).message }, 'task failed'),
    }));
    for (const t of timers) clearInterval(t);
    for (const stop of stops) stop();
    // Results of tasks drained at start also ran (on an earlier coordinator's workers).
    const report = await finishSession(s, result, { input: o.input, output: o.output, peakRss: peak, busy, provider: 'workers' });
    await writeRun(kv, { ...record, status: report.status, progress: progress() });
    // A finished run's queues are gone; an interrupted one keeps its results for the next start.
    if (report.status !== 'interrupted') await removeRunStreams(jsm, names);
    return { ...report, distributed: ds };
  } finally {
    for (const t of timers) clearInterval(t);
    for (const stop of stops) stop();
    await s.ctx.pool.close();
  }
}

/** Parse a message; a bad one is logged, terminated (never redelivered) and counted. */
function parseOr<T>(m: JsMsg, parse: () => T, log: Logger, ds: { rejected: number }): T | undefined {
  try {
    return parse();
  } catch (err) {
    ds.rejected++;
    log.warn({ subject: m.subject, err: (err as Error).message }, 'message rejected');
    m.term();
    return undefined;
  }
}
