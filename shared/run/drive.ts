// Driving the scheduler in one process: hand ready tasks to an executor, `concurrency` at a
// time, and report each outcome back. The error's class decides what happens (as in BullMQ):
// a permanent error (bad input, bad config) fails the task at once; anything else is retried
// up to `retries` times; an abort stops handing out work and lets the tasks in hand finish or
// fail. The NATS coordinator does the same with a broker between the scheduler and executors.
import type { Scheduler, TaskRef } from '../scheduler.ts';
import { isPermanent, isTesseraError } from '../errors.ts';

export interface DriveOptions {
  /** Tasks in hand at once. */
  concurrency: number;
  /** Attempts after the first for transient errors. @default 2 */
  retries?: number;
  signal?: AbortSignal;
  /** After a task succeeded (and before the scheduler hears of it): persist its done marker. */
  onSuccess?: (t: TaskRef, stats: Record<string, number>) => Promise<void>;
  /** After the scheduler recorded a success (free intermediates, progress). */
  onDone?: (t: TaskRef) => Promise<void> | void;
  onFailure?: (t: TaskRef, err: unknown) => void;
  /** Voxels task `t` covers, summed per kind over the tasks that ran (per-kind rates). */
  voxelsOf?: (t: TaskRef) => number;
}

export interface DriveResult {
  /** Counters summed over every task that ran. */
  stats: Record<string, number>;
  /** Tasks run (successfully) per kind. */
  ran: Record<string, number>;
  /** voxelsOf summed per kind over the tasks that ran (empty without voxelsOf). */
  voxels: Record<string, number>;
  interrupted: boolean;
}

export async function drive(
  sched: Scheduler, exec: (t: TaskRef) => Promise<Record<string, number>>, o: DriveOptions,
): Promise<DriveResult> {
  const stats: Record<string, number> = {};
  const ran: Record<string, number> = {};
  const voxels: Record<string, number> = {};
  const retries = o.retries ?? 2;
  let fatal: unknown;

  const attempt = async (t: TaskRef): Promise<void> => {
    for (let n = 0; ; n++) {
      try {
        const s = await exec(t);
        await o.onSuccess?.(t, s);
        for (const [k, v] of Object.entries(s)) stats[k] = (stats[k] ?? 0) + v;
        sched.done(t);
        ran[t.kind] = (ran[t.kind] ?? 0) + 1;
        if (o.voxelsOf) voxels[t.kind] = (voxels[t.kind] ?? 0) + o.voxelsOf(t);
        await o.onDone?.(t);
        return;
      } catch (err) {
        // No longer this process's output: stop the whole drive, write nothing more.
        if (isTesseraError(err, 'FencedError')) throw err;
        if (o.signal?.aborted) {
          sched.release(t);
          return;
        }
        if (isPermanent(err) || n >= retries) {
          o.onFailure?.(t, err);
          sched.fail(t, (err as Error)?.message ?? String(err));
          return;
        }
      }
    }
  };

  // One wake-up per completion (not a Promise.race over everything in hand, which costs
  // O(tasks in hand) per completion: hundreds with a broker's deep queue).
  let running = 0;
  let wake: (() => void) | undefined;
  for (;;) {
    if (!o.signal?.aborted && fatal === undefined) {
      const slots = o.concurrency - running;
      if (slots > 0) {
        for (const t of sched.next(slots)) {
          running++;
          attempt(t).catch((err) => { fatal ??= err; }).finally(() => {
            running--;
            wake?.();
          });
        }
      }
    }
    if (running === 0) break;
    await new Promise<void>((r) => { wake = r; });
    wake = undefined;
  }
  if (fatal !== undefined) throw fatal;
  const interrupted = o.signal?.aborted ?? false;
  if (!interrupted && !sched.finished) {
    // Nothing in hand, nothing ready, yet not finished: a bug in the task graph, never a hang.
    const c = sched.counts();
    throw new Error(`scheduler stalled with unfinished tasks: ${JSON.stringify(c)}`);
  }
  return { stats, ran, voxels, interrupted };
}
