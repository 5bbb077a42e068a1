// The embedded runner: the whole job in one process, no broker. It opens a session (task graph,
// output, scheduler restored from what an earlier run of the same identity finished) and drives
// the scheduler with the task functions the distributed workers run too, so both give identical
// output.
//
// Resume: the output's run.json records the run identity (config hash, model checksums); the
// work store's done logs record finished tasks. Re-running on the same output resumes; a
// larger ROI reuses every finished task but the instance numbering (faces, resolve, relabel),
// which spans the ROI; a different identity is refused (see output.ts). After a complete run
// `.work/` keeps only that resume state: the logs and the per-chunk objects tables.
import { boxToString } from '../geometry/box.ts';
import { taskId } from '../scheduler.ts';
import { drive } from './drive.ts';
import { runTask } from '../tasks/index.ts';
import { type RunReport, type SessionOptions, chunkVoxelsOf, finishSession, freeAfter, guard, openSession, reportProgress } from './session.ts';

export type { RunReport, TaskCounts, TaskFailure, TwoStageStats } from './session.ts';

export interface RunOptions extends Omit<SessionOptions, 'models'> {
  /** Keep every intermediate result under .work (for inspection); by default each is deleted once nothing needs it. */
  keepWork?: boolean;
  /** Called as tasks finish: (task kind, done, total). */
  progress?: (phase: string, done: number, total: number) => void;
}

export async function runEmbedded(o: RunOptions): Promise<RunReport> {
  let peak = process.memoryUsage().rss;
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 100);
  const s = await openSession(o).catch((err) => { clearInterval(sampler); throw err; });
  const { ctx, sched, work, counts0 } = s;
  try {
    o.log.info({ mode: ctx.config.mode, roi: boxToString(ctx.roi), provider: ctx.pool.provider, tasks: counts0, reused: s.reused, resumed: !!s.opened.resumed }, 'run started');
    reportProgress(s, o.progress);
    // Whatever ends the run from here on, run.json must not keep saying "running".
    const result = await guard(o.output, () => drive(sched, (t) => ctx.timings.time(`task:${t.kind}`, () => runTask(s.tctx, t)), {
      concurrency: ctx.config.io.chunksInFlight,
      signal: s.signal,
      onSuccess: (t) => work.markDone(t.kind, t.index),
      onDone: async (t) => {
        reportProgress(s, o.progress, t.kind);
        if (!o.keepWork) await freeAfter(s, t);
      },
      onFailure: (t, err) => o.log.error({ task: taskId(t), err }, 'task failed'),
      voxelsOf: chunkVoxelsOf(s),
    }), s.fence);
    return await finishSession(s, result, { input: o.input, output: o.output, peakRss: peak });
  } finally {
    clearInterval(sampler);
    await s.close();
  }
}
