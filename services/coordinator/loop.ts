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
import { jetstreamManager } from '@nats-io/jetstream';
import {
  type RunReport, type TaskRef, type RunRecord, type Logger, type TesseraConfig, type Box, type Expect,
  ConfigError, chunkBox, drive, volumeOf, ensureRunStreams, finishSession, freeAfter, freshResultsConsumer, guard, openSession, reportProgress,
  readRun, removeRunStreams, resolveInput, runNames, runsBucket, taskId, writeRun,
} from '../../shared/index.ts';
import type { CoordinatorMetrics } from '../metrics.ts';
import { type ExecutorStats, busExecutor, drainResults } from './executor.ts';

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

export interface DistributedStats extends ExecutorStats {
  run: string;
  /** This coordinator's start number for the run (1 = first). */
  epoch: number;
  /** Results of an earlier coordinator's tasks, recorded at start instead of run again. */
  drained: number;
}

export type CoordinatorReport = RunReport & { distributed: DistributedStats };

export async function runCoordinator(o: CoordinatorOptions): Promise<CoordinatorReport> {
  const names = runNames(o.run);
  const log = o.log.child({ run: o.run, service: 'coordinator' });
  let peak = process.memoryUsage().rss;
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 200);
  const s = await openSession({ ...o, log, models: 'lazy' }).catch((err) => { clearInterval(sampler); throw err; });
  const { sched, work, graph } = s;
  const c = s.ctx.config;
  const kinds = graph.kinds.map((k) => k.name);
  const expect: Expect = { run: o.run, kinds };
  // Counted here: the start (epoch, drained results and messages rejected while draining); the
  // executor counts the rest.
  const ds = { run: o.run, epoch: 0, drained: 0, rejected: 0 };
  const timers: NodeJS.Timeout[] = [sampler];
  const stops: (() => void)[] = [];
  try {
    const jsm = await jetstreamManager(o.nc);
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
      v: 1, run: o.run, input: resolveInput(o.input), output: path.resolve(o.output), roi: s.roiDoc, config: c,
      identity: s.identity.hash, epoch: ds.epoch, status: 'running', coordinator: `${os.hostname()}/${process.pid}`, updatedAt: '',
    };
    const progress = () => Object.fromEntries(Object.entries(sched.counts()).map(([k, v]) => [k, { done: v.done, total: v.total, failed: v.failed + v.skipped }]));
    await writeRun(kv, { ...record, progress: progress() });

    // Results that arrived while no coordinator listened: their tasks are done.
    await drainResults(o.nc, names, expect, log, ds, async (kind, r) => {
      const t: TaskRef = { kind, index: r.index };
      if (r.ok && sched.state(t) !== 'done' && sched.state(t) !== 'outside') {
        await work.markDone(t.kind, t.index);
        sched.restore(t);
        ds.drained++;
      }
    });
    log.info({ epoch: ds.epoch, tasks: sched.counts(), reused: s.reused, drained: ds.drained, resumed: !!s.opened.resumed }, 'run registered; publishing tasks');

    const bus = await busExecutor({ nc: o.nc, names, expect, nats: c.nats, epoch: ds.epoch, log, signal: o.signal, metrics: o.metrics });
    stops.push(() => bus.close());
    timers.push(setInterval(() => void writeRun(kv, { ...record, progress: progress() }).catch(() => undefined), 2000));

    reportProgress(s, o.progress);
    const result = await guard(o.output, () => drive(sched, bus.exec, {
      concurrency: c.nats.inFlight,
      // Workers retried already (up to nats.maxDeliver deliveries): a failure here is final.
      retries: 0,
      signal: o.signal,
      onSuccess: async (t) => {
        await work.markDone(t.kind, t.index);
        bus.ack(t);
      },
      onDone: async (t) => {
        reportProgress(s, o.progress, t.kind);
        if (t.kind === 'paste' || t.kind === 'blend') o.metrics?.voxels(volumeOf(chunkBox(t.index, graph.chunk, graph.volume)));
        if (!o.keepWork) await freeAfter(s, t);
      },
      onFailure: (t, err) => log.error({ task: taskId(t), err: (err as Error).message }, 'task failed'),
    }));
    for (const t of timers) clearInterval(t);
    for (const stop of stops) stop();
    const report = await finishSession(s, result, { input: o.input, output: o.output, peakRss: peak, busy: bus.busy, provider: 'workers' });
    await writeRun(kv, { ...record, status: report.status, progress: progress() });
    // A finished run's queues are gone; an interrupted one keeps its results for the next start.
    if (report.status !== 'interrupted') await removeRunStreams(jsm, names);
    return { ...report, distributed: { ...ds, ...bus.stats, rejected: ds.rejected + bus.stats.rejected } };
  } finally {
    for (const t of timers) clearInterval(t);
    for (const stop of stops) stop();
    await s.close();
  }
}
