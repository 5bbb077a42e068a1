// The coordinator: the embedded runner's session with a broker between the scheduler and the
// task functions. It takes the run's lease (one coordinator per run across hosts, see
// lease.ts), opens the run (input, config, models, output, scheduler restored from the done
// logs), registers it in the KV bucket, publishes ready tasks — never more than nats.inFlight
// at once — and turns results into done markers and freed intermediates, in the same drive()
// loop as the embedded runner. Only this process writes the done logs, and only while its lease
// is confirmed (a coordinator that finds it lost stops at once, writing nothing).
//
// Restarted for the same work (same identity, ROI and output: the same scope), it purges the
// tasks an earlier coordinator published (the scheduler republishes what is missing), drains the
// results that arrived while it was away (recorded as done, not run again), and carries on.
// Restarted for other work (another config, ROI, or --overwrite), it begins a new scope: both
// streams are purged first, and a result of an older scope is rejected, never recorded.
import * as os from 'node:os';
import * as path from 'node:path';
import type { NatsConnection } from '@nats-io/nats-core';
import { type JetStreamManager, jetstreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import {
  type RunReport, type TaskRef, type RunRecord, type Logger, type TesseraConfig, type Box, type Expect, type Lease, type Scope, type Session,
  ConfigError, chunkBox, isPermanent, isNotFound, drive, volumeOf, ensureRunStreams, finishSession, freeAfter, freshResultsConsumer, guard, isTesseraError, leasesBucket, nextScope,
  openSession, reportProgress, readRun, removeRunStreams, resolveInput, retrying, runNames, runsBucket, takeLease, taskId, writeRun,
} from '../../shared/index.ts';
import type { CoordinatorMetrics } from '../metrics.ts';
import { type BusExecutor, type ExecutorStats, busExecutor, drainResults } from './executor.ts';

export interface CoordinatorOptions {
  nc: NatsConnection;
  /** Run id: names the run's streams, consumers, KV entry and lease. */
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
  /** The epoch the run's current scope began at (= epoch when this start began a new scope). */
  scopeEpoch: number;
  /** Results of an earlier coordinator's tasks, recorded at start instead of run again. */
  drained: number;
}

export type CoordinatorReport = RunReport & { distributed: DistributedStats };

const holder = () => `${os.hostname()}/${process.pid}`;

/** Before opening the output: the run's buckets, its previous record, and its lease. */
async function claim(o: CoordinatorOptions, log: Logger): Promise<{ kv: KV; prev?: RunRecord; lease: Lease; epoch: number }> {
  const { kv, leases, prev0 } = await retrying('reaching the run registry', o.signal, log, async () => {
    const kv = await runsBucket(o.nc);
    return { kv, leases: await leasesBucket(o.nc), prev0: await readRun(kv, o.run) };
  });
  if (prev0 && path.resolve(prev0.output) !== path.resolve(o.output)) {
    throw new ConfigError('run', `run id "${o.run}" is registered for output ${prev0.output}, not ${o.output}; choose another --run`);
  }
  const lease = await retrying('taking the run\'s lease', o.signal, log, () => takeLease(leases, o.run, {
    holder: holder(), epoch: (prev0?.epoch ?? 0) + 1, ttlMs: o.config.nats.lease * 1000, log, signal: o.signal,
  }));
  // Read again under the lease (the previous holder may have written since), and stop the
  // tasks an earlier coordinator published from reaching workers while this one opens the output
  // (they may be of another scope; the scheduler republishes whatever is missing).
  const prev = await retrying('reading the run record', o.signal, log, async () => {
    const jsm = await jetstreamManager(o.nc);
    await jsm.streams.purge(runNames(o.run).tasksStream).catch((err) => { if (!isNotFound(err)) throw err; });
    return readRun(kv, o.run);
  }).catch(async (err) => {
    await lease.release();
    throw err;
  });
  return { kv, prev, lease, epoch: (prev?.epoch ?? 0) + 1 };
}

/** After opening the output: streams (purged as the scope asks), the results consumer, the record. */
async function register(o: CoordinatorOptions, s: Session, kv: KV, record: RunRecord, purgeResults: boolean, log: Logger): Promise<JetStreamManager> {
  const names = runNames(o.run);
  return retrying('registering the run', o.signal, log, async () => {
    const jsm = await jetstreamManager(o.nc);
    await ensureRunStreams(jsm, names, s.ctx.config.nats);
    // Another scope's results must never be drained; its tasks are republished from the
    // scheduler's state like any earlier coordinator's.
    if (purgeResults) await jsm.streams.purge(names.resultsStream);
    await jsm.streams.purge(names.tasksStream);
    await freshResultsConsumer(jsm, names, s.ctx.config.nats);
    await writeRun(kv, record);
    return jsm;
  });
}

export async function runCoordinator(o: CoordinatorOptions): Promise<CoordinatorReport> {
  const names = runNames(o.run);
  const log = o.log.child({ run: o.run, service: 'coordinator' });
  const { kv, prev, lease, epoch } = await claim(o, log);
  let peak = process.memoryUsage().rss;
  const timers: NodeJS.Timeout[] = [setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 200)];
  const stops: (() => void)[] = [];
  const { signal, check, fenced } = fencing(lease, o.signal, log);
  let s: Session | undefined;
  try {
    // Two fences before every done-log line and run.json write: the run's lease (another
    // coordinator took the run over) and the output's lock (another process took the output).
    s = await openSession({ ...o, log, models: 'lazy', signal, fence: lease.fence });
    const { sched, work, graph } = s;
    const c = s.ctx.config;
    const expect: Expect = { run: o.run, kinds: graph.kinds.map((k) => k.name) };
    const next = nextScope(prev, { identity: s.identity.hash, roi: s.roiDoc }, { epoch, resumed: !!s.opened.resumed && !o.overwrite });
    const scope: Scope = { identity: s.identity.hash, epoch, scopeEpoch: next.scopeEpoch };
    // Counted here: the start (drained results, messages rejected or stale while draining); the executor counts the rest.
    const ds = { run: o.run, epoch, scopeEpoch: scope.scopeEpoch, drained: 0, rejected: 0, stale: { identity: 0, epoch: 0 } };
    const record: RunRecord = {
      v: 1, run: o.run, input: resolveInput(o.input), output: path.resolve(o.output), roi: s.roiDoc, config: c,
      identity: s.identity.hash, epoch, scopeEpoch: scope.scopeEpoch, status: 'running', coordinator: holder(), updatedAt: '',
    };
    const progress = () => Object.fromEntries(Object.entries(sched.counts()).map(([k, v]) => [k, { done: v.done, total: v.total, failed: v.failed + v.skipped }]));
    const session = s;
    const jsm = await guardUnlessFenced(o.output, async () => {
      await check();
      return register(o, session, kv, { ...record, progress: progress() }, next.changed, log);
    }).catch(async (err) => {
      if (!o.signal?.aborted || lease.lost.aborted) throw err;
      return undefined;
    });
    if (!jsm) {
      // Stopped before the run was registered: run.json says interrupted, never "running" with nobody behind it.
      const report = await finishSession(s, { stats: {}, ran: {}, voxels: {}, interrupted: true }, { input: o.input, output: o.output, peakRss: peak, provider: 'workers' });
      return { ...report, distributed: { ...ds, published: 0, messages: 0, duplicates: 0, lost: 0, senders: { worker: 0, merger: 0 } } };
    }
    if (next.changed) log.warn({ previous: { identity: prev!.identity.slice(0, 12), roi: prev!.roi, scopeEpoch: prev!.scopeEpoch } }, 'new scope (other identity, ROI or output): both streams purged; results of the old scope will be rejected');

    // Results that arrived while no coordinator listened: their tasks are done.
    await drainResults(o.nc, names, expect, scope, log, ds, async (kind, r) => {
      const t: TaskRef = { kind, index: r.index };
      if (r.ok && sched.state(t) !== 'done' && sched.state(t) !== 'outside') {
        await check();
        await work.markDone(t.kind, t.index);
        sched.restore(t);
        ds.drained++;
      }
    }, o.metrics);
    log.info({ epoch, scopeEpoch: scope.scopeEpoch, tasks: sched.counts(), reused: s.reused, drained: ds.drained, resumed: !!s.opened.resumed }, 'run registered; publishing tasks');

    const bus = await busExecutor({ nc: o.nc, names, expect, nats: c.nats, scope, log, signal: session.signal, metrics: o.metrics });
    stops.push(() => bus.close());
    timers.push(setInterval(() => {
      try {
        lease.fence();
      } catch {
        return;
      }
      void writeRun(kv, { ...record, progress: progress() }).catch(() => undefined);
    }, 2000));

    reportProgress(s, o.progress);
    const result = await guardUnlessFenced(o.output, () => driveTasks(o, session, bus, check, session.signal, log));
    for (const t of timers) clearInterval(t);
    for (const stop of stops) stop();
    if (lease.lost.aborted || fenced.aborted) throw lease.lost.reason ?? fenced.reason;
    if (isTesseraError(session.signal.reason, 'FencedError')) throw session.signal.reason;
    await check();
    const report = await finishSession(s, result, { input: o.input, output: o.output, peakRss: peak, busy: bus.busy, provider: 'workers' });
    await writeRun(kv, { ...record, status: report.status, progress: progress() });
    // A finished run's queues are gone; an interrupted one keeps its results for the next start.
    if (report.status !== 'interrupted') await removeRunStreams(jsm, names);
    const stale = { identity: ds.stale.identity + bus.stats.stale.identity, epoch: ds.stale.epoch + bus.stats.stale.epoch };
    return { ...report, distributed: { ...ds, ...bus.stats, rejected: ds.rejected + bus.stats.rejected, stale } };
  } finally {
    for (const t of timers) clearInterval(t);
    for (const stop of stops) stop();
    await s?.close();
    await lease.release();
  }
}

/**
 * The coordinator's run signal and its check before every write: a lease that cannot be
 * confirmed (broker away) is waited for; one that is lost aborts the run at once (drive stops
 * handing out tasks, and nothing more is written).
 */
function fencing(lease: Lease, stop: AbortSignal | undefined, log: Logger): { signal: AbortSignal; check: () => Promise<void>; fenced: AbortSignal } {
  const fenced = new AbortController();
  const signal = AbortSignal.any([...(stop ? [stop] : []), lease.lost, fenced.signal]);
  const check = () => retrying('confirming the run\'s lease', signal, log, async () => {
    try {
      await lease.check();
    } catch (err) {
      if (isPermanent(err)) fenced.abort(err);
      throw err;
    }
  });
  return { signal, check, fenced: fenced.signal };
}

/** drive() over the bus: a result becomes a done marker (under the lease) and freed intermediates. */
function driveTasks(o: CoordinatorOptions, s: Session, bus: BusExecutor, check: () => Promise<void>, signal: AbortSignal, log: Logger): ReturnType<typeof drive> {
  const { graph, work } = s;
  return drive(s.sched, bus.exec, {
    concurrency: s.ctx.config.nats.inFlight,
    // Workers retried already (up to nats.maxDeliver deliveries): a failure here is final.
    retries: 0,
    signal,
    onSuccess: async (t) => {
      await check();
      await work.markDone(t.kind, t.index);
      bus.ack(t);
    },
    onDone: async (t) => {
      reportProgress(s, o.progress, t.kind);
      if (t.kind === 'paste' || t.kind === 'blend') o.metrics?.voxels(volumeOf(chunkBox(t.index, graph.chunk, graph.volume)));
      if (!o.keepWork) await freeAfter(s, t);
    },
    onFailure: (t, err) => log.error({ task: taskId(t), err: (err as Error).message }, 'task failed'),
  });
}

/** guard() — the run recorded failed when `f` throws — except when the lease or the output's lock is gone: then nothing is written. */
async function guardUnlessFenced<T>(output: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (isTesseraError(err, 'LeaseError') || isTesseraError(err, 'FencedError')) throw err;
    return guard(output, () => Promise.reject(err));
  }
}
