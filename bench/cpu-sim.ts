// The CPU side of a whole-FAFB run (part of `npm run bench -- --fafb-sim`; alone:
// `node --import tsx bench/fafb-sim.ts --only cpu`): the real task code of the instance ids and
// of labelling, on generated data at FAFB density, then extrapolated to FAFB's grid.
//
// 1. A block of the FAFB grid — one level-2 region of the reduction, 16³ chunks of
//    96 × 1024 × 1024 (4,096 chunks; --quick: one level-1 region, 4³) — gets what `labelChunk`
//    would have left in `.work` (bench/cpu-gen.ts: box-shaped objects at 2·10⁻⁶ per voxel, the
//    objects table, border and, for the chunks relabel runs on, label runs; the borders of the
//    neighbours its faces tasks read too).
// 2. The real task functions run over it through a TaskContext on a temporary WorkStore, in
//    dependency order, one kind per child process (so its peak RSS is that kind's):
//    faces → merge1 → merge2 → resolve2 (its parent's list of final ids written from the
//    generator: what resolve3 would say) → resolve1; every final id is checked against the
//    generator's objects; relabel paints a few chunks into a uint64 `instances/0` of FAFB's
//    shape; labelChunk labels a few chunks rasterised at full size (and must write the
//    generator's files byte for byte); an empty region (outside the tissue) runs the same kinds.
// 3. The levels above the block are too large to generate whole: their largest task is built
//    from the surface model (bench/cpu-model.ts: open objects per chunk face, as measured on
//    the block) with consistent ids, written as its children's summaries, and run for real.
// 4. Paste's CPU per voxel comes from re-running the paste tasks of the cost-model run alone
//    (the synthetic-em preset, one task at a time), boxes' from bench/scale.ts's box planning
//    at this density.
//
// CPU time is process.cpuUsage() around each task (all threads of the process: libuv's file
// system threads included), never wall time: the machine is shared.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Box, type Vec3, box, boxOfShape, shapeOf } from '../shared/geometry/box.ts';
import { type Range3, chunkBox, inRange, indexId, range3, rangeSize } from '../shared/geometry/grid.ts';
import { levelBlock, openFaces, regionChildren, regionChunks, regionParent, treeLevels } from '../shared/geometry/tree.ts';
import { loadConfig } from '../shared/config/load.ts';
import type { TesseraConfig } from '../shared/config/config.ts';
import { taskGraph } from '../shared/tasks/graph.ts';
import type { TaskContext } from '../shared/tasks/context.ts';
import { WorkStore } from '../shared/tasks/work.ts';
import { type Section, numbered } from '../shared/tasks/work-sections.ts';
import { Timings } from '../shared/run/timings.ts';
import { BufferPool } from '../shared/array/pool.ts';
import { createOutput, openOutputArrays } from '../shared/run/output.ts';
import { silentLogger } from '../shared/log.ts';
import { array3 } from '../shared/array/array3.ts';
import { packColumns } from '../shared/array/columns.ts';
import { facesTask } from '../shared/tasks/faces.ts';
import { decodeDown, decodeSummary, encodeDown, encodeSummary, mergeTask, resolveTask } from '../shared/tasks/merge.ts';
import { type LabelResult, labelChunk, relabelTask } from '../shared/tasks/instances.ts';
import { type Down, type Rows, type Summary, emptyRows, faceMask } from '../shared/pipeline/merge.ts';
import { otherAxes } from '../shared/pipeline/border.ts';
import { mulberry32 } from '../shared/synth/random.ts';
import { type GenObject, ObjectField, borderOfParts, labelTable, runsOfParts } from './cpu-gen.ts';
import { faceObjects, fafbTissue, reductionModel } from './cpu-model.ts';
import { FAFB_SHAPE, boxRun } from './scale.ts';
import { loaderArgs } from '../shared/runtime.ts';

const exec = promisify(execFile);
const r2 = (x: number) => Math.round(x * 100) / 100;
const MiB = 2 ** 20;

/** FAFB's ≈ 10⁸ clefts over ≈ 5·10¹³ voxels of neuropil. */
export const DENSITY = 1e8 / 5e13;
/** Cleft boxes, [z, y, x] voxels at 40 × 4 × 4 nm: mean 8 × 40 × 40 (the brief's estimate of a cleft). */
export const OBJECT_LO: Vec3 = [4, 20, 20];
export const OBJECT_HI: Vec3 = [12, 60, 60];
const SEED = 2207;

// ------------------------------------------------------------------------------- the plan

export interface Plan {
  dir: string;
  quick: boolean;
  /** The measured block: a region of this level (its tasks and everything below run for real). */
  level: number;
  region: Vec3;
  /** An empty level-1 region (outside the tissue): the cost of tasks with nothing to do. */
  empty: Vec3;
  relabel: Vec3[];
  label: Vec3[];
  /** Where the synthetic-em cost-model run left its output, and its input (paste is re-run there). */
  costsOutput?: string;
  costsInput?: string;
}

function fafbConfig(): TesseraConfig {
  return loadConfig({ preset: 'fafb' });
}

function fafbGraph(config: TesseraConfig) {
  const f = config.stage1.spacing.map((s, a) => s / config.spacing[a]) as unknown as Vec3;
  return taskGraph(config, FAFB_SHAPE, boxOfShape(FAFB_SHAPE), f);
}

function field(density = DENSITY): ObjectField {
  return new ObjectField({ volume: FAFB_SHAPE, chunk: fafbConfig().io.chunk, seed: SEED, density, lo: OBJECT_LO, hi: OBJECT_HI, cache: 8192 });
}

function forRange(r: Range3, f: (c: Vec3) => void): void {
  for (let z = r.lo[0]; z < r.hi[0]; z++) for (let y = r.lo[1]; y < r.hi[1]; y++) for (let x = r.lo[2]; x < r.hi[2]; x++) f([z, y, x]);
}

/** The chunks whose borders the faces tasks of `block` read: the block and its forward neighbours. */
function withForwardNeighbours(block: Range3, run: Range3): Range3 {
  // FORWARD offsets reach +1 in z, ±1 in y (with dz = 1) and ±1 in x (with dz or dy = 1).
  const lo: Vec3 = [block.lo[0], Math.max(run.lo[1], block.lo[1] - 1), Math.max(run.lo[2], block.lo[2] - 1)];
  const hi = block.hi.map((v, a) => Math.min(run.hi[a], v + 1)) as unknown as Vec3;
  return range3(lo, hi);
}

// ------------------------------------------------------------------------------- measuring

/** A WorkStore that counts the bytes tasks read and write through it (section and JSON payloads). */
class CountingWorkStore extends WorkStore {
  read = 0;
  written = 0;

  override async readSections(kind: string, index: Vec3, keys: readonly string[]): Promise<Uint8Array[]> {
    const s = await super.readSections(kind, index, keys);
    for (const b of s) this.read += b.byteLength;
    return s;
  }

  override async writeSections(kind: string, index: Vec3, sections: readonly Section[]): Promise<void> {
    for (const x of sections) for (const b of x.body) this.written += b.byteLength;
    await super.writeSections(kind, index, sections);
  }

  override async readJson<T>(kind: string, index: Vec3): Promise<T> {
    const v = await super.readJson<T>(kind, index);
    this.read += fs.statSync(this.path(kind, index, 'json')).size;
    return v;
  }

  override async writeJson(kind: string, index: Vec3, value: unknown): Promise<void> {
    await super.writeJson(kind, index, value);
    this.written += fs.statSync(this.path(kind, index, 'json')).size;
  }
}

/** What the instance tasks touch of a TaskContext: config, graph, work store, timings, output arrays. */
async function simContext(plan: Plan, work = new CountingWorkStore(path.join(plan.dir, 'out', '.work'))): Promise<TaskContext & { work: CountingWorkStore }> {
  const config = fafbConfig();
  const out = await openOutputArrays(path.join(plan.dir, 'out'), false);
  const graph = fafbGraph(config);
  const chunkVoxels = graph.chunk[0] * graph.chunk[1] * graph.chunk[2];
  // As taskContext's: the label and id arrays of a chunk come from (and go back to) the pool.
  const pasteBuffers = new BufferPool(2 * 4 * chunkVoxels, chunkVoxels);
  const ctx = { config, graph, work, timings: new Timings(), out, src: { io: { concurrency: config.io.concurrency } }, log: silentLogger(), pasteBuffers };
  return ctx as unknown as TaskContext & { work: CountingWorkStore };
}

export interface TaskSample {
  cpuMs: number;
  read: number;
  written: number;
  /** Objects the task was handed (merge: its children's open objects). */
  input?: number;
  /** What a merge handed up: open objects, their parts on open faces, contacts leaving. */
  open?: number;
  parts?: number;
  edges?: number;
}

/** CPU ms (all threads) and bytes of one task. */
async function measure(work: CountingWorkStore, f: () => Promise<unknown>): Promise<TaskSample> {
  const r0 = work.read, w0 = work.written;
  const c0 = process.cpuUsage();
  await f();
  const c = process.cpuUsage(c0);
  return { cpuMs: (c.user + c.system) / 1000, read: work.read - r0, written: work.written - w0 };
}

export interface KindResult {
  kind: string;
  tasks: number;
  meanMs: number;
  maxMs: number;
  meanRead: number;
  meanWritten: number;
  maxRead: number;
  maxWritten: number;
  /** Peak RSS of the process that ran only this kind's tasks, one after another, and its RSS before the first. */
  peakMiB: number;
  baseMiB: number;
  /** Mean objects handed to a task (see TaskSample.input). */
  meanInput?: number;
  samples?: TaskSample[];
}

function summarise(kind: string, s: TaskSample[], baseMiB: number): KindResult {
  const mean = (f: (x: TaskSample) => number) => s.reduce((a, x) => a + f(x), 0) / Math.max(1, s.length);
  const max = (f: (x: TaskSample) => number) => s.reduce((a, x) => Math.max(a, f(x)), 0);
  const inputs = s.filter((x) => x.input !== undefined);
  return {
    kind, tasks: s.length, meanMs: r2(mean((x) => x.cpuMs)), maxMs: r2(max((x) => x.cpuMs)),
    meanRead: Math.round(mean((x) => x.read)), meanWritten: Math.round(mean((x) => x.written)), maxRead: max((x) => x.read), maxWritten: max((x) => x.written),
    peakMiB: Math.round(process.resourceUsage().maxRSS / 1024), baseMiB,
    ...(inputs.length ? { meanInput: Math.round(inputs.reduce((a, x) => a + x.input!, 0) / inputs.length) } : {}),
  };
}

const rssMiB = () => Math.round(process.memoryUsage().rss / MiB);

// ------------------------------------------------------------------------------- step: generate

export interface GenStats {
  chunks: number;
  borders: number;
  objects: number;
  parts: number;
  /** Objects anchored in the block that span more than one chunk (cross a chunk face, edge or corner). */
  crossing: number;
  crossingFraction: number;
  objectsPerChunk: number;
  /** Parts touching one face of a chunk, per chunk face and side, per axis (the surface model's ρ). */
  rho: Vec3;
  /** CPU ms to generate and write a chunk's files. */
  genMsPerChunk: number;
  meanLabelBytes: number;
  meanBorderBytes: number;
  meanRunsBytes: number;
}

async function stepGen(plan: Plan): Promise<GenStats> {
  const config = fafbConfig();
  const graph = fafbGraph(config);
  const run = graph.kinds.find((k) => k.name === 'faces')!.range;
  await createOutput(path.join(plan.dir, 'out'), {
    shape: FAFB_SHAPE, spacing: config.spacing, unit: config.unit, chunks: config.io.outputChunk, classes: ['background', 'cleft'],
    probabilities: false, overwrite: true, format: 'zarr-v3-sharded', shard: config.io.chunk,
  });
  const work = new WorkStore(path.join(plan.dir, 'out', '.work'));
  const f = field();
  const block = regionChunks(plan.region, plan.level, config.io.mergeFanIn, run);
  const st = { chunks: 0, borders: 0, objects: 0, parts: 0, crossing: 0, touch: [0, 0, 0], label: 0, border: 0, runs: 0 };
  const c0 = process.cpuUsage();
  const relabel = new Set(plan.relabel.map(indexId));
  await generate(work, f, withForwardNeighbours(block, run), block, relabel, st);
  const cpu = process.cpuUsage(c0);
  // Empty region: the same files with no objects.
  const e = regionChunks(plan.empty, 1, config.io.mergeFanIn, run);
  await generate(work, field(0), withForwardNeighbours(e, run), e, new Set([indexId(e.lo)]), { ...st });
  return {
    chunks: st.chunks, borders: st.borders, objects: st.objects, parts: st.parts, crossing: st.crossing,
    crossingFraction: st.crossing / st.objects, objectsPerChunk: st.objects / st.chunks,
    rho: st.touch.map((t) => t / (2 * st.chunks)) as unknown as Vec3,
    genMsPerChunk: r2((cpu.user + cpu.system) / 1000 / st.borders),
    meanLabelBytes: Math.round(st.label / st.chunks), meanBorderBytes: Math.round(st.border / st.borders), meanRunsBytes: Math.round(st.runs / Math.max(1, relabel.size)),
  };
}

/** Borders for every chunk of `reach`, tables for those of `block`, runs for `runs`: what labelChunk writes. */
async function generate(
  work: WorkStore, f: ObjectField, reach: Range3, block: Range3, runs: Set<string>,
  st: { chunks: number; borders: number; objects: number; parts: number; crossing: number; touch: number[]; label: number; border: number; runs: number },
): Promise<void> {
  const cs: Vec3[] = [];
  forRange(reach, (c) => cs.push(c));
  for (const c of cs) {
    const w = f.chunkBox(c);
    const parts = f.partsOf(c);
    const border = borderOfParts(parts, w);
    await work.writeSections('border', c, numbered(border));
    st.borders++;
    st.border += border.reduce((s, b) => s + b.byteLength, 0) + 8 + 16 * border.length;
    if (!inRange(block, c)) continue;
    const table = labelTable(parts);
    await work.writeJson('label', c, table);
    st.label += JSON.stringify(table).length;
    st.chunks++;
    st.parts += parts.length;
    const own = f.objectsOf(c);
    st.objects += own.length;
    for (const o of own) if ([0, 1, 2].some((a) => Math.floor(o.box.begin[a] / f.o.chunk[a]) !== Math.floor((o.box.end[a] - 1) / f.o.chunk[a]))) st.crossing++;
    for (const p of parts) for (let a = 0; a < 3; a++) st.touch[a] += (p.box.begin[a] === w.begin[a] ? 1 : 0) + (p.box.end[a] === w.end[a] ? 1 : 0);
    if (runs.has(indexId(c))) {
      const r = packColumns([runsOfParts(parts, w)]);
      await work.writeSections('runs', c, [{ key: 'runs', header: null, body: [r] }]);
      st.runs += r.byteLength;
    }
  }
}

// ------------------------------------------------------------------------------- steps: the tasks

/** Objects a level-1 region's children (chunks) hand it: their parts on open faces. */
async function leafInputs(ctx: TaskContext, region: Range3, run: Range3): Promise<number> {
  let n = 0;
  const cs: Vec3[] = [];
  forRange(region, (c) => cs.push(c));
  for (const c of cs) {
    const t = await ctx.work.readJson<LabelResult>('label', c);
    const open = openFaces({ lo: c, hi: [c[0] + 1, c[1] + 1, c[2] + 1] }, run);
    const w = chunkBox(c, ctx.graph.chunk, ctx.graph.volume);
    for (const o of t.objects) if (faceMask(o.box, w) & open) n++;
  }
  return n;
}

async function childInputs(ctx: TaskContext, level: number, b: Vec3, run: Range3): Promise<number> {
  let n = 0;
  for (const k of regionChildren(b, level, ctx.config.io.mergeFanIn, run)) {
    const [s] = await ctx.work.readSections(`merge${level - 1}`, k, ['summary']);
    n += decodeSummary(s, 'input').open.key.length;
  }
  return n;
}

/** The regions of `level` inside the plan's block, in raster order. */
function regionsOf(plan: Plan, level: number, run: Range3, fanIn: Vec3): Vec3[] {
  const s = levelBlock(fanIn, plan.level - level);
  const out: Vec3[] = [];
  forRange(range3(plan.region.map((v, a) => v * s[a]) as unknown as Vec3, plan.region.map((v, a) => (v + 1) * s[a]) as unknown as Vec3), (b) => {
    if (rangeSize(regionChunks(b, level, fanIn, run)) > 0) out.push(b);
  });
  return out;
}

async function stepKind(plan: Plan, kind: string, region = plan.region, level = plan.level): Promise<KindResult> {
  const base = rssMiB();
  const ctx = await simContext(plan);
  const run = ctx.graph.kinds.find((k) => k.name === 'faces')!.range;
  const fanIn = ctx.config.io.mergeFanIn;
  const p = { ...plan, region, level };
  const samples: TaskSample[] = [];
  // The first task once before measuring: a merger runs thousands, its JIT is warm (a task
  // writes the same bytes however often it runs).
  const warm = async (first: () => Promise<unknown>) => { await first(); };
  if (kind === 'faces') {
    const cs: Vec3[] = [];
    forRange(regionChunks(region, level, fanIn, run), (c) => cs.push(c));
    await warm(() => facesTask(ctx, cs[0]));
    for (const c of cs) samples.push(await measure(ctx.work, () => facesTask(ctx, c)));
  } else if (kind.startsWith('merge')) {
    const l = Number(kind.slice(5));
    const bs = regionsOf(p, l, run, fanIn);
    await warm(() => mergeTask(ctx, l, bs[0]));
    for (const b of bs) {
      const s = await measure(ctx.work, () => mergeTask(ctx, l, b));
      s.input = l === 1 ? await leafInputs(ctx, regionChunks(b, 1, fanIn, run), run) : await childInputs(ctx, l, b, run);
      const [out] = await ctx.work.readSections(kind, b, ['summary']);
      const sum = decodeSummary(out, kind);
      Object.assign(s, { open: sum.open.key.length, parts: sum.part.length, edges: sum.edgeA.length });
      samples.push(s);
    }
  } else if (kind.startsWith('resolve')) {
    const l = Number(kind.slice(7));
    if (l === level) await writeParentDown(ctx, l, region, run, field(region === plan.empty ? 0 : DENSITY));
    const bs = regionsOf(p, l, run, fanIn);
    await warm(() => resolveTask(ctx, l, bs[0]));
    for (const b of bs) samples.push(await measure(ctx.work, () => resolveTask(ctx, l, b)));
  } else throw new RangeError(`unknown step kind ${kind}`);
  return { ...summarise(kind, samples, base), samples };
}

/**
 * What the parent of the block's top region (resolve<level+1>) would tell it: the final id of
 * each of its open objects — the generator's object id — and, where that id is the key, the
 * object's whole row. Written as the parent's file (the other children's sections empty).
 */
async function writeParentDown(ctx: TaskContext, level: number, b: Vec3, run: Range3, f: ObjectField): Promise<void> {
  const fanIn = ctx.config.io.mergeFanIn;
  if (level >= treeLevels(run, fanIn)) return;
  const [s] = await ctx.work.readSections(`merge${level}`, b, ['summary']);
  const open = decodeSummary(s, 'block summary').open;
  const n = open.key.length;
  const down: Down = { key: open.key.slice(), final: new Float64Array(n), row: emptyRows(n) };
  const objectOf = partLookup(f);
  for (let i = 0; i < n; i++) {
    const o = objectOf(open.key[i]);
    if (!o) throw new Error(`open object ${open.key[i]} is no generated object`);
    down.final[i] = o.id;
    if (o.id === open.key[i]) setRow(down.row, i, o.id, o.box, volumeOf(o.box), o.p);
  }
  const p = regionParent(b, fanIn);
  const kids = regionChildren(p, level + 1, fanIn, run);
  const none = encodeDown({ key: new Float64Array(0), final: new Float64Array(0), row: emptyRows(0) });
  await ctx.work.writeSections(`resolve${level + 1}`, p, kids.map((k) => ({ key: indexId(k), header: null, body: [k.every((v, a) => v === b[a]) ? encodeDown(down) : none] })));
}

/** The generated object a part id (1 + raster index of the part's first voxel) belongs to, from its chunk's parts. */
function partLookup(f: ObjectField): (id: number) => GenObject | undefined {
  const byChunk = new Map<string, Map<number, GenObject>>();
  return (id) => {
    const c = f.voxelOf(id).map((v, a) => Math.floor(v / f.o.chunk[a])) as unknown as Vec3;
    let m = byChunk.get(indexId(c));
    if (!m) {
      m = new Map(f.partsOf(c).map((p) => [p.anchor, p.object]));
      byChunk.set(indexId(c), m);
    }
    return m.get(id);
  };
}

function volumeOf(b: Box): number {
  return (b.end[0] - b.begin[0]) * (b.end[1] - b.begin[1]) * (b.end[2] - b.begin[2]);
}

function setRow(r: Rows, i: number, key: number, b: Box, voxels: number, p: number): void {
  r.key[i] = key;
  r.cls[i] = 1;
  r.box.set([...b.begin, ...b.end], 6 * i);
  r.voxels[i] = voxels;
  r.mass[i] = p * voxels;
}

/** Every chunk's final ids (resolve1's lists) against the generator: the reduction found the true objects. */
async function stepVerify(plan: Plan): Promise<{ checked: number; spanning: number }> {
  const ctx = await simContext(plan);
  const run = ctx.graph.kinds.find((k) => k.name === 'faces')!.range;
  const fanIn = ctx.config.io.mergeFanIn;
  const objectOf = partLookup(field());
  let checked = 0, spanning = 0;
  const cs: Vec3[] = [];
  forRange(regionChunks(plan.region, plan.level, fanIn, run), (c) => cs.push(c));
  for (const c of cs) {
    const r = regionParent(c, fanIn);
    const [b] = await ctx.work.readSections('resolve1', r, [indexId(c)]);
    const down = decodeDown(b, `resolve1 ${indexId(r)}`);
    for (let i = 0; i < down.key.length; i++) {
      const o = objectOf(down.key[i]);
      if (!o || down.final[i] !== o.id) throw new Error(`chunk ${indexId(c)}: part ${down.key[i]} got id ${down.final[i]}, its object is ${o?.id}`);
      if (down.key[i] === o.id && down.row.voxels[i] !== volumeOf(o.box)) throw new Error(`chunk ${indexId(c)}: object ${o.id} summed ${down.row.voxels[i]} voxels, it has ${volumeOf(o.box)}`);
      checked++;
      if (down.key[i] !== o.id) spanning++;
    }
  }
  return { checked, spanning };
}

/** Bytes under a directory (what relabel wrote to instances/ and objects/). */
function duBytes(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) n += fs.statSync(path.join(e.parentPath, e.name)).size;
  return n;
}

/**
 * Collect garbage between large tasks (steps run with --expose-gc), outside the measurement: the
 * process's peak RSS is then one task's, not a task's and its predecessor's garbage.
 */
function collect(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** The sample with the least CPU time: this machine's cores are shared (see stepPaste). */
function least(a: TaskSample | undefined, b: TaskSample): TaskSample {
  return a && a.cpuMs <= b.cpuMs ? a : b;
}

/** Relabel of FAFB chunks into the uint64 instances/0, each task's least of two runs. */
async function stepRelabel(plan: Plan, chunks: Vec3[]): Promise<KindResult> {
  const base = rssMiB();
  const ctx = await simContext(plan);
  const samples: TaskSample[] = [];
  const written = () => duBytes(path.join(plan.dir, 'out', 'instances')) + duBytes(path.join(plan.dir, 'out', 'objects'));
  for (let pass = 0; pass < 2; pass++) {
    for (const [i, c] of chunks.entries()) {
      // What it wrote: the files it left (the first pass: the second overwrites them alike).
      const before = written();
      collect();
      const s = await measure(ctx.work, () => relabelTask(ctx, c));
      s.written += pass ? samples[i].written : written() - before;
      samples[i] = least(samples[i], s);
    }
  }
  return { ...summarise('relabel', samples, base), samples };
}

/**
 * labelChunk on chunks rasterised at full size (seg, and a probability per voxel): its CPU at
 * FAFB's chunk and density (each chunk's least of two runs), and proof that the generator wrote
 * what it writes (compared byte for byte). The pyramid is not written (no levels): that is paste's.
 */
async function stepLabel(plan: Plan, chunks: Vec3[], density: number): Promise<KindResult & { identical: boolean }> {
  const base = rssMiB();
  const work = new CountingWorkStore(path.join(plan.dir, `label-${density ? 'full' : 'empty'}`, '.work'));
  const ctx = await simContext(plan, work);
  const f = field(density);
  const mine = new WorkStore(path.join(plan.dir, 'out', '.work'));
  const samples: TaskSample[] = [];
  let identical = true;
  for (const c of chunks) {
    const w = f.chunkBox(c);
    const shape = shapeOf(w);
    collect();
    const seg = new Uint8Array(shape[0] * shape[1] * shape[2]);
    const prob = new Float32Array(seg.length);
    const parts = f.partsOf(c);
    for (const p of parts) {
      for (let z = p.box.begin[0]; z < p.box.end[0]; z++) for (let y = p.box.begin[1]; y < p.box.end[1]; y++) {
        const i = ((z - w.begin[0]) * shape[1] + y - w.begin[1]) * shape[2] + p.box.begin[2] - w.begin[2];
        seg.fill(1, i, i + p.box.end[2] - p.box.begin[2]);
        prob.fill(p.object.p, i, i + p.box.end[2] - p.box.begin[2]);
      }
    }
    let s: TaskSample | undefined;
    for (let pass = 0; pass < 2; pass++) {
      collect();
      s = least(s, await measure(work, () => labelChunk(ctx, c, w, array3(seg, shape), [array3(prob, shape)])));
    }
    samples.push(s!);
    if (density) identical &&= await sameFiles(work, mine, c, parts, w);
  }
  return { ...summarise(density ? 'label' : 'label (empty chunk)', samples, base), samples, identical };
}

async function sameFiles(real: WorkStore, gen: WorkStore, c: Vec3, parts: ReturnType<ObjectField['partsOf']>, w: Box): Promise<boolean> {
  const table = fs.readFileSync(real.path('label', c, 'json'), 'utf8') === JSON.stringify(labelTable(parts));
  const border = Buffer.compare(fs.readFileSync(real.path('border', c, 'bin')), fs.readFileSync(gen.path('border', c, 'bin'))) === 0;
  const [runs] = await real.readSections('runs', c, ['runs']);
  return table && border && Buffer.compare(Buffer.from(runs), Buffer.from(packColumns([runsOfParts(parts, w)]))) === 0;
}

// ------------------------------------------------------------------------------- steps: the top levels

export interface TopSpec {
  level: number;
  region: Vec3;
  /** Open objects per chunk face of each axis (measured on the block), parts and contacts per open object. */
  rho: Vec3;
  partsPerOpen: number;
  edgesPerOpen: number;
  /** Objects only in the tissue (the FAFB model) or everywhere (the worst case). */
  tissue: boolean;
  /** Scales ρ (--quick: a small version of the task). */
  scale: number;
  label: string;
  /** The block's own task rebuilt: compared with the real one, not used for the grid. */
  check?: boolean;
  /** Run it once before measuring (a short task: its first run would time the JIT). */
  warm: boolean;
}

/**
 * The children's summaries of one large region, as the levels below would hand them up at this
 * density: for every open face of every child, ρ objects per chunk face (in the tissue). A face
 * shared by two children holds objects crossing it (a part on each side, a contact from the lower
 * one); a face on the region's surface holds objects leaving it (a contact out, from the high
 * side). Ids are 1 + raster index of a voxel on the face, so `inside` sees them where they lie.
 */
async function stepTopGen(plan: Plan, spec: TopSpec): Promise<{ input: number; parts: number; edges: number }> {
  const config = fafbConfig();
  const graph = fafbGraph(config);
  const run = graph.kinds.find((k) => k.name === 'faces')!.range;
  const fanIn = config.io.mergeFanIn;
  const chunk = config.io.chunk;
  const tissue = spec.tissue ? fafbTissue(FAFB_SHAPE) : undefined;
  const work = new WorkStore(path.join(plan.dir, `top-${spec.label}`, '.work'));
  const kids = regionChildren(spec.region, spec.level, fanIn, run);
  const region = regionChunks(spec.region, spec.level, fanIn, run);
  const rng = mulberry32(spec.level * 7919 + 13);
  const used = new Set<number>();
  const builders = kids.map(() => new SummaryBuilder());
  const childOf = (c: Vec3) => kids.findIndex((k) => inRange(regionChunks(k, spec.level - 1, fanIn, run), c));
  const idAt = (v: Vec3) => (v[0] * FAFB_SHAPE[1] + v[1]) * FAFB_SHAPE[2] + v[2] + 1;
  kids.forEach((k, ki) => {
    const cr = regionChunks(k, spec.level - 1, fanIn, run);
    const open = openFaces(cr, run);
    for (let a = 0; a < 3; a++) {
      const [u, v] = otherAxes(a);
      for (let side = 0; side < 2; side++) {
        if (!(open & (1 << (2 * a + side)))) continue;
        const plane = (side ? cr.hi[a] : cr.lo[a]) * chunk[a];
        const inner = side ? cr.hi[a] < region.hi[a] : cr.lo[a] > region.lo[a];
        if (inner && side === 0) continue; // made with the child below
        const n = Math.round(faceObjects(cr, a, side, spec.rho[a] * spec.scale, chunk, FAFB_SHAPE, tissue));
        for (let j = 0; j < n; j++) {
          // A voxel pair across the plane, at a random place on the face.
          const at: number[] = [0, 0, 0];
          at[a] = plane - 1;
          at[u] = Math.min(FAFB_SHAPE[u] - 1, Math.floor((cr.lo[u] + rng() * (cr.hi[u] - cr.lo[u])) * chunk[u]));
          at[v] = Math.min(FAFB_SHAPE[v] - 1, Math.floor((cr.lo[v] + rng() * (cr.hi[v] - cr.lo[v])) * chunk[v]));
          const below = at as unknown as Vec3;
          const above = at.map((x, t) => (t === a ? plane : x)) as unknown as Vec3;
          const pb = idAt(below), pa = idAt(above);
          if (used.has(pb) || used.has(pa)) continue;
          used.add(pb); used.add(pa);
          // A second part on the same face (the object spans two chunks along it): the id of the
          // next voxel along the face's first axis, on each side.
          const step = u === 0 ? FAFB_SHAPE[1] * FAFB_SHAPE[2] : FAFB_SHAPE[2];
          const extra = rng() < spec.partsPerOpen - 1 && !used.has(pb + step) && !used.has(pa + step) && below[u] + 1 < FAFB_SHAPE[u];
          if (extra) { used.add(pb + step); used.add(pa + step); }
          const xb = extra ? pb + step : 0, xa = extra ? pa + step : 0;
          if (inner) {
            const other = childOf(above.map((x, t) => Math.floor(x / chunk[t])) as unknown as Vec3);
            builders[ki].object(pb, below, 1 << (2 * a + 1), extra ? [[pb, pa], [xb, xa]] : [[pb, pa]], xb);
            builders[other].object(pa, above, 1 << (2 * a), [], xa);
          } else if (side) builders[ki].object(pb, below, 1 << (2 * a + 1), extra ? [[pb, pa], [xb, xa]] : [[pb, pa]], xb);
          else builders[ki].object(pa, above, 1 << (2 * a), [], xa);
        }
      }
    }
  });
  let input = 0, parts = 0, edges = 0;
  for (const [ki, k] of kids.entries()) {
    const s = builders[ki].summary(spec.edgesPerOpen, rng);
    input += s.open.key.length; parts += s.part.length; edges += s.edgeA.length;
    await work.writeSections(`merge${spec.level - 1}`, k, [{ key: 'summary', header: null, body: [encodeSummary(s)] }]);
  }
  return { input, parts, edges };
}

/** A child's summary built object by object (see stepTopGen). */
class SummaryBuilder {
  private keys: number[] = [];
  private at: number[] = [];
  private masks: number[] = [];
  private part: number[] = [];
  private partKey: number[] = [];
  private partMask: number[] = [];
  private edgeA: number[] = [];
  private edgeB: number[] = [];

  /** An open object with its part at voxel `v` (id `id`) on the faces `mask`, contacts out, and a second part `extra` (0: none). */
  object(id: number, v: Vec3, mask: number, contacts: [number, number][], extra: number): void {
    this.keys.push(id);
    this.at.push(...v);
    this.masks.push(mask);
    this.part.push(id); this.partKey.push(id); this.partMask.push(mask);
    if (extra) { this.part.push(extra); this.partKey.push(id); this.partMask.push(mask); }
    for (const [a, b] of contacts) { this.edgeA.push(a); this.edgeB.push(b); }
  }

  summary(edgesPerOpen: number, rng: () => number): Summary {
    const n = this.keys.length;
    const open = emptyRows(n);
    for (let i = 0; i < n; i++) {
      open.key[i] = this.keys[i];
      open.cls[i] = 1;
      const v = this.at.slice(3 * i, 3 * i + 3);
      open.box.set([v[0] - 4, v[1] - 20, v[2] - 20, v[0] + 4, v[1] + 20, v[2] + 20], 6 * i);
      open.voxels[i] = 12800;
      open.mass[i] = 8000;
    }
    // Contacts beyond one per crossing (edge and corner neighbours): repeats of existing ones.
    const want = Math.round(edgesPerOpen * n);
    for (let e = 0; this.edgeA.length < want && this.edgeA.length > 0 && e < want; e++) {
      const j = Math.floor(rng() * this.edgeA.length);
      this.edgeA.push(this.edgeA[j]); this.edgeB.push(this.edgeB[j]);
    }
    return {
      open, part: Float64Array.from(this.part), partKey: Float64Array.from(this.partKey), partMask: Uint8Array.from(this.partMask),
      edgeA: Float64Array.from(this.edgeA), edgeB: Float64Array.from(this.edgeB),
    };
  }
}

/** The top task, alone in its process: merge, then resolve (its parent's list written first). */
async function stepTop(plan: Plan, spec: TopSpec): Promise<{ merge: TaskSample; resolve: TaskSample; mergePeakMiB: number; peakMiB: number; baseMiB: number; open: number }> {
  const baseMiB = rssMiB();
  const work = new CountingWorkStore(path.join(plan.dir, `top-${spec.label}`, '.work'));
  const ctx = await simContext(plan, work);
  const run = ctx.graph.kinds.find((k) => k.name === 'faces')!.range;
  // Short tasks once before measuring (warm JIT, as in a merger that has run many); long ones
  // warm up on their own first objects.
  if (spec.warm) await mergeTask(ctx, spec.level, spec.region);
  const merge = await measure(work, () => mergeTask(ctx, spec.level, spec.region));
  const mergePeakMiB = Math.round(process.resourceUsage().maxRSS / 1024);
  const [s] = await work.readSections(`merge${spec.level}`, spec.region, ['summary']);
  const open = decodeSummary(s, 'top').open;
  if (spec.level < treeLevels(run, ctx.config.io.mergeFanIn)) {
    // Every open object final as it is: what the parent says does not change the work here.
    const p = regionParent(spec.region, ctx.config.io.mergeFanIn);
    const kids = regionChildren(p, spec.level + 1, ctx.config.io.mergeFanIn, run);
    const down: Down = { key: open.key, final: open.key, row: open };
    const none = encodeDown({ key: new Float64Array(0), final: new Float64Array(0), row: emptyRows(0) });
    await work.writeSections(`resolve${spec.level + 1}`, p, kids.map((k) => ({ key: indexId(k), header: null, body: [k.every((v, a) => v === spec.region[a]) ? encodeDown(down) : none] })));
  }
  if (spec.warm) await resolveTask(ctx, spec.level, spec.region);
  const resolve = await measure(work, () => resolveTask(ctx, spec.level, spec.region));
  return { merge, resolve, mergePeakMiB, peakMiB: Math.round(process.resourceUsage().maxRSS / 1024), baseMiB, open: open.key.length };
}

// ------------------------------------------------------------------------------- steps: paste, boxes

/**
 * Paste (and boxes) of the cost-model run's chunks again, one task at a time: CPU per voxel. A
 * first pass warms the JIT (a FAFB chunk is 12× the cost-model run's: its first call's
 * compilation would weigh more here than there); then three passes, each with a fresh context
 * (stage two's results read and decoded as a worker does, not from a cache), and each task's
 * least CPU time: this machine's cores are shared (hyperthreads: a busy neighbour slows every
 * instruction, so CPU time too).
 */
async function stepPaste(plan: Plan): Promise<{ tasks: number; voxels: number; cpuMs: number; peakMiB: number; baseMiB: number; maxMs: number; passes: number[]; boxes: { tasks: number; voxels: number; cpuMs: number } }> {
  const baseMiB = rssMiB();
  const { attachRun } = await import('../shared/run/session.ts');
  const { readRunJson } = await import('../shared/run/output.ts');
  const { pasteTask } = await import('../shared/tasks/paste.ts');
  const { boxesTask } = await import('../shared/tasks/boxes.ts');
  const out = plan.costsOutput!;
  const doc = readRunJson(out)! as unknown as { identity: { hash: string }; roi: { begin: Vec3; end: Vec3 } };
  const config = loadConfig({ preset: 'synthetic-em' });
  const attach = () => attachRun({ config, input: plan.costsInput!, output: out, roi: box(doc.roi.begin, doc.roi.end), identity: doc.identity.hash, log: silentLogger() });
  const best = new Map<string, number>();
  const bestBoxes = new Map<string, number>();
  const voxelsOf = new Map<string, number>();
  const passes: number[] = [];
  const keep = (m: Map<string, number>, k: string, v: number) => m.set(k, Math.min(v, m.get(k) ?? Infinity));
  for (let pass = 0; pass < 4; pass++) {
    const ctx = await attach();
    try {
      const kinds = (name: string) => { const cs: Vec3[] = []; forRange(ctx.graph.kinds.find((k) => k.name === name)!.range, (c) => cs.push(c)); return cs; };
      // The boxes tasks too (per voxel; the synthetic volume's objects are denser than FAFB's).
      for (const c of kinds('boxes')) {
        const c0 = process.cpuUsage();
        await boxesTask(ctx, c);
        const d = process.cpuUsage(c0);
        if (pass) keep(bestBoxes, indexId(c), (d.user + d.system) / 1000);
        voxelsOf.set(`b${indexId(c)}`, volumeOf(chunkBox(c, ctx.graph.chunk, ctx.graph.volume)));
      }
      let sum = 0;
      for (const c of kinds('paste')) {
        const c0 = process.cpuUsage();
        await pasteTask(ctx, c);
        const d = process.cpuUsage(c0);
        sum += (d.user + d.system) / 1000;
        if (pass) keep(best, indexId(c), (d.user + d.system) / 1000);
        voxelsOf.set(`p${indexId(c)}`, volumeOf(chunkBox(c, ctx.graph.chunk, ctx.graph.volume)));
      }
      if (pass) passes.push(Math.round(sum));
    } finally {
      await ctx.pool.close();
    }
  }
  const total = (m: Map<string, number>, p: string) => ({ tasks: m.size, cpuMs: [...m.values()].reduce((a, b) => a + b, 0), voxels: [...m.keys()].reduce((a, k) => a + voxelsOf.get(p + k)!, 0) });
  return {
    ...total(best, 'p'), maxMs: Math.max(...best.values()), passes,
    peakMiB: Math.round(process.resourceUsage().maxRSS / 1024), baseMiB, boxes: total(bestBoxes, 'b'),
  };
}

/** Box planning (mergeFragments) per chunk at this density: bench/scale.ts's measurement on a sample of chunks. */
function stepBoxes(plan: Plan, perChunk: number): { usPerChunk: number; chunks: number; fragmentsPerChunk: number } {
  const grid: Vec3 = plan.quick ? [4, 16, 16] : [10, 32, 32];
  const b = boxRun({ label: 'cpu', volume: [grid[0] * 96, grid[1] * 1024, grid[2] * 1024], seed: 11, perChunk: Math.round(perChunk), sample: plan.quick ? 32 : 256 });
  return { usPerChunk: b.usPerChunk, chunks: b.chunks, fragmentsPerChunk: b.fragmentsSeen / b.chunks };
}

// ------------------------------------------------------------------------------- step dispatch

export async function runStep(name: string, plan: Plan, arg: unknown): Promise<unknown> {
  switch (name) {
    case 'gen': return stepGen(plan);
    case 'kind': {
      const a = arg as { kind: string; region?: Vec3; level?: number };
      return stepKind(plan, a.kind, a.region, a.level);
    }
    case 'verify': return stepVerify(plan);
    case 'relabel': return stepRelabel(plan, arg as Vec3[]);
    case 'label': {
      const a = arg as { chunks: Vec3[]; density: number };
      return stepLabel(plan, a.chunks, a.density);
    }
    case 'topgen': return stepTopGen(plan, arg as TopSpec);
    case 'top': return stepTop(plan, arg as TopSpec);
    case 'paste': return stepPaste(plan);
    case 'boxes': return stepBoxes(plan, arg as number);
    default: throw new RangeError(`unknown step ${name}`);
  }
}

/** CPU seconds of the step processes so far (each reports its own). */
let stepCpuS = 0;

/** One step in a fresh process (its peak RSS is the step's own). */
async function step<T>(plan: Plan, name: string, arg?: unknown): Promise<T> {
  const planFile = path.join(plan.dir, 'plan.json');
  const { stdout } = await exec(process.execPath, ['--expose-gc', ...loaderArgs(fileURLToPath(import.meta.url)), fileURLToPath(import.meta.url), '--cpu-step', name, planFile, JSON.stringify(arg ?? null)], { maxBuffer: 1 << 26 });
  const { result, cpuS } = JSON.parse(stdout) as { result: T; cpuS: number };
  stepCpuS += cpuS;
  return result;
}

// ------------------------------------------------------------------------------- the whole part

/** Everything measured; bench/cpu-report.ts extrapolates it to FAFB. */
export interface CpuMeasured {
  quick: boolean;
  block: { level: number; region: Vec3; chunks: Range3; empty: Vec3 };
  gen: GenStats;
  /** Block kinds in the order they ran, then the empty region's. */
  kinds: KindResult[];
  empty: KindResult[];
  verify: { checked: number; spanning: number };
  labelIdentical: boolean;
  tops: Array<{ spec: TopSpec; built: { input: number; parts: number; edges: number }; merge: TaskSample; resolve: TaskSample; mergePeakMiB: number; peakMiB: number; baseMiB: number; open: number }>;
  paste: Awaited<ReturnType<typeof stepPaste>>;
  boxes: ReturnType<typeof stepBoxes>;
  cpuSeconds: number;
}

export interface CpuSimOptions {
  dir: string;
  quick: boolean;
  /** The cost-model run's output, kept (--keep-work), and its input: paste is re-run there. */
  costsOutput: string;
  costsInput: string;
  log?: (s: string) => void;
}

/** Parts and contacts per open object handed up by the block's level-1 regions (for the top tasks). */
function ratios(kinds: KindResult[]): { partsPerOpen: number; edgesPerOpen: number } {
  const s = kinds.find((k) => k.kind === 'merge1')!.samples!;
  const open = s.reduce((a, x) => a + (x.open ?? 0), 0);
  return { partsPerOpen: s.reduce((a, x) => a + (x.parts ?? 0), 0) / open, edgesPerOpen: s.reduce((a, x) => a + (x.edges ?? 0), 0) / open };
}

export async function runCpuSim(o: CpuSimOptions): Promise<CpuMeasured> {
  const say = o.log ?? (() => undefined);
  const cpu0 = process.cpuUsage();
  const steps0 = stepCpuS;
  const t0 = Date.now();
  const dir = path.resolve(o.dir, 'cpu');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const config = fafbConfig();
  const fanIn = config.io.mergeFanIn;
  const run = fafbGraph(config).kinds.find((k) => k.name === 'faces')!.range;
  // A level-2 region inside the tissue, away from the grid's faces (a level-1 one for --quick).
  const level = o.quick ? 1 : 2;
  const region: Vec3 = o.quick ? [4, 36, 44] : [1, 9, 11];
  const chunks = regionChunks(region, level, fanIn, run);
  const mid = chunks.lo.map((v, a) => v + ((chunks.hi[a] - v) >> 1)) as unknown as Vec3;
  const plan: Plan = {
    dir, quick: o.quick, level, region, empty: [0, 1, 1],
    relabel: o.quick ? [mid] : [mid, [mid[0], mid[1], mid[2] + 1], [mid[0] + 1, mid[1], mid[2]]],
    label: o.quick ? [mid] : [mid, [mid[0], mid[1] + 1, mid[2]]],
    costsOutput: o.costsOutput, costsInput: o.costsInput,
  };
  fs.writeFileSync(path.join(dir, 'plan.json'), JSON.stringify(plan));
  const elapsed = () => `${Math.round((Date.now() - t0) / 1000)} s`;
  say(`cpu: generating ${rangeSize(chunks).toLocaleString('en-US')} chunks' tables and borders (level-${level} region ${indexId(region)})`);
  const gen = await step<GenStats>(plan, 'gen');
  say(`cpu: generated (${elapsed()}): ${JSON.stringify(gen)}`);
  const kinds: KindResult[] = [];
  const order = ['faces', ...Array.from({ length: level }, (_, i) => `merge${i + 1}`), ...Array.from({ length: level }, (_, i) => `resolve${level - i}`)];
  for (const kind of order) {
    kinds.push(await step<KindResult>(plan, 'kind', { kind }));
    say(`cpu: ${kind} (${elapsed()}): ${JSON.stringify({ ...kinds.at(-1)!, samples: undefined })}`);
  }
  const verify = await step<{ checked: number; spanning: number }>(plan, 'verify');
  say(`cpu: final ids checked against the generator: ${JSON.stringify(verify)}`);
  const empty: KindResult[] = [];
  for (const kind of ['faces', 'merge1', 'resolve1']) empty.push(await step<KindResult>(plan, 'kind', { kind, region: plan.empty, level: 1 }));
  empty.push(await step<KindResult>(plan, 'relabel', [regionChunks(plan.empty, 1, fanIn, run).lo]));
  empty.push(await step<KindResult>(plan, 'label', { chunks: [regionChunks(plan.empty, 1, fanIn, run).lo], density: 0 }));
  say(`cpu: empty region (${elapsed()}): ${JSON.stringify(empty.map((k) => ({ ...k, samples: undefined })))}`);
  kinds.push(await step<KindResult>(plan, 'relabel', plan.relabel));
  say(`cpu: relabel (${elapsed()}): ${JSON.stringify({ ...kinds.at(-1)!, samples: undefined })}`);
  const label = await step<KindResult & { identical: boolean }>(plan, 'label', { chunks: plan.label, density: DENSITY });
  kinds.push(label);
  say(`cpu: label (${elapsed()}): ${JSON.stringify({ ...label, samples: undefined })}`);
  const tops: CpuMeasured['tops'] = [];
  for (const spec of topSpecs(plan, run, fanIn, config.io.chunk, gen.rho, ratios(kinds))) {
    const built = await step<{ input: number; parts: number; edges: number }>(plan, 'topgen', spec);
    const r = await step<Omit<CpuMeasured['tops'][number], 'spec' | 'built'>>(plan, 'top', spec);
    tops.push({ spec, built, ...r });
    fs.rmSync(path.join(dir, `top-${spec.label}`), { recursive: true, force: true });
    say(`cpu: ${spec.label} (${elapsed()}): ${JSON.stringify(tops.at(-1))}`);
  }
  const paste = await step<CpuMeasured['paste']>(plan, 'paste');
  say(`cpu: paste alone (${elapsed()}): ${JSON.stringify(paste)}`);
  const boxes = await step<CpuMeasured['boxes']>(plan, 'boxes', gen.objectsPerChunk);
  say(`cpu: boxes (${elapsed()}): ${JSON.stringify(boxes)}`);
  fs.rmSync(dir, { recursive: true, force: true });
  const cpu = process.cpuUsage(cpu0);
  return {
    quick: o.quick, block: { level, region, chunks, empty: plan.empty }, gen, kinds, empty, verify, labelIdentical: label.identical,
    tops, paste, boxes, cpuSeconds: (cpu.user + cpu.system) / 1e6 + stepCpuS - steps0,
  };
}

/**
 * The largest task of each level above the block (objects in the tissue), and the largest of
 * all with objects everywhere in the bounding box (the worst case for memory).
 */
function topSpecs(plan: Plan, run: Range3, fanIn: Vec3, chunk: Vec3, rho: Vec3, r: { partsPerOpen: number; edgesPerOpen: number }): TopSpec[] {
  const scale = plan.quick ? 0.02 : 1;
  const tissue = reductionModel(run, fanIn, chunk, FAFB_SHAPE, rho, fafbTissue(FAFB_SHAPE));
  // The block's own top task built the same way: the builder against the real task (level 1's
  // children are chunks, read from their tables, not built).
  const warm = (input: number) => input * scale < 200_000;
  const out: TopSpec[] = plan.level < 2 ? [] : [{ level: plan.level, region: plan.region, rho, ...r, tissue: true, scale: 1, label: `merge${plan.level} ${indexId(plan.region)}, built like the tops (the block's task, for comparison)`, check: true, warm: true }];
  out.push(...tissue.filter((m) => m.level > plan.level).map((m) => ({
    level: m.level, region: m.maxIndex, rho, ...r, tissue: true, scale, label: `merge${m.level} ${indexId(m.maxIndex)}`, warm: warm(m.maxInput),
  })));
  const uniform = reductionModel(run, fanIn, chunk, FAFB_SHAPE, rho);
  const worst = uniform.reduce((a, m) => (m.maxInput > a.maxInput ? m : a));
  out.push({ level: worst.level, region: worst.maxIndex, rho, ...r, tissue: false, scale, label: `merge${worst.level} ${indexId(worst.maxIndex)}, objects everywhere`, warm: warm(worst.maxInput) });
  return out;
}

// Entry point of a step's process (see step()).
if (process.argv[2] === '--cpu-step') {
  const plan = JSON.parse(fs.readFileSync(process.argv[4], 'utf8')) as Plan;
  const result = await runStep(process.argv[3], plan, JSON.parse(process.argv[5]));
  const c = process.cpuUsage();
  // Exit once the pipe has taken it all: exiting right after a large write cut it short.
  process.stdout.write(JSON.stringify({ result, cpuS: (c.user + c.system) / 1e6 }), () => process.exit(0));
}
