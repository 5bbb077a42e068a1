// One run's state between opening and finishing, shared by the embedded runner and the NATS
// coordinator: both open a session (input, config, models, output, the task graph, the
// scheduler restored from the done logs), drive its scheduler — in process or over a broker —
// and finish it into run.json and a report. Workers attach to a run instead: the same task
// context without a scheduler (see attachRun).
import * as os from 'node:os';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { nnunetTiles } from '../tasks/predict.ts';
import { PACKAGE_ROOT } from '../config/load.ts';
import { type Box, type Vec3, boxToString, contains, volumeOf } from '../geometry/box.ts';
import type { TesseraConfig } from '../config/config.ts';
import type { Logger } from '../log.ts';
import { type TaskRef, type KindCounts, Scheduler } from '../scheduler.ts';
import { type RunContext, openRun } from './context.ts';
import { type OpenedOutput, type RunDocument, finishOutput, markFailed, openOutput, openOutputArrays, readRunJson, updateRunJson } from './output.ts';
import { type RunIdentity, inputIdentity, runIdentity } from './identity.ts';
import type { DriveResult } from './drive.ts';
import { ONE, isInstanceKind, rangeVoxels, taskGraph, type TaskGraph, type TaskKind } from '../tasks/graph.ts';
import { WorkStore } from '../tasks/work.ts';
import { type TaskContext, taskContext } from '../tasks/context.ts';
import { freeingOf } from '../tasks/index.ts';
import { writeBoxesJson } from '../tasks/boxes-output.ts';
import { chunkBox, indexId, linearOf, rangeSize } from '../geometry/grid.ts';
import { pyramidFactors } from '../volume/ome.ts';
import { type LowGrid, lowGrid } from '../volume/source.ts';
import { openArray } from '../volume/zarr.ts';
import { clearTemp } from '../volume/store.ts';
import { isVirtual } from '../volume/virtual.ts';
import { isRemote } from '../volume/remote.ts';
import { ConfigError, InputError, OutputError, isTesseraError } from '../errors.ts';
import { checkOutputPath } from './paths.ts';
import type { TissueMask } from '../volume/mask.ts';
import { lockOutput } from './lock.ts';

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
  /** Σ crop voxels (box + context) / Σ canvas voxels. */
  fillRatio: number;
  /** Σ crop voxels / Σ voxels the network ran (each canvas at its occupied extent); absent in run.json files written before it was reported. */
  runFillRatio?: number;
  /** Fraction of the pasted chunks' voxels some crop covered. */
  coverage: number;
  /** Decoded storage-chunk voxels / voxels stage two asked for (read amplification). */
  readAmplification: number;
  /**
   * The real volume read around every crop (`pack.context`) beside how far stage two's network
   * reaches (its card's `reach`, when measured): where context is shorter, crop borders are
   * predicted from canvas fill or neighbours where a sliding window would show the volume.
   */
  context?: { given: Vec3; reach?: Vec3; reachAtLeast?: boolean };
  /**
   * true: the counts cover every task of the run, those reused from earlier sessions included
   * (their counters are carried in run.json). false: some reused task's counters were never
   * recorded (a session that crashed, a run.json of an older Tessera) or a task ran twice, so
   * the counts cover this session's tasks only.
   */
  measured: boolean;
}

/** Task counters summed over every session of a run, and the tasks they cover, per kind (run.json `taskStats`). */
interface StoredStats {
  sums: Record<string, number>;
  ran: Record<string, number>;
}

/** The kinds whose counters make the report's twoStage and oneStage figures. */
const COUNTED = ['stage1', 'boxes', 'stage2', 'paste', 'predict'];

/**
 * This session's counters added to those the earlier sessions recorded; `complete` when they
 * cover exactly the tasks that are done (no reused task unrecorded, none counted twice).
 */
function carriedStats(s: Session, result: DriveResult): StoredStats & { complete: boolean } {
  const prev = s.opened.resumed?.taskStats as StoredStats | undefined;
  const sums = { ...prev?.sums };
  for (const [k, v] of Object.entries(result.stats)) sums[k] = (sums[k] ?? 0) + v;
  const ran = { ...prev?.ran };
  for (const [k, v] of Object.entries(result.ran)) ran[k] = (ran[k] ?? 0) + v;
  const counts = s.sched.counts();
  const complete = COUNTED.every((k) => !counts[k] || (ran[k] ?? 0) === counts[k].done);
  return { sums, ran, complete };
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
  /**
   * The per-chunk CPU kinds (paste, blend, relabel): voxels of the chunks they ran over their
   * busy seconds (`task:<kind>`), for the runners that count them (the embedded runner).
   */
  voxelsPerBusySecond: Record<string, number>;
  peakRssMB: number;
  provider: string;
  tasks: Record<string, TaskCounts>;
  /** Failed tasks with their causes (tasks skipped because of them are counted in `tasks`). */
  failures: TaskFailure[];
  /** Input storage-chunk reads that found no file and used the fill value (io.missingChunks "fill"; this process's reads). */
  inputMissingChunks: number;
  twoStage?: TwoStageStats;
  /**
   * One-stage: tiles this run computed (each once, on the whole volume's grid) and nnU-Net's
   * tile count for the whole volume (equal when a fresh run covers the volume).
   */
  oneStage?: { tiles: number; nnunetTiles: number; measured: boolean };
  /** The tissue mask, when the run has one: what it skipped (tasks/mask.ts). */
  mask?: MaskReport;
  /**
   * io.missingChunks "fill": tasks skipped because no input storage chunk in their reach has a
   * file (written as background, no network run), per kind, and the voxels of the chunks skipped.
   */
  inputMissingSkipped?: { skippedTasks: Record<string, number>; skippedVoxels: number };
}

export interface MaskReport {
  path: string;
  level?: string;
  /** Input voxels per mask voxel. */
  factor: number[];
  /** Tasks skipped for having no tissue in reach, per kind. */
  skippedTasks: Record<string, number>;
  /** Voxels of the output chunks skipped whole (written as background, no chunk stored). */
  skippedVoxels: number;
  /** Voxels of the ROI's chunks set to background by the mask: those skipped, and outside the mask in chunks that ran. */
  maskedVoxels: number;
  /** skippedVoxels over the voxels of the ROI's chunks. */
  skippedFraction: number;
  /** As the two-stage figures: false when some reused task's counters are not in run.json. */
  measured: boolean;
}

export interface SessionOptions {
  config: TesseraConfig;
  input: string;
  output: string;
  roi?: Box;
  overwrite?: boolean;
  log: Logger;
  signal?: AbortSignal;
  /** Two-stage only: take boxes from this ground-truth label array instead of stage one (benchmark oracle). */
  oracle?: string;
  /** See OpenOptions.models. @default 'eager' */
  models?: 'eager' | 'lazy';
  /**
   * An extra ownership check (a coordinator's lease), called with the output lock's own before
   * every done-log and run.json write; it throws (FencedError) once this process must stop.
   */
  fence?: () => void;
}

export interface Session {
  readonly ctx: RunContext;
  readonly graph: TaskGraph;
  readonly identity: RunIdentity;
  readonly opened: OpenedOutput;
  readonly work: WorkStore;
  readonly tctx: TaskContext;
  readonly sched: Scheduler;
  /** Tasks reused from an earlier run, per kind. */
  readonly reused: Record<string, number>;
  /** Counts when the session opened (the progress baseline). */
  readonly counts0: Record<string, KindCounts>;
  readonly roiDoc: { begin: Box['begin']; end: Box['end'] };
  readonly t0: number;
  /** Per kind, one bit per task: its result was freed in this session (freed once, see freeAfter). */
  readonly freed: Map<string, Uint8Array>;
  /** Aborted by the caller's signal, or when the output's lock was taken over (reason: the FencedError). */
  readonly signal: AbortSignal;
  /** Throws FencedError when this process no longer owns the output (lock taken over, lease lost). */
  fence(): void;
  /** Close the inference pool and release the output's lock. */
  close(): Promise<void>;
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

function lowOf(ctx: RunContext): LowGrid | undefined {
  return ctx.config.mode === 'two-stage' ? lowGrid(ctx.src, ctx.config.stage1.spacing) : undefined;
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason ?? 'aborted'));
}

/** The input levels the run reads: the full resolution, and stage one's level in two-stage. */
function inputOf(ctx: RunContext, input: string, low: LowGrid | undefined, oracle?: string) {
  return inputIdentity(input, low ? [ctx.src.full, low.level] : [ctx.src.full], oracle, ctx.mask);
}

/**
 * A resume may extend the ROI, never drop part of it: the instance ids are numbered over the
 * whole ROI and computed anew with another one, so ids of the earlier run would stay in what
 * the new ROI leaves out (and its segmentation, described by no run). Refused before anything
 * is written; only for an output this identity would resume (another one is refused anyway).
 */
function checkResumedRoi(out: string, identity: RunIdentity, roi: Box): void {
  let prev: RunDocument | undefined;
  try {
    prev = readRunJson(out);
  } catch {
    return; // unreadable: openOutput decides
  }
  const before = prev?.roi as Box | undefined;
  if (!prev || !before || (prev.identity as RunIdentity | undefined)?.hash !== identity.hash) return;
  if (contains(roi, before)) return;
  throw new ConfigError('roi', `${boxToString(roi)} does not contain the ROI ${boxToString(before)} of the run in ${out}: resuming may only extend the ROI (ids of the earlier run would stay outside the new one); give an ROI containing ${boxToString(before)}, or --overwrite to start over`);
}

/**
 * Open the input and models, create or resume the output (refusing another run's), and build
 * the scheduler with every task an earlier run of the same identity finished marked done.
 * On error the inference pool is closed.
 */
export async function openSession(o: SessionOptions): Promise<Session> {
  const t0 = performance.now();
  if (!isVirtual(o.input) && !isRemote(o.input) && !fs.existsSync(o.input)) throw new InputError(o.input, 'no such file or directory');
  checkOutputPath(o.input, o.output);
  // Fenced (the lock taken over): stop handing out work and stop the tasks in hand at once.
  const fenceAc = new AbortController();
  const lock = lockOutput(o.output, { staleMs: o.config.io.lockStale * 1000, onFenced: (e) => fenceAc.abort(e) });
  const signal = o.signal ? AbortSignal.any([o.signal, fenceAc.signal]) : fenceAc.signal;
  const fence = () => {
    lock.check();
    o.fence?.();
  };
  const ctx = await openRun({ config: o.config, input: o.input, roi: o.roi, log: o.log, signal, models: o.models }).catch((err) => {
    lock.release();
    throw err;
  });
  const close = async () => {
    try {
      await ctx.pool.close(o.signal?.aborted ? abortReason(o.signal) : undefined);
    } finally {
      lock.release();
    }
  };
  let created = false;
  try {
    const c = ctx.config;
    const low = lowOf(ctx);
    const graph = taskGraph(c, ctx.src.shape, ctx.roi, low?.factor ?? ONE);
    const identity = runIdentity(c, ctx.cards, inputOf(ctx, o.input, low, o.oracle));
    if (!o.overwrite) checkResumedRoi(o.output, identity, ctx.roi);
    const opened = await openOutput(o.output, {
      shape: ctx.src.shape, spacing: ctx.src.spacing, unit: c.unit, chunks: c.io.outputChunk,
      classes: ctx.cards.fullres.classes, probabilities: c.output.probabilities, overwrite: o.overwrite ?? false, identity,
      format: c.output.format, shard: c.io.chunk, levels: pyramidFactors(ctx.src.spacing, c.io.chunk, c.io.outputChunk, ctx.src.shape),
    });
    created = true;
    clearTemp(o.output);
    // The merged boxes view is written again when this run completes: until then it would
    // describe the earlier run (another ROI), and it never may.
    if (opened.resumed) fs.rmSync(path.join(o.output, 'boxes.json'), { force: true });
    const work = new WorkStore(path.join(o.output, '.work'), fence);
    const tctx = taskContext(ctx, {
      out: opened.arrays, work, graph, low, oracle: o.oracle ? await openArray(o.oracle) : undefined,
    });
    const sched = new Scheduler(graph.kinds, graph.deps);
    // Instance ids are numbered over the whole ROI: with another ROI they are computed anew (and
    // their done logs start over, so they only ever hold tasks of the ROI in run.json).
    const prevRoi = opened.resumed?.roi as { begin: Box['begin']; end: Box['end'] } | undefined;
    const roiDoc = { begin: ctx.roi.begin, end: ctx.roi.end };
    if (opened.resumed && (!prevRoi || boxToString(prevRoi) !== boxToString(ctx.roi))) await work.forget(work.loggedKinds().filter(isInstanceKind));
    const reused = opened.resumed ? await restore(sched, work, graph.kinds.map((k) => k.name)) : {};
    const counts0 = sched.counts();
    // The task totals let `tessera status` show progress from the done logs alone.
    fence();
    await updateRunJson(o.output, { roi: roiDoc, totals: Object.fromEntries(Object.entries(counts0).map(([k, v]) => [k, v.total])) });
    return { ctx, graph, identity, opened, work, tctx, sched, reused, counts0, roiDoc, t0, close, freed: new Map(), signal, fence };
  } catch (err) {
    // This run's own output must not say "running" after it gave up (unless it is no longer its own).
    if (created && !isTesseraError(err, 'FencedError')) await markFailed(o.output, err);
    await close();
    throw err;
  }
}

/**
 * After task `t` is done: delete the intermediate results no task of this run needs any more
 * (the free is logged first: a resume that needs one again recomputes it, see restore()).
 */
export async function freeAfter(s: Session, t: TaskRef): Promise<void> {
  for (const d of s.graph.deps) {
    const freeing = freeingOf(d.needs);
    if (d.kind !== t.kind || !freeing) continue;
    const r = s.sched.upstream(t, d.needs);
    const k = s.graph.kinds.find((x) => x.name === d.needs)!;
    let bits = s.freed.get(k.name);
    if (!bits) s.freed.set(k.name, (bits = new Uint8Array(Math.ceil(rangeSize(k.range) / 8))));
    for (let z = r.lo[0]; z < r.hi[0]; z++) for (let y = r.lo[1]; y < r.hi[1]; y++) for (let x = r.lo[2]; x < r.hi[2]; x++) {
      const u: TaskRef = { kind: d.needs, index: [z, y, x] };
      if (!s.sched.consumersDone(u)) continue;
      // Consumers that finish together each see the upstream task's consumers all done: free it
      // once (without this a chunk's label was deleted ~16 times over, each with a freed line).
      const i = linearOf(k.range, u.index);
      if (bits[i >> 3] & (1 << (i & 7))) continue;
      bits[i >> 3] |= 1 << (i & 7);
      await s.work.markFreed(u.kind, u.index);
      await freeing.free(s.work, u.index);
      if (u.kind === 'stage1') s.tctx.stage1Cache.delete(indexId(u.index));
    }
  }
}

/**
 * Report progress from the scheduler's own counters: every kind (at start), or one kind after
 * one of its tasks finished. (Counts include tasks restored or drained, so bars start where the
 * run stands.)
 */
export function reportProgress(s: Session, progress: ((kind: string, done: number, total: number, voxels?: number) => void) | undefined, kind?: string): void {
  if (!progress) return;
  // The run's voxels (its ROI): the kind that writes the output turns them into voxels done.
  const voxels = volumeOf(s.roiDoc);
  for (const [k, v] of Object.entries(s.sched.counts())) if (kind === undefined || k === kind) progress(k, v.done, v.total, voxels);
}

/** Does this process still own the output (no fence given: assumed)? */
function owned(fence: (() => void) | undefined): boolean {
  try {
    fence?.();
    return true;
  } catch {
    return false;
  }
}

/**
 * Run `f`; if it throws, record the run as failed with the error before passing it on — but
 * a fenced run writes nothing more: the output is another process's now.
 */
export async function guard<T>(output: string, f: () => Promise<T>, fence?: () => void): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (!isTesseraError(err, 'FencedError') && owned(fence)) await markFailed(output, err);
    throw err;
  }
}

export interface FinishOptions {
  input: string;
  output: string;
  peakRss: number;
  /** Extra busy seconds (a distributed run's inference time is spent in the workers). */
  busy?: Record<string, number>;
  provider?: string;
}

/** The kinds whose rate the report gives: per chunk, CPU only (the network's rate is elsewhere). */
const RATED: readonly TaskKind[] = ['paste', 'blend', 'relabel'];

/** drive()'s voxelsOf for a session: a rated task's chunk, clipped to the volume. */
export function chunkVoxelsOf(s: Session): (t: TaskRef) => number {
  return (t) => (RATED.includes(t.kind as TaskKind) ? volumeOf(chunkBox(t.index, s.graph.chunk, s.graph.volume)) : 0);
}

function rates(voxels: Record<string, number>, busy: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of RATED) if (voxels[k] && busy[`task:${k}`]) out[k] = Math.round(voxels[k] / busy[`task:${k}`]);
  return out;
}

/** The report of a driven session, written into run.json with the final status. */
export async function finishSession(s: Session, result: DriveResult, o: FinishOptions): Promise<RunReport> {
  const { ctx, graph, sched } = s;
  const c = ctx.config;
  // Fenced while the last tasks ended (the drive stopped for it): nothing more is written.
  s.fence();
  const counts = sched.counts();
  const failures = sched.failures().map((f) => ({ task: f.task, error: f.reason }));
  const status: RunReport['status'] = result.interrupted ? 'interrupted' : failures.length ? 'failed' : 'complete';
  const tasks: Record<string, TaskCounts> = {};
  for (const [k, v] of Object.entries(counts)) {
    tasks[k] = { total: v.total, ran: result.ran[k] ?? 0, reused: s.reused[k] ?? 0, failed: v.failed, skipped: v.skipped };
  }
  let twoStage: TwoStageStats | undefined;
  const carried = carriedStats(s, result);
  const st = carried.complete ? carried.sums : result.stats;
  if (c.mode === 'two-stage') {
    const paste = graph.kinds.find((k) => k.name === 'paste')!;
    if (status === 'complete') await writeBoxesJson(o.output, graph.kinds.find((k) => k.name === 'stage2')!.range, c.pack.canvas, BOXES_JSON_LIMIT);
    twoStage = {
      candidates: st.candidates ?? 0,
      parents: st.parents ?? 0,
      children: st.children ?? 0,
      boxes: st.boxes ?? 0,
      canvases: st.canvases ?? 0,
      fillRatio: st.canvasVoxels ? (st.filled ?? 0) / st.canvasVoxels : 0,
      runFillRatio: st.ranVoxels ? (st.filled ?? 0) / st.ranVoxels : 0,
      coverage: (st.covered ?? 0) / Math.max(1, rangeVoxels(paste.range, graph.chunk, graph.volume)),
      readAmplification: st.needed ? (st.decoded ?? 0) / st.needed : 0,
      context: { given: c.pack.context, ...(ctx.cards.fullres.reach ? { reach: ctx.cards.fullres.reach.voxels, reachAtLeast: ctx.cards.fullres.reach.atLeast } : {}) },
      measured: carried.complete,
    };
  }
  const oneStage = c.mode === 'one-stage'
    ? { tiles: st.tiles ?? 0, nnunetTiles: nnunetTiles(graph.volume.end, c.baseline.patch, c.baseline.step), measured: carried.complete }
    : undefined;
  const replaces = readRunJson(o.output)?.replaces as string | undefined;
  const wall = (performance.now() - s.t0) / 1000;
  const voxels = volumeOf(ctx.roi);
  const busy: Record<string, number> = { ...ctx.timings.busy(), network: Math.round(ctx.pool.busyMs) / 1000 };
  for (const [k, v] of Object.entries(o.busy ?? {})) busy[k] = Math.round(((busy[k] ?? 0) + v) * 1000) / 1000;
  const report: RunReport = {
    mode: c.mode,
    preset: c.name,
    input: o.input,
    output: o.output,
    roi: boxToString(ctx.roi),
    voxels,
    status,
    seconds: { ...ctx.timings.seconds(), total: Math.round(wall * 1000) / 1000 },
    busySeconds: busy,
    voxelsPerSecond: Math.round(voxels / wall),
    voxelsPerBusySecond: rates(result.voxels, busy),
    peakRssMB: Math.round(Math.max(o.peakRss, process.memoryUsage().rss) / 2 ** 20),
    provider: o.provider ?? ctx.pool.provider,
    tasks,
    failures,
    inputMissingChunks: ctx.missing.missing,
    twoStage,
    oneStage,
    ...(c.io.missingChunks === 'fill' ? { inputMissingSkipped: { skippedTasks: prefixed(st, 'missing.'), skippedVoxels: st.missingVoxels ?? 0 } } : {}),
    ...(ctx.mask ? { mask: maskReport(ctx.mask, st, rangeVoxels(graph.kinds.find((k) => k.name === (c.mode === 'one-stage' ? 'blend' : 'paste'))!.range, graph.chunk, graph.volume), carried.complete) } : {}),
  };
  s.fence();
  try {
    await finishOutput(o.output, {
      identity: s.identity,
      startedAt: s.opened.resumed?.startedAt,
      report,
      config: c,
      roi: s.roiDoc,
      totals: Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, v.total])),
      taskStats: { sums: carried.sums, ran: carried.ran } satisfies StoredStats,
      models: {
        fullres: { path: c.models.fullres, sha256: ctx.cards.fullres.sha256 },
        ...(ctx.cards.lowres && c.mode === 'two-stage' ? { lowres: { path: c.models.lowres, sha256: ctx.cards.lowres.sha256 } } : {}),
      },
      versions: { ...versions(), node: process.version, host: os.hostname() },
      ...(replaces && status !== 'complete' ? { replaces } : {}),
    }, status);
  } catch (err) {
    // Even the final run.json did not fit (disk full): it must not keep saying "running".
    await markFailed(o.output, err);
    throw err;
  }
  // The output this run replaced (--overwrite) was kept until now.
  if (replaces && status === 'complete') fs.rmSync(replaces, { recursive: true, force: true });
  return report;
}

/** Counters named `<prefix><kind>`, by kind. */
function prefixed(st: Record<string, number>, prefix: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(st)) if (k.startsWith(prefix)) out[k.slice(prefix.length)] = v;
  return out;
}

function maskReport(m: TissueMask, st: Record<string, number>, chunkVoxels: number, measured: boolean): MaskReport {
  const skippedTasks = prefixed(st, 'skip.');
  const skippedVoxels = st.skippedVoxels ?? 0;
  return {
    path: m.spec.path, ...(m.spec.level !== undefined ? { level: m.spec.level } : {}), factor: [...m.factor], skippedTasks, skippedVoxels,
    maskedVoxels: st.maskedVoxels ?? 0, skippedFraction: chunkVoxels ? skippedVoxels / chunkVoxels : 0, measured,
  };
}

/**
 * Mark what an earlier run finished as done. A task whose intermediate result was freed stays
 * done unless a task of this run that is not done needs it (a larger ROI, a failed task to
 * retry): then it is reopened, and so on upstream, until every unfinished task can get its
 * inputs. Returns the tasks reused per kind.
 */
async function restore(sched: Scheduler, work: WorkStore, kinds: readonly string[]): Promise<Record<string, number>> {
  for await (const batch of work.done(kinds)) for (const e of batch) sched.restore(e);
  sched.compact();
  for (let changed = true; changed;) {
    changed = false;
    for await (const batch of work.freed(kinds.filter((k) => freeingOf(k)?.rerun))) {
      for (const e of batch) {
        if (sched.state(e) === 'done' && !sched.consumersDone(e)) {
          sched.reopen(e);
          changed = true;
        }
      }
    }
  }
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(sched.counts())) out[k] = v.done;
  return out;
}

export interface AttachOptions {
  config: TesseraConfig;
  input: string;
  output: string;
  roi: Box;
  /** The identity hash the run was registered with: the output and this process's models must match it. */
  identity: string;
  log: Logger;
  signal?: AbortSignal;
}

/**
 * A worker's view of a run another process opened: the same task context, over the existing
 * output. Refuses an output or models whose identity is not the run's (a worker never writes
 * into another run's output, nor computes with other models). Models load on first use.
 */
export async function attachRun(o: AttachOptions): Promise<TaskContext> {
  const ctx = await openRun({ config: o.config, input: o.input, roi: o.roi, log: o.log, signal: o.signal, models: 'lazy' });
  try {
    const mine = runIdentity(ctx.config, ctx.cards, inputOf(ctx, o.input, lowOf(ctx)));
    if (mine.hash !== o.identity) {
      throw new OutputError(o.output, `this worker's config or models give run identity ${mine.hash.slice(0, 12)}, the run was registered as ${o.identity.slice(0, 12)} (models: ${Object.entries(mine.models).map(([k, v]) => `${k} ${v.slice(0, 12)}`).join(', ')})`);
    }
    const doc = readRunJson(o.output);
    const recorded = (doc?.identity as RunIdentity | undefined)?.hash;
    if (recorded !== o.identity) {
      throw new OutputError(o.output, recorded ? `holds run ${recorded.slice(0, 12)}, not ${o.identity.slice(0, 12)}` : 'has no run.json with a run identity: the coordinator has not created it');
    }
    const c = ctx.config;
    const low = lowOf(ctx);
    const graph = taskGraph(c, ctx.src.shape, ctx.roi, low?.factor ?? ONE);
    const out = await openOutputArrays(o.output, c.output.probabilities);
    return taskContext(ctx, { out, work: new WorkStore(path.join(o.output, '.work')), graph, low });
  } catch (err) {
    await ctx.pool.close();
    throw err;
  }
}
