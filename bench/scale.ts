// The scale benchmark: does the control plane keep up with a whole-fly-brain run? Two parts,
// measured in one process, reported as rates and ratios (the numbers depend on the machine;
// nothing here asserts a time):
//
// 1. The scheduler over the FAFB chunk grid (fafb preset, 7062 × 301923 × 376277 voxels,
//    io.chunk [96, 1024, 1024], stage-one factor [1, 5, 5]): taskGraph → Scheduler, driven with
//    a no-op executor, both in a tight next()/done() loop and through drive() (the runner's
//    loop). All ≈ 10⁷–10⁸ tasks take longer than a benchmark should on a small machine, so on
//    the full grid a prefix is driven and the whole run extrapolated (labelled as such); a
//    1/64-volume grid is driven to completion to show the rate of a whole run, tail included.
// 2. Box planning alone (the boxes task's mergeFragments) on ≈ 10⁶ synthetic fragments:
//    objects of cleft size anchored per chunk, generated on demand from a seed derived from the
//    chunk index (never the whole volume's fragments in memory), split by chunk write boxes;
//    each chunk merges the fragments of itself and its 26 neighbours, exactly as the boxes task
//    does. Two grid sizes and a sample of the full FAFB grid show the time per chunk does not
//    grow with the volume.
//
//   node --import tsx bench/scale.ts [--quick] [--json FILE] [--prefix TASKS] [--concurrency N]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type Box, type Vec3, boxOfShape, grow, intersect, isEmpty, volumeOf } from '../shared/geometry/box.ts';
import { chunkBox, chunkRange, rangeShape } from '../shared/geometry/grid.ts';
import { preset } from '../shared/config/presets.ts';
import { scaleFactor } from '../shared/geometry/scale.ts';
import { taskGraph } from '../shared/tasks/graph.ts';
import { Scheduler, type TaskRef } from '../shared/scheduler.ts';
import { drive } from '../shared/run/drive.ts';
import { type Fragment, latticeOf, tilesMeeting } from '../shared/pipeline/boxes-fragments.ts';
import { type MergeOptions, mergeFragments } from '../shared/pipeline/boxes-merge.ts';
import { hashInts, mulberry32 } from '../shared/synth/random.ts';

export const FAFB_SHAPE: Vec3 = [7062, 301923, 376277];
/** stage1.spacing / spacing of the fafb preset ([40, 20, 20] / [40, 4, 4]). */
export const FAFB_FACTOR: Vec3 = [1, 5, 5];

const MiB = 2 ** 20;
const TARGET = { tasksPerS: 100_000, schedRssMiB: 512, boxesS: 60, boxesRssMiB: 1024 };

// ---------------------------------------------------------------------------------------------
// Report

export interface MemPeak {
  /** RSS when the part started (after a GC): the process's baseline (Node, tsx, modules). */
  rssStartMiB: number;
  /** Peak RSS sampled every 100 ms during the part (the whole process, baseline included). */
  rssPeakMiB: number;
  heapUsedStartMiB: number;
  heapUsedPeakMiB: number;
  samples: number;
}

export interface SchedRun {
  label: string;
  /** `loop`: sched.next(n) / sched.done(t) in a tight loop; `drive`: drive() with a no-op executor. */
  mode: 'loop' | 'drive';
  volume: Vec3;
  /** Tasks per kind in the graph. */
  kinds: Record<string, number>;
  totalTasks: number;
  /** Graph + Scheduler construction. */
  buildS: number;
  /** Tasks completed (done) in this run. */
  tasksDone: number;
  /** Whether every task of the graph completed (false for a prefix). */
  complete: boolean;
  wallS: number;
  /** Process CPU time (user + system, all threads) over the same span: less sensitive to other load. */
  cpuS: number;
  tasksPerS: number;
  /** Tasks/s over the last tenth of the run (the steady rate, not the warm-up). */
  tasksPerSLastTenth: number;
  /** Progress points: tasks done at each second mark (for the rate over time). */
  progress: Array<{ tasks: number; s: number }>;
  /** For a prefix: the whole graph's time at the measured rates. Extrapolated, not measured. */
  extrapolatedS?: { atMeanRate: number; atLastTenthRate: number };
  concurrency: number;
  mem: MemPeak;
  /**
   * Peak ready-queue length per kind (ready and not handed out), and peak length of the queue's
   * backing array, read from the scheduler's private fields (undefined where they are absent).
   */
  readyPeak?: Record<string, { queued: number; array: number; out: number }>;
  error?: string;
}

export interface BoxRun {
  label: string;
  /** The volume (voxels) and its chunk grid. */
  volume: Vec3;
  grid: Vec3;
  /** Chunks drawn at random from the grid instead of the whole grid. */
  sampled: boolean;
  /** Chunks planned (the whole grid, or a sample of it). */
  chunks: number;
  /** Chunks with all 26 neighbours inside the grid. */
  interiorChunks: number;
  /** Objects anchored in the planned chunks. */
  objects: number;
  /** Fragments owned by the planned chunks (objects split by chunk write boxes). */
  fragments: number;
  /** Fragments merged, summed over chunks (each chunk sees its own and its 26 neighbours'). */
  fragmentsSeen: number;
  boxes: number;
  parents: number;
  children: number;
  /** mergeFragments alone. */
  mergeS: number;
  /** Generating the neighbourhoods' fragments (the benchmark's own cost, not Tessera's). */
  generateS: number;
  wallS: number;
  /** Process CPU time (user + system, all threads) over the same span. */
  cpuS: number;
  boxesPerS: number;
  fragmentsPerS: number;
  usPerChunk: number;
  usPerInteriorChunk: number;
  /** Median over batches of 64 chunks of the merge's µs per chunk (robust to other load and GC bursts). */
  usPerChunkMedian: number;
  mem: MemPeak;
}

export interface ScaleReport {
  quick: boolean;
  when: string;
  machine: { cpus: number; model: string; memGiB: number; node: string; platform: string; loadAvgStart: number[]; loadAvgEnd: number[] };
  commit?: string;
  /** Measured source files with uncommitted changes when the bench ran. */
  dirty?: string[];
  scheduler: SchedRun[];
  boxes: BoxRun[];
  /** Process-wide peak RSS (getrusage maxrss) at the end, all parts together. */
  maxRssMiB: number;
  totalS: number;
}

// ---------------------------------------------------------------------------------------------
// Memory

let gcFn: (() => void) | undefined;
function gc(): void {
  if (!gcFn) {
    const g = (globalThis as { gc?: () => void }).gc;
    if (g) gcFn = g;
    else {
      v8.setFlagsFromString('--expose-gc');
      gcFn = vm.runInNewContext('gc') as () => void;
    }
  }
  gcFn();
}

class MemWatch {
  private last = 0;
  private timer?: NodeJS.Timeout;
  readonly peak: MemPeak;
  private readonly extra?: () => void;
  constructor(extra?: () => void) {
    this.extra = extra;
    gc();
    const m = process.memoryUsage();
    this.peak = {
      rssStartMiB: m.rss / MiB, rssPeakMiB: m.rss / MiB,
      heapUsedStartMiB: m.heapUsed / MiB, heapUsedPeakMiB: m.heapUsed / MiB, samples: 1,
    };
    this.last = performance.now();
    // Fires only when the event loop gets a turn; tight loops call poll() themselves.
    this.timer = setInterval(() => this.sample(performance.now()), 100);
    this.timer.unref();
  }

  /** Sample when 100 ms have passed since the last sample. */
  poll(): void {
    const now = performance.now();
    if (now - this.last >= 100) this.sample(now);
  }

  sample(now: number): void {
    this.last = now;
    const m = process.memoryUsage();
    const p = this.peak;
    p.rssPeakMiB = Math.max(p.rssPeakMiB, m.rss / MiB);
    p.heapUsedPeakMiB = Math.max(p.heapUsedPeakMiB, m.heapUsed / MiB);
    p.samples++;
    this.extra?.();
  }

  stop(): MemPeak {
    this.sample(performance.now());
    clearInterval(this.timer);
    return this.peak;
  }
}

/** The scheduler's ready queues, read through its private fields (a benchmark's peek, nothing more). */
function readyProbe(s: Scheduler): { sample(): void; peak: Record<string, { queued: number; array: number; out: number }> } | undefined {
  type K = { spec?: { name?: unknown }; ready?: unknown; head?: unknown; out?: unknown };
  const ks = (s as unknown as { kinds?: unknown }).kinds;
  if (!Array.isArray(ks)) return undefined;
  const kinds = ks as K[];
  if (!kinds.every((k) => typeof k?.spec?.name === 'string' && Array.isArray(k.ready) && typeof k.head === 'number' && k.out instanceof Set)) return undefined;
  const peak: Record<string, { queued: number; array: number; out: number }> = {};
  for (const k of kinds) peak[k.spec!.name as string] = { queued: 0, array: 0, out: 0 };
  return {
    peak,
    sample() {
      for (const k of kinds) {
        const p = peak[k.spec!.name as string];
        const ready = k.ready as number[];
        p.queued = Math.max(p.queued, ready.length - (k.head as number));
        p.array = Math.max(p.array, ready.length);
        p.out = Math.max(p.out, (k.out as Set<number>).size);
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Part 1: the scheduler

interface SchedCase {
  label: string;
  volume: Vec3;
  /** Stop after this many tasks (a prefix); undefined: drive the whole graph. */
  limit?: number;
  mode: 'loop' | 'drive';
  concurrency: number;
}

function done(s: Scheduler): number {
  let n = 0;
  for (const c of Object.values(s.counts())) n += c.done;
  return n;
}

export async function schedulerRun(c: SchedCase): Promise<SchedRun> {
  const t0 = performance.now();
  const config = preset('fafb')!;
  const graph = taskGraph(config, c.volume, boxOfShape(c.volume), FAFB_FACTOR);
  const sched = new Scheduler(graph.kinds, graph.deps);
  const buildS = (performance.now() - t0) / 1000;
  const kinds: Record<string, number> = {};
  for (const [k, v] of Object.entries(sched.counts())) kinds[k] = v.total;
  const totalTasks = Object.values(kinds).reduce((a, b) => a + b, 0);
  const probe = readyProbe(sched);
  const watch = new MemWatch(probe ? () => probe.sample() : undefined);

  const progress: Array<{ tasks: number; s: number }> = [{ tasks: 0, s: 0 }];
  let n = 0;
  let nextMark = 1;
  const start = performance.now();
  const tick = (): void => {
    watch.poll();
    const s = (performance.now() - start) / 1000;
    if (s >= nextMark) {
      progress.push({ tasks: n, s });
      nextMark = Math.floor(s) + 1;
    }
  };
  const limit = c.limit ?? Infinity;
  const cpu0 = process.cpuUsage();
  let error: string | undefined;
  try {
    if (c.mode === 'loop') {
      for (let b = 0; n < limit; b++) {
        const ts = sched.next(c.concurrency);
        if (ts.length === 0) break;
        for (const t of ts) sched.done(t);
        n += ts.length;
        if ((b & 15) === 0) tick();
      }
      if (c.limit === undefined && !sched.finished) throw new Error(`scheduler stalled: ${JSON.stringify(sched.counts())}`);
    } else {
      const ac = new AbortController();
      const none: Record<string, number> = {};
      const exec = async (_t: TaskRef): Promise<Record<string, number>> => {
        n++;
        if ((n & 1023) === 0) tick();
        if (n >= limit && !ac.signal.aborted) ac.abort();
        return none;
      };
      await drive(sched, exec, { concurrency: c.concurrency, retries: 0, signal: ac.signal });
    }
  } catch (err) {
    error = (err as Error)?.message ?? String(err);
  }
  const wallS = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuS = (cpu.user + cpu.system) / 1e6;
  const mem = watch.stop();
  const tasksDone = done(sched);
  progress.push({ tasks: tasksDone, s: wallS });

  // The last tenth of the run, from the progress marks.
  const cut = progress.find((p) => p.s >= wallS * 0.9) ?? progress[0];
  const lastRate = wallS - cut.s > 0 ? (tasksDone - cut.tasks) / (wallS - cut.s) : tasksDone / wallS;
  const rate = tasksDone / wallS;
  const complete = tasksDone === totalTasks;
  return {
    label: c.label, mode: c.mode, volume: c.volume, kinds, totalTasks, buildS, tasksDone, complete, wallS, cpuS,
    tasksPerS: rate, tasksPerSLastTenth: lastRate, progress, concurrency: c.concurrency, mem,
    ...(complete ? {} : { extrapolatedS: { atMeanRate: totalTasks / rate, atLastTenthRate: totalTasks / lastRate } }),
    ...(probe ? { readyPeak: probe.peak } : {}),
    ...(error ? { error } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// Part 2: box planning

/** Objects of cleft size anchored in chunk `c` (begin corner inside its write box), clipped to the volume. */
export function anchoredObjects(c: Vec3, chunk: Vec3, volume: Box, seed: number, perChunk: number): Box[] {
  const w = chunkBox(c, chunk, volume);
  if (isEmpty(w)) return [];
  // Integers throughout (| 0, all coordinates are < 2³¹): V8 keeps them small integers.
  const r = mulberry32(hashInts(seed, c[0], c[1], c[2]));
  const n = Math.round(perChunk * (0.5 + r())); // perChunk on average
  const out: Box[] = [];
  const lo = [2, 20, 20];
  const hi = [8, 80, 80];
  for (let i = 0; i < n; i++) {
    const b: number[] = [];
    const e: number[] = [];
    for (let a = 0; a < 3; a++) {
      const begin = w.begin[a] + ((r() * (w.end[a] - w.begin[a])) | 0);
      const size = lo[a] + ((r() * (hi[a] - lo[a] + 1)) | 0);
      b.push(begin);
      e.push(Math.min(volume.end[a], begin + size));
    }
    out.push({ begin: b as unknown as Vec3, end: e as unknown as Vec3 });
  }
  return out;
}

/**
 * Anchored objects per chunk, memoised for the chunks a raster sweep is about to revisit
 * (least recently used dropped beyond `cap` chunks: bounded by a few rows of the grid, never the
 * volume).
 */
export class ObjectCache {
  private readonly map = new Map<number, Box[]>();
  private readonly grid: Vec3;
  private readonly chunk: Vec3;
  private readonly volume: Box;
  private readonly seed: number;
  private readonly perChunk: number;
  private readonly cap: number;

  constructor(grid: Vec3, chunk: Vec3, volume: Box, seed: number, perChunk: number, cap: number) {
    this.grid = grid;
    this.chunk = chunk;
    this.volume = volume;
    this.seed = seed;
    this.perChunk = perChunk;
    this.cap = cap;
  }

  get(c: Vec3): Box[] {
    const key = (c[0] * this.grid[1] + c[1]) * this.grid[2] + c[2];
    let v = this.map.get(key);
    if (v) {
      this.map.delete(key);
    } else {
      v = anchoredObjects(c, this.chunk, this.volume, this.seed, this.perChunk);
      if (this.map.size >= this.cap) this.map.delete(this.map.keys().next().value!);
    }
    this.map.set(key, v);
    return v;
  }
}

/**
 * The fragments of the chunks within one chunk of `c` (its view: the boxes task of a block of one
 * chunk reads the blocks within boxesReach, one chunk for the fafb preset): pieces of the objects
 * anchored in c-2..c+1 (objects reach at most one chunk forward), cut by the chunks' write boxes,
 * cells = the piece (cell = 1 voxel), box = the piece grown by `margin` and clipped to the volume
 * (as extractFragments: not grown to the crop, the merge grows whole regions), score = its volume;
 * and the contacts stage one's borders would give between the pieces of one object in touching
 * chunks. Each chunk is its own stage-one block here (the preset's blocks hold 1×5×5 chunks:
 * the merge's work per fragment is the same).
 */
export function neighbourhoodFragments(
  c: Vec3, grid: Vec3, chunk: Vec3, volume: Box, objects: ObjectCache, margin: Vec3, lattice: Vec3,
): { fragments: Fragment[]; contacts: Float64Array; own: number; objects: number } {
  const fragments: Fragment[] = [];
  const contacts: number[] = [];
  let own = 0;
  let count = 0;
  const lo = [0, 1, 2].map((a) => Math.max(0, c[a] - 2));
  const hi = [0, 1, 2].map((a) => Math.min(grid[a], c[a] + 2));
  for (let az = lo[0]; az < hi[0]; az++) for (let ay = lo[1]; ay < hi[1]; ay++) for (let ax = lo[2]; ax < hi[2]; ax++) {
    const objs = objects.get([az, ay, ax]);
    if (az === c[0] && ay === c[1] && ax === c[2]) count += objs.length;
    const anchor = (az * grid[1] + ay) * grid[2] + ax;
    for (let i = 0; i < objs.length; i++) {
      const o = objs[i];
      // The chunks the object spans, limited to the view; its pieces touch one another.
      const f0 = [0, 1, 2].map((a) => Math.max(c[a] - 1, (o.begin[a] / chunk[a]) | 0));
      const f1 = [0, 1, 2].map((a) => Math.min(c[a] + 1, ((o.end[a] - 1) / chunk[a]) | 0));
      const first = fragments.length;
      for (let z = f0[0]; z <= f1[0]; z++) for (let y = f0[1]; y <= f1[1]; y++) for (let x = f0[2]; x <= f1[2]; x++) {
        const n: Vec3 = [z, y, x];
        const cells = intersect(o, chunkBox(n, chunk, volume));
        if (isEmpty(cells)) continue;
        const b = intersect(grow(cells, margin), volume);
        // Unique per (object, chunk): the anchor chunk, the object's number there (< 2^16: a few
        // hundred at FAFB density), then which of the 27 chunks around its anchor.
        if (i >= 65536) throw new RangeError(`${objs.length} objects anchored in one chunk: more than the ids here can number`);
        const id = ((anchor * 65536 + i) * 27 + (z - az + 1) * 9 + (y - ay + 1) * 3 + (x - ax + 1)) + 1;
        fragments.push({ id, block: n, cells, box: b, score: volumeOf(cells), tiles: tilesMeeting(b, lattice) });
        if (z === c[0] && y === c[1] && x === c[2]) own++;
      }
      for (let k = first + 1; k < fragments.length; k++) contacts.push(fragments[first].id, fragments[k].id);
    }
  }
  return { fragments, contacts: Float64Array.from(contacts), own, objects: count };
}

interface BoxCase {
  label: string;
  volume: Vec3;
  /** Plan every chunk of the grid, or `sample` chunks drawn from it. */
  sample?: number;
  seed: number;
  perChunk: number;
}

export function boxRun(bc: BoxCase): BoxRun {
  const config = preset('fafb')!;
  const chunk = config.io.chunk;
  const volume = boxOfShape(bc.volume);
  const grid = rangeShape(chunkRange(volume, chunk));
  // As the boxes task passes them.
  const o: MergeOptions = {
    nmsThreshold: config.boxes.nmsThreshold, nmmThreshold: config.boxes.nmmThreshold, metric: config.boxes.metric, mode: config.boxes.mode,
    recrop: config.boxes.recrop, cropThreshold: config.boxes.cropThreshold, minShape: config.pack.crop, bounds: volume,
  };
  const watch = new MemWatch();
  const r: BoxRun = {
    label: bc.label, volume: bc.volume, grid, sampled: bc.sample !== undefined, chunks: 0, interiorChunks: 0, objects: 0, fragments: 0, fragmentsSeen: 0,
    boxes: 0, parents: 0, children: 0, mergeS: 0, generateS: 0, wallS: 0, cpuS: 0, boxesPerS: 0, fragmentsPerS: 0,
    usPerChunk: 0, usPerInteriorChunk: 0, usPerChunkMedian: 0, mem: watch.peak,
  };
  let interiorMs = 0;
  // A raster sweep revisits anchors within a few rows; a random sample never does (64: the one chunk's).
  const cache = new ObjectCache(grid, chunk, volume, bc.seed, bc.perChunk, bc.sample === undefined ? 32 * (grid[2] + 4) : 64);
  // Chunks are planned in batches: the neighbourhoods of a batch are generated first, then
  // merged, so the generator's garbage is not collected inside the merge's timing. A batch's
  // fragments (≈ 300 a chunk) are the only ones held.
  const BATCH = 64;
  const batch: Vec3[] = [];
  const perBatch: number[] = [];
  const flush = (): void => {
    if (batch.length === 0) return;
    let batchMs = 0;
    const t0 = performance.now();
    const nbs = batch.map((c) => neighbourhoodFragments(c, grid, chunk, volume, cache, config.boxes.margin, latticeOf(config.boxes)));
    const t1 = performance.now();
    r.generateS += (t1 - t0) / 1000;
    batch.forEach((c, i) => {
      const nb = nbs[i];
      const m0 = performance.now();
      const owned = mergeFragments(nb.fragments, nb.contacts, chunkBox(c, chunk, volume), o);
      const ms = performance.now() - m0;
      r.mergeS += ms / 1000;
      batchMs += ms;
      r.chunks++;
      r.objects += nb.objects;
      r.fragments += nb.own;
      r.fragmentsSeen += nb.fragments.length;
      r.boxes += owned.length;
      for (const b of owned) {
        if (b.role === 'parent') r.parents++;
        else r.children++;
      }
      if (c.every((v, a) => v > 0 && v < grid[a] - 1)) {
        r.interiorChunks++;
        interiorMs += ms;
      }
    });
    perBatch.push((batchMs * 1000) / batch.length);
    batch.length = 0;
    watch.poll();
  };
  const one = (c: Vec3): void => {
    batch.push(c);
    if (batch.length === BATCH) flush();
  };
  const start = performance.now();
  const cpu0 = process.cpuUsage();
  if (bc.sample === undefined) {
    for (let z = 0; z < grid[0]; z++) for (let y = 0; y < grid[1]; y++) for (let x = 0; x < grid[2]; x++) one([z, y, x]);
  } else {
    const pick = mulberry32(hashInts(bc.seed, 0x5a5a));
    for (let i = 0; i < bc.sample; i++) {
      one([(pick() * grid[0]) | 0, (pick() * grid[1]) | 0, (pick() * grid[2]) | 0]);
    }
  }
  flush();
  r.wallS = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  r.cpuS = (cpu.user + cpu.system) / 1e6;
  r.mem = watch.stop();
  r.boxesPerS = r.boxes / r.mergeS;
  r.fragmentsPerS = r.fragmentsSeen / r.mergeS;
  r.usPerChunk = (r.mergeS * 1e6) / r.chunks;
  r.usPerInteriorChunk = r.interiorChunks ? (interiorMs * 1000) / r.interiorChunks : NaN;
  perBatch.sort((a, b) => a - b);
  r.usPerChunkMedian = perBatch.length ? perBatch[perBatch.length >> 1] : NaN;
  return r;
}

// ---------------------------------------------------------------------------------------------
// The bench

function scaled(shape: Vec3, per: number): Vec3 {
  return shape.map((s) => Math.ceil(s / per)) as unknown as Vec3;
}

function gridVolume(grid: Vec3): Vec3 {
  const chunk = preset('fafb')!.io.chunk;
  return grid.map((g, a) => g * chunk[a]) as unknown as Vec3;
}

function gitInfo(): { commit?: string; dirty?: string[] } {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  try {
    const commit = execFileSync('git', ['--no-optional-locks', 'rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    const files = ['shared/scheduler.ts', 'shared/tasks/graph.ts', 'shared/run/drive.ts', 'shared/geometry/grid.ts', 'shared/geometry/morton.ts', 'shared/pipeline/boxes-merge.ts'];
    const status = execFileSync('git', ['--no-optional-locks', 'status', '--porcelain', '--', ...files], { cwd: root, encoding: 'utf8' });
    const dirty = status.split('\n').filter(Boolean).map((l) => l.slice(3));
    return { commit, dirty };
  } catch {
    return {};
  }
}

const say = (s: string): void => {
  process.stderr.write(s + '\n');
};

export interface ScaleOptions {
  quick?: boolean;
  json?: string;
  /** Tasks driven on the full FAFB grid (a prefix). @default 5,000,000 (quick: 100,000) */
  prefix?: number;
  /** Tasks in hand at once (drive) / per next() (loop). @default 256 */
  concurrency?: number;
}

export async function runScaleBench(o: ScaleOptions): Promise<ScaleReport> {
  const t0 = performance.now();
  const quick = o.quick ?? false;
  const concurrency = o.concurrency ?? 256;
  const prefix = o.prefix ?? (quick ? 100_000 : 5_000_000);
  const cpus = os.cpus();
  const report: ScaleReport = {
    quick, when: new Date().toISOString(),
    machine: {
      cpus: cpus.length, model: cpus[0]?.model ?? '?', memGiB: os.totalmem() / 2 ** 30, node: process.version,
      platform: `${os.platform()} ${os.release()}`, loadAvgStart: os.loadavg(), loadAvgEnd: [],
    },
    ...gitInfo(),
    scheduler: [], boxes: [], maxRssMiB: 0, totalS: 0,
  };

  // Part 1. The full grid first, so its peak RSS is not inflated by earlier parts.
  const small = quick ? scaled(FAFB_SHAPE, 10) : scaled(FAFB_SHAPE, 4);
  const smallLabel = quick ? 'FAFB / 1000 (volume / 10 per axis)' : 'FAFB / 64 (volume / 4 per axis)';
  const cases: SchedCase[] = [
    { label: 'FAFB, prefix', volume: FAFB_SHAPE, limit: prefix, mode: 'loop', concurrency },
    { label: 'FAFB, prefix', volume: FAFB_SHAPE, limit: prefix, mode: 'drive', concurrency },
    { label: smallLabel, volume: small, mode: 'loop', concurrency },
    { label: smallLabel, volume: small, mode: 'drive', concurrency },
  ];
  for (const c of cases) {
    say(`scheduler: ${c.label}, ${c.mode}${c.limit ? `, first ${c.limit.toLocaleString('en-US')} tasks` : ', all tasks'} …`);
    const r = await schedulerRun(c);
    say(`  ${r.tasksDone.toLocaleString('en-US')} of ${r.totalTasks.toLocaleString('en-US')} tasks in ${r.wallS.toFixed(1)} s: ${Math.round(r.tasksPerS).toLocaleString('en-US')} tasks/s, peak RSS ${r.mem.rssPeakMiB.toFixed(0)} MiB${r.error ? `, ERROR ${r.error}` : ''}`);
    report.scheduler.push(r);
  }

  // Part 2.
  const boxCases: BoxCase[] = quick
    ? [
      { label: 'grid 10 × 10 × 10', volume: gridVolume([10, 10, 10]), seed: 1, perChunk: 10 },
      { label: 'grid 10 × 32 × 32', volume: gridVolume([10, 32, 32]), seed: 1, perChunk: 10 },
      { label: 'FAFB grid, 1,000 sampled chunks', volume: FAFB_SHAPE, sample: 1000, seed: 1, perChunk: 10 },
    ]
    : [
      { label: 'grid 10 × 32 × 32', volume: gridVolume([10, 32, 32]), seed: 1, perChunk: 10 },
      { label: 'grid 10 × 100 × 100', volume: gridVolume([10, 100, 100]), seed: 1, perChunk: 10 },
      { label: 'FAFB grid, 10,000 sampled chunks', volume: FAFB_SHAPE, sample: 10_000, seed: 1, perChunk: 10 },
    ];
  // Warm-up (not reported): the first run would otherwise pay for the JIT.
  boxRun({ label: 'warm-up', volume: gridVolume([4, 6, 6]), seed: 2, perChunk: 10 });
  for (const c of boxCases) {
    say(`boxes: ${c.label} …`);
    const r = boxRun(c);
    say(`  ${r.chunks.toLocaleString('en-US')} chunks, ${r.fragments.toLocaleString('en-US')} fragments → ${r.boxes.toLocaleString('en-US')} boxes; merge ${r.mergeS.toFixed(1)} s (${r.usPerChunk.toFixed(0)} µs/chunk), wall ${r.wallS.toFixed(1)} s, peak RSS ${r.mem.rssPeakMiB.toFixed(0)} MiB`);
    report.boxes.push(r);
  }

  report.machine.loadAvgEnd = os.loadavg();
  report.maxRssMiB = process.resourceUsage().maxRSS / 1024;
  report.totalS = (performance.now() - t0) / 1000;
  if (o.json) fs.writeFileSync(o.json, JSON.stringify(report, null, 2) + '\n');
  return report;
}

// ---------------------------------------------------------------------------------------------
// Markdown

const int = (v: number): string => Math.round(v).toLocaleString('en-US');
const f1 = (v: number): string => v.toFixed(1);
const shape = (v: Vec3): string => v.join(' × ');
const met = (ok: boolean): string => (ok ? 'met' : 'NOT met');

export function formatScaleReport(r: ScaleReport): string {
  const L: string[] = [];
  const m = r.machine;
  L.push(`# Scale benchmark${r.quick ? ' (quick)' : ''}`, '');
  L.push(`${r.when}; ${m.cpus} × ${m.model}, ${f1(m.memGiB)} GiB, Node ${m.node}, ${m.platform}${r.commit ? `; commit ${r.commit}` : ''}${r.dirty?.length ? ` with uncommitted changes to ${r.dirty.join(', ')}` : ''}. Load average (1 min) ${m.loadAvgStart[0].toFixed(2)} at the start, ${(m.loadAvgEnd[0] ?? NaN).toFixed(2)} at the end. Total ${f1(r.totalS)} s.`, '');

  L.push('## Scheduler (fafb preset, no-op executor)', '');
  const first = r.scheduler[0];
  if (first) L.push(`Tasks per kind on the full FAFB grid (${shape(first.volume)} voxels): ${Object.entries(first.kinds).map(([k, v]) => `${k} ${int(v)}`).join(', ')}; ${int(first.totalTasks)} in all.`, '');
  L.push('| volume | mode | tasks driven | of | build s | wall s | CPU s | tasks/s | last 10 % tasks/s | all tasks, s | peak RSS MiB (start) | peak heapUsed MiB |');
  L.push('|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const s of r.scheduler) {
    const all = s.complete ? f1(s.wallS) : s.extrapolatedS ? `≈ ${int(s.extrapolatedS.atMeanRate)} (extrapolated)` : '—';
    L.push(`| ${s.label} | ${s.mode === 'loop' ? 'next/done loop' : `drive(), ${s.concurrency} in hand`} | ${int(s.tasksDone)} | ${int(s.totalTasks)} | ${s.buildS.toFixed(2)} | ${f1(s.wallS)} | ${f1(s.cpuS)} | ${int(s.tasksPerS)} | ${int(s.tasksPerSLastTenth)} | ${all} | ${int(s.mem.rssPeakMiB)} (${int(s.mem.rssStartMiB)}) | ${int(s.mem.heapUsedPeakMiB)} |`);
  }
  const errs = r.scheduler.filter((s) => s.error);
  for (const s of errs) L.push('', `**Error** (${s.label}, ${s.mode}): ${s.error}`);
  const peaks = r.scheduler.filter((s) => s.readyPeak);
  if (peaks.length) {
    L.push('', 'Peak ready queue per kind (tasks ready and not yet handed out / backing array length), sampled every 100 ms from the scheduler\'s private fields:', '');
    for (const s of peaks) {
      L.push(`- ${s.label}, ${s.mode}: ${Object.entries(s.readyPeak!).map(([k, p]) => `${k} ${int(p.queued)}/${int(p.array)}`).join(', ')}`);
    }
  }
  const drives = r.scheduler.filter((s) => s.mode === 'drive');
  const best = Math.max(...drives.map((s) => s.tasksPerS));
  const rss = Math.max(...r.scheduler.map((s) => s.mem.rssPeakMiB));
  L.push('', `Targets: ≥ ${int(TARGET.tasksPerS)} tasks/s through drive(): ${met(best >= TARGET.tasksPerS)} (best ${int(best)}); peak RSS ≤ ${TARGET.schedRssMiB} MiB: ${met(rss <= TARGET.schedRssMiB)} (${int(rss)} MiB, Node baseline included).`, '');

  L.push('## Box planning (mergeFragments per chunk over its 27-chunk neighbourhood)', '');
  L.push('Synthetic objects: ~10 per chunk of 96 × 1024 × 1024, 2–8 z-slices × 20–80 × 20–80 voxels, split by chunk write boxes (cell = 1 voxel, box = piece + boxes.margin, not grown to the crop: mergeFragments grows whole objects to pack.crop 12 × 128 × 128); fafb preset boxes options.', '');
  L.push('| volume | chunks (interior) | objects | fragments | fragments merged | boxes (parents / tiles) | merge s | boxes/s | µs/chunk | µs/interior chunk | median µs/chunk (batches of 64) | generate s | wall s | CPU s | peak RSS MiB (start) | peak heapUsed MiB |');
  L.push('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const b of r.boxes) {
    L.push(`| ${b.label} | ${int(b.chunks)} (${int(b.interiorChunks)}) | ${int(b.objects)} | ${int(b.fragments)} | ${int(b.fragmentsSeen)} | ${int(b.boxes)} (${int(b.parents)} / ${int(b.children)}) | ${f1(b.mergeS)} | ${int(b.boxesPerS)} | ${int(b.usPerChunk)} | ${int(b.usPerInteriorChunk)} | ${int(b.usPerChunkMedian)} | ${f1(b.generateS)} | ${f1(b.wallS)} | ${f1(b.cpuS)} | ${int(b.mem.rssPeakMiB)} (${int(b.mem.rssStartMiB)}) | ${int(b.mem.heapUsedPeakMiB)} |`);
  }
  const big = r.boxes.filter((b) => !b.sampled).sort((a, b) => b.chunks - a.chunks);
  if (big.length >= 2) {
    const [l, s] = [big[0], big[big.length - 1]];
    L.push('', `Merge time per chunk, ${int(l.chunks)} vs ${int(s.chunks)} chunks: ratio ${(l.usPerInteriorChunk / s.usPerInteriorChunk).toFixed(2)} on interior chunks, ${(l.usPerChunkMedian / s.usPerChunkMedian).toFixed(2)} on batch medians (1.00 = independent of the volume).`);
    const fafb = r.boxes.find((b) => b.sampled);
    if (fafb) L.push(`Sampled chunks of the full FAFB grid (${int(fafb.chunks)}): ${int(fafb.usPerChunkMedian)} µs/chunk (batch median), ${(fafb.usPerChunkMedian / l.usPerChunkMedian).toFixed(2)} × the ${l.label} rate.`);
  }
  const largest = big[0];
  if (largest) {
    const perM = (largest.mergeS / largest.fragments) * 1e6;
    L.push(`Merge time for 10⁶ fragments at the ${largest.label} rate: ${f1(perM)} s (target ≤ ${TARGET.boxesS} s: ${met(perM <= TARGET.boxesS)}); with the generator: ${f1(((largest.mergeS + largest.generateS) / largest.fragments) * 1e6)} s. Peak RSS ${int(Math.max(...r.boxes.map((b) => b.mem.rssPeakMiB)))} MiB (target ≤ ${TARGET.boxesRssMiB} MiB: ${met(Math.max(...r.boxes.map((b) => b.mem.rssPeakMiB)) <= TARGET.boxesRssMiB)}).`);
  }
  L.push('', `Process peak RSS (getrusage, all parts): ${int(r.maxRssMiB)} MiB.`);
  return L.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------

function parseArgs(argv: string[]): ScaleOptions {
  const o: ScaleOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') o.quick = true;
    else if (a === '--json') o.json = argv[++i];
    else if (a === '--prefix') o.prefix = Number(argv[++i]);
    else if (a === '--concurrency') o.concurrency = Number(argv[++i]);
    else throw new Error(`unknown argument ${a} (usage: bench/scale.ts [--quick] [--json FILE] [--prefix TASKS] [--concurrency N])`);
  }
  for (const k of ['prefix', 'concurrency'] as const) {
    if (o[k] !== undefined && !(Number.isInteger(o[k]) && o[k]! > 0)) throw new Error(`--${k} must be a positive integer`);
  }
  return o;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  runScaleBench(parseArgs(process.argv.slice(2))).then(
    (r) => process.stdout.write(formatScaleReport(r)),
    (err) => {
      process.stderr.write(`${(err as Error)?.stack ?? err}\n`);
      process.exit(1);
    },
  );
}
