// What a worker runs and reports, shared by its parts (loop.ts, handle.ts, follow.ts): the
// options, the job (as in BullMQ: the worker owns the transport, the job is one function), the
// pipeline's job, the counters — a leaf, so the parts import it and not each other.
import type { NatsConnection } from '@nats-io/nats-core';
import { type Logger, type Role, type RunRecord, type TaskRef, type KindSpec, type TesseraConfig, attachRun, runTask } from '../../shared/index.ts';
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
  /** Task messages of an older scope than the run's (terminated). */
  stale: number;
  /** Task messages handed back because they are of a newer epoch than this worker knew. */
  deferred: number;
  /** Tasks handed back unfinished at shutdown. */
  released: number;
}
