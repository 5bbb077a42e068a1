// The embedded runner: the whole job in one process, no broker. It builds the task graph,
// restores what an earlier run of the same identity finished, and drives the scheduler with
// the task functions the distributed worker runs too, so both give identical output.
//
// Resume: the output's run.json records the run identity (config hash, model checksums); the
// work store's done logs record finished tasks. Re-running on the same output resumes; a
// larger ROI reuses every finished task but the instance numbering (faces, resolve, relabel),
// which spans the ROI; a different identity is refused (see output.ts). After a complete run
// `.work/` keeps only that resume state: the logs and the per-chunk objects tables.
import * as os from 'node:os';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PACKAGE_ROOT } from '../config/load.ts';
import { type Box, boxToString, volumeOf } from '../geometry/box.ts';
import type { TesseraConfig } from '../config/config.ts';
import type { Logger } from '../log.ts';
import { type TaskRef, Scheduler, taskId } from '../scheduler.ts';
import { openRun } from './context.ts';
import { finishOutput, openOutput, updateRunJson } from './output.ts';
import { runIdentity } from './identity.ts';
import { drive } from './drive.ts';
import { ONE, rangeVoxels, taskGraph } from '../tasks/graph.ts';
import { WorkStore } from '../tasks/work.ts';
import { taskContext } from '../tasks/context.ts';
import { FREE, WHOLE_ROI, runTask } from '../tasks/index.ts';
import type { TaskKind } from '../tasks/graph.ts';
import { writeBoxesJson } from '../tasks/boxes-output.ts';
import { indexId } from '../geometry/grid.ts';
import { lowGrid } from '../volume/source.ts';
import { openArray } from '../volume/zarr.ts';
import { clearTemp } from '../volume/store.ts';

export interface RunOptions {
  config: TesseraConfig;
  input: string;
  output: string;
  roi?: Box;
  overwrite?: boolean;
  log: Logger;
  signal?: AbortSignal;
  /** Two-stage only: take boxes from this ground-truth label array instead of stage one (benchmark oracle). */
  oracle?: string;
  /** Keep every intermediate result under .work (for inspection); by default each is deleted once nothing needs it. */
  keepWork?: boolean;
  /** Called as tasks finish: (task kind, done, total). */
  progress?: (phase: string, done: number, total: number) => void;
}

export interface TaskFailure {
  /** "kind/z_y_x". */
  task: string;
  error: string;
}

export interface TwoStageStats {
  candidates: number;
  parents: number;
  children: number;
  boxes: number;
  canvases: number;
  fillRatio: number;
  /** Fraction of the pasted chunks' voxels some crop covered. */
  coverage: number;
  /** Decoded storage-chunk voxels / voxels stage two asked for (read amplification). */
  readAmplification: number;
}

export interface TaskCounts {
  total: number;
  ran: number;
  reused: number;
  failed: number;
  skipped: number;
}

export interface RunReport {
  mode: TesseraConfig['mode'];
  preset: string;
  input: string;
  output: string;
  roi: string;
  voxels: number;
  status: 'complete' | 'failed' | 'interrupted';
  /** Wall-clock seconds in total. */
  seconds: Record<string, number>;
  /**
   * Summed busy seconds, overlapping across tasks in flight: per kind of work (read, write,
   * network …) and per task kind (`task:stage1`, `task:paste` …).
   */
  busySeconds: Record<string, number>;
  voxelsPerSecond: number;
  peakRssMB: number;
  provider: string;
  tasks: Record<string, TaskCounts>;
  /** Failed tasks with their causes (tasks skipped because of them are counted in `tasks`). */
  failures: TaskFailure[];
  twoStage?: TwoStageStats;
}

/** Tessera's and ONNX Runtime's versions, from the installed packages. */
function versions(): Record<string, string> {
  const read = (f: string) => (JSON.parse(fs.readFileSync(f, 'utf8')) as { version: string }).version;
  return {
    tessera: read(path.join(PACKAGE_ROOT, 'package.json')),
    onnxruntime: read(path.join(PACKAGE_ROOT, 'node_modules', 'onnxruntime-node', 'package.json')),
  };
}

/** Boxes of at most this many make the merged boxes.json view too. */
const BOXES_JSON_LIMIT = 200_000;

export async function runEmbedded(o: RunOptions): Promise<RunReport> {
  const t0 = performance.now();
  const ctx = await openRun({ config: o.config, input: o.input, roi: o.roi, log: o.log, signal: o.signal });
  const c = ctx.config;
  let peak = process.memoryUsage().rss;
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 100);
  try {
    const low = c.mode === 'two-stage' ? lowGrid(ctx.src, c.stage1.spacing) : undefined;
    const graph = taskGraph(c, ctx.src.shape, ctx.roi, low?.factor ?? ONE);
    const identity = runIdentity(c, ctx.cards);
    const opened = await openOutput(o.output, {
      shape: ctx.src.shape, spacing: ctx.src.spacing, unit: c.unit, chunks: c.io.outputChunk,
      classes: ctx.cards.fullres.classes, probabilities: c.output.probabilities, overwrite: o.overwrite ?? false, identity,
      format: c.output.format, shard: c.io.chunk,
    });
    clearTemp(o.output);
    const work = new WorkStore(path.join(o.output, '.work'));
    const tctx = taskContext(ctx, {
      out: opened.arrays, work, graph, low, oracle: o.oracle ? await openArray(o.oracle) : undefined,
    });
    const sched = new Scheduler(graph.kinds, graph.deps);
    // Instance ids are numbered over the whole ROI: with another ROI they are computed anew (and
    // their done logs start over, so they only ever hold tasks of the ROI in run.json).
    const prevRoi = opened.resumed?.roi as { begin: Box['begin']; end: Box['end'] } | undefined;
    const roiDoc = { begin: ctx.roi.begin, end: ctx.roi.end };
    if (opened.resumed && (!prevRoi || boxToString(prevRoi) !== boxToString(ctx.roi))) await work.forget(WHOLE_ROI);
    await updateRunJson(o.output, { roi: roiDoc });
    const reused = opened.resumed ? await restore(sched, work, graph.kinds.map((k) => k.name)) : {};
    const counts0 = sched.counts();
    o.log.info({ mode: c.mode, roi: boxToString(ctx.roi), provider: ctx.pool.provider, tasks: counts0, reused, resumed: !!opened.resumed }, 'run started');

    const freeable = graph.deps.filter((d) => FREE[d.needs as TaskKind]).map((d) => ({ kind: d.kind, needs: d.needs }));
    const progressDone: Record<string, number> = Object.fromEntries(Object.entries(counts0).map(([k, v]) => [k, v.done]));
    for (const [k, v] of Object.entries(counts0)) o.progress?.(k, v.done, v.total);
    // Whatever ends the run from here on, run.json must not keep saying "running".
    const result = await guard(o.output, () => drive(sched, (t) => ctx.timings.time(`task:${t.kind}`, () => runTask(tctx, t)), {
      concurrency: c.io.chunksInFlight,
      signal: o.signal,
      onSuccess: (t) => work.markDone(t.kind, t.index),
      onDone: async (t) => {
        o.progress?.(t.kind, ++progressDone[t.kind], counts0[t.kind].total);
        if (o.keepWork) return;
        // Free what no task of this run needs any more (the free is logged first: a resume
        // that needs it again recomputes it, see restore()).
        for (const f of freeable.filter((x) => x.kind === t.kind)) {
          const r = sched.upstream(t, f.needs);
          for (let z = r.lo[0]; z < r.hi[0]; z++) for (let y = r.lo[1]; y < r.hi[1]; y++) for (let x = r.lo[2]; x < r.hi[2]; x++) {
            const u: TaskRef = { kind: f.needs, index: [z, y, x] };
            if (!sched.consumersDone(u)) continue;
            await work.markFreed(u.kind, u.index);
            await FREE[u.kind as TaskKind]!.free(work, u.index);
            if (u.kind === 'stage1') tctx.stage1Cache.delete(indexId(u.index));
            if (u.kind === 'stage2') tctx.stage2Cache.delete(indexId(u.index));
          }
        }
      },
      onFailure: (t, err) => o.log.error({ task: taskId(t), err }, 'task failed'),
    }));

    const counts = sched.counts();
    const failures = sched.failures().map((f) => ({ task: f.task, error: f.reason }));
    const status: RunReport['status'] = result.interrupted ? 'interrupted' : failures.length ? 'failed' : 'complete';
    const tasks: Record<string, TaskCounts> = {};
    for (const [k, v] of Object.entries(counts)) {
      tasks[k] = { total: v.total, ran: result.ran[k] ?? 0, reused: reused[k] ?? 0, failed: v.failed, skipped: v.skipped };
    }
    let twoStage: TwoStageStats | undefined;
    if (c.mode === 'two-stage') {
      const s = result.stats;
      const paste = graph.kinds.find((k) => k.name === 'paste')!;
      if (status === 'complete') await writeBoxesJson(o.output, graph.kinds.find((k) => k.name === 'stage2')!.range, c.pack.canvas, BOXES_JSON_LIMIT);
      twoStage = {
        candidates: s.candidates ?? 0,
        parents: s.parents ?? 0,
        children: s.children ?? 0,
        boxes: s.boxes ?? 0,
        canvases: s.canvases ?? 0,
        fillRatio: s.canvasVoxels ? (s.filled ?? 0) / s.canvasVoxels : 0,
        coverage: (s.covered ?? 0) / Math.max(1, rangeVoxels(paste.range, graph.chunk, graph.volume)),
        readAmplification: s.needed ? (s.decoded ?? 0) / s.needed : 0,
      };
    }
    peak = Math.max(peak, process.memoryUsage().rss);
    const wall = (performance.now() - t0) / 1000;
    const voxels = volumeOf(ctx.roi);
    const report: RunReport = {
      mode: c.mode,
      preset: c.name,
      input: o.input,
      output: o.output,
      roi: boxToString(ctx.roi),
      voxels,
      status,
      seconds: { ...ctx.timings.seconds(), total: Math.round(wall * 1000) / 1000 },
      busySeconds: { ...ctx.timings.busy(), network: Math.round(ctx.pool.busyMs) / 1000 },
      voxelsPerSecond: Math.round(voxels / wall),
      peakRssMB: Math.round(peak / 2 ** 20),
      provider: ctx.pool.provider,
      tasks,
      failures,
      twoStage,
    };
    await finishOutput(o.output, {
      identity,
      startedAt: opened.resumed?.startedAt,
      report,
      config: c,
      roi: roiDoc,
      models: {
        fullres: { path: c.models.fullres, sha256: ctx.cards.fullres.sha256 },
        ...(ctx.cards.lowres && c.mode === 'two-stage' ? { lowres: { path: c.models.lowres, sha256: ctx.cards.lowres.sha256 } } : {}),
      },
      versions: { ...versions(), node: process.version, host: os.hostname() },
    }, status);
    return report;
  } finally {
    clearInterval(sampler);
    await ctx.pool.close();
  }
}

/** Run `f`; if it throws, record the run as failed with the error before passing it on. */
async function guard<T>(output: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    await updateRunJson(output, { status: 'failed', error: (err as Error)?.message ?? String(err), finishedAt: new Date().toISOString() }).catch(() => undefined);
    throw err;
  }
}

/**
 * Mark what an earlier run finished as done. A task whose intermediate result was freed stays
 * done unless a task of this run that is not done needs it (a larger ROI, a failed task to
 * retry): then it is reopened, and so on upstream, until every unfinished task can get its
 * inputs. Returns the tasks reused per kind.
 */
async function restore(sched: Scheduler, work: WorkStore, kinds: readonly string[]): Promise<Record<string, number>> {
  for await (const e of work.done(kinds)) sched.restore(e);
  for (let changed = true; changed;) {
    changed = false;
    for await (const e of work.freed(kinds.filter((k) => FREE[k as TaskKind]?.rerun))) {
      if (sched.state(e) === 'done' && !sched.consumersDone(e)) {
        sched.reopen(e);
        changed = true;
      }
    }
  }
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(sched.counts())) out[k] = v.done;
  return out;
}
