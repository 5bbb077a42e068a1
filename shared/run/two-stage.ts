// The two-stage pipeline over a chunk grid, in four phases whose units are independent and
// whose results land in files, so the same phases can run on many machines:
//   1. stage one, per stage-one chunk: low-resolution heatmap of the chunk's context →
//      candidate boxes of regions touching the chunk (objects crossing a border are seen whole
//      by both sides). Stage-one chunks are `io.chunk` × the resolution factor (rounded), so
//      they hold about as many low-resolution voxels as a chunk holds full-resolution ones and
//      the halo a sliding window needs is paid rarely;
//   2. boxes, once: global NMS (drops the duplicates of phase 1) → NMM parents → children;
//      selection per chunk (each box owned by the chunk holding its anchor); packing;
//   3. stage two, per canvas batch: assemble, run, store the canvas prediction;
//   4. paste, per chunk: blend every crop prediction that reaches the chunk's write box,
//      arg-max, write. A chunk writes only its own write box.
import * as fs from 'node:fs';
import * as path from 'node:path';
import pLimit from 'p-limit';
import { type Box, type Vec3, boxOfShape, grow, intersect, isEmpty, shapeOf } from '../geometry/box.ts';
import { type Chunk, planGrid } from '../geometry/grid.ts';
import { type Array3, array3, crop } from '../array/array3.ts';
import { resizeLinear } from '../array/resample.ts';
import { normalize } from '../infer/model.ts';
import { argmax } from '../infer/sliding.ts';
import { type Candidate, extractBoxes, refineBoxes } from '../pipeline/boxes.ts';
import { policyByName } from '../pipeline/select.ts';
import { type Packing, pack, unpackCanvas } from '../pipeline/pack.ts';
import { stage1 } from '../pipeline/stage1.ts';
import { type CanvasPrediction, channelOf, stage2 } from '../pipeline/stage2.ts';
import { PasteAccumulator } from '../pipeline/paste.ts';
import { contextBox } from '../pipeline/context.ts';
import { type LowGrid, lowGrid, readFull, readLow, toLowBox } from '../volume/source.ts';
import { writeRegion } from '../volume/zarr.ts';
import { writeJsonAtomic } from '../volume/store.ts';
import type { RunContext } from './context.ts';
import type { OutputArrays } from './output.ts';
import { type ChunkFailure, runChunks } from './chunks.ts';

export interface TwoStageStats {
  candidates: number;
  parents: number;
  children: number;
  boxes: number;
  canvases: number;
  fillRatio: number;
  /** Fraction of the region's voxels some crop covered. */
  coverage: number;
}

type Progress = (phase: string, done: number, total: number) => void;

/** Phase 1 for one chunk: its candidate boxes (and its heatmap, when the config keeps it). */
export async function stage1Chunk(ctx: RunContext, g: LowGrid, chunk: Chunk, workDir: string): Promise<Candidate[]> {
  const c = ctx.config;
  const lw = toLowBox(g, chunk.writeBox, ctx.src.shape);
  const around = contextBox(lw, c.stage1.patch, g.shape);
  const raw = await ctx.timings.time('read', () => readLow(ctx.src, g, around));
  const heat = await ctx.timings.time('sliding', () => stage1(raw, ctx.lowres!, {
    patch: c.stage1.patch, step: c.stage1.step, mirror: c.stage1.mirror,
    batch: c.inference.batch, inFlight: ctx.pool.size + 1, signal: ctx.signal,
  }));
  if (c.stage2.background === 'stage1') {
    const own = crop(heat, around.begin, lw);
    await writeFloat(path.join(workDir, 'heat', `${chunk.id}.f32`), own.data);
  }
  return ctx.timings.time('extract', () => extractBoxes(heat, around.begin, {
    priorDownsample: c.boxes.priorDownsample, pooling: c.boxes.pooling, roiThreshold: c.boxes.roiThreshold,
    axisThr: c.boxes.axisThr, areaThr: c.boxes.areaThr, factor: g.factor, margin: c.boxes.margin,
    minShape: c.pack.crop, bounds: ctx.roi,
  }).filter((b) => !isEmpty(intersect(b.box, chunk.writeBox))));
}

export interface BoxPlan {
  candidates: Candidate[];
  parents: Candidate[];
  children: Candidate[];
  /** Selected and ordered, what stage two takes. */
  boxes: Candidate[];
  packing: Packing;
}

/** Phase 2 (no I/O; only records its timings): fragments of every chunk → global boxes → per-chunk selection → packing. */
export function planBoxes(ctx: RunContext, chunks: readonly Chunk[], fragments: readonly Candidate[][]): BoxPlan {
  const c = ctx.config;
  const t0 = performance.now();
  const all = fragments.flat().map((f, i) => ({ ...f, id: i }));
  const refined = refineBoxes(all, {
    nmsThreshold: c.boxes.nmsThreshold, nmmThreshold: c.boxes.nmmThreshold, metric: c.boxes.metric,
    mode: c.boxes.mode, recropShape: c.boxes.recrop, cropThreshold: c.boxes.cropThreshold, bounds: ctx.roi,
  });
  const policy = policyByName(c.select.policy);
  const boxes = chunks.flatMap((ch) => policy.select(refined.boxes, {
    chunkWriteBox: ch.writeBox, maxBoxes: c.select.maxBoxes > 0 ? c.select.maxBoxes : undefined,
  }));
  const t1 = performance.now();
  ctx.timings.addPhase('boxes', t1 - t0);
  // Pack each box with `pack.context` around it, then paste back only the box itself.
  const ctxm = c.pack.context;
  const withContext = ctxm.some((v) => v > 0);
  const vol = boxOfShape(ctx.src.shape);
  const packed = withContext ? boxes.map((b) => ({ ...b, box: intersect(grow(b.box, ctxm), vol) })) : boxes;
  const packing = pack(packed, {
    canvas: c.pack.canvas, slot: c.pack.crop, heuristic: c.pack.heuristic, postprocess: c.pack.postprocess,
    cropThreshold: c.boxes.cropThreshold, maxPerCanvas: c.pack.maxPerCanvas > 0 ? c.pack.maxPerCanvas : undefined,
    bounds: vol,
  });
  if (withContext) {
    const own = new Map(boxes.map((b) => [b.id, b.box]));
    packing.placements = packing.placements.map((p) => ({ ...p, target: intersect(p.target, own.get(p.boxId)!) }));
  }
  ctx.timings.addPhase('pack', performance.now() - t1);
  return { candidates: refined.candidates, parents: refined.parents, children: refined.children, boxes, packing };
}

async function writeFloat(file: string, data: Float32Array): Promise<void> {
  await fs.promises.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await fs.promises.writeFile(tmp, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  await fs.promises.rename(tmp, file);
}

async function readFloat(file: string): Promise<Float32Array> {
  const b = await fs.promises.readFile(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

function canvasFile(workDir: string, i: number): string {
  return path.join(workDir, 'canvases', `${i}.f32`);
}

/** Phase 3 for one batch of canvases. */
export async function stage2Batch(ctx: RunContext, packing: Packing, indices: number[], workDir: string): Promise<number> {
  const c = ctx.config;
  const card = ctx.cards.fullres;
  const fill = c.pack.fill === 'zero' ? 0 : normalize([0], card.normalization)[0];
  const read = async (b: Box): Promise<Array3<Float32Array>> => {
    const raw = await ctx.timings.time('read', () => readFull(ctx.src, b));
    return array3(normalize(raw.data, card.normalization), raw.shape);
  };
  const preds = await ctx.timings.time('canvases', () => stage2(packing, indices, read, ctx.fullres, {
    batch: c.inference.batch, mirror: c.stage2.mirror, fill, signal: ctx.signal,
  }));
  let channels = 1;
  for (const p of preds) {
    channels = p.channels;
    await writeFloat(canvasFile(workDir, p.canvas), p.data);
  }
  return channels;
}

/** Phase 4 for one chunk: blend the crops reaching its write box, arg-max, write. */
export async function pasteChunk(
  ctx: RunContext, out: OutputArrays, g: LowGrid, plan: BoxPlan, chunk: Chunk, channels: number, workDir: string,
  loadCanvas: (i: number) => Promise<CanvasPrediction>, stage1Chunks: readonly Chunk[], canvases: readonly number[],
): Promise<number> {
  const c = ctx.config;
  const acc = new PasteAccumulator(chunk.writeBox, channels);
  const shape = plan.packing.canvasShape;
  for (const ci of canvases) {
    const pred = await loadCanvas(ci);
    const perChannel = Array.from({ length: channels }, (_, ch) => unpackCanvas(plan.packing, ci, channelOf(pred, ch, shape)));
    perChannel[0].forEach((u, k) => {
      if (isEmpty(intersect(u.target, chunk.writeBox))) return;
      acc.add({ source: u.placement.source, target: u.target, values: perChannel.map((pc) => pc[k].values) });
    });
  }
  let background: ((ch: number) => Array3<Float32Array>) | undefined;
  if (c.stage2.background === 'stage1') {
    // The stage-one chunk holding this chunk (stage-one chunks are aligned multiples).
    const s1 = stage1Chunks.find((s) => !isEmpty(intersect(s.writeBox, chunk.writeBox)))!;
    const s1Low = toLowBox(g, s1.writeBox, ctx.src.shape);
    const heat = array3(await readFloat(path.join(workDir, 'heat', `${s1.id}.f32`)), shapeOf(s1Low));
    const lw = intersect(toLowBox(g, chunk.writeBox, ctx.src.shape), s1Low);
    const up = resizeLinear(crop(heat, s1Low.begin, lw), shapeOf(chunk.writeBox));
    background = () => up;
  }
  const probs = acc.result(background);
  const seg = argmax(probs, ctx.cards.fullres.output);
  await ctx.timings.time('write', async () => {
    await writeRegion(out.segmentation, chunk.writeBox, seg, ctx.src.io);
    if (out.probabilities) await writeRegion(out.probabilities, chunk.writeBox, probs[0], ctx.src.io);
  });
  return acc.covered();
}

function boxesDocument(plan: BoxPlan): unknown {
  const where = new Map<number, Array<{ canvas: number; source: Box; dest: Box; target: Box; resized: boolean }>>();
  for (const p of plan.packing.placements) {
    const l = where.get(p.boxId) ?? [];
    l.push({ canvas: p.canvas, source: p.source, dest: p.dest, target: p.target, resized: p.resized });
    where.set(p.boxId, l);
  }
  return {
    canvasShape: plan.packing.canvasShape,
    canvases: plan.packing.canvases,
    fillRatio: plan.packing.fillRatio,
    parents: plan.parents.map((p) => ({ id: p.id, box: p.box, score: p.score, members: p.members })),
    boxes: plan.boxes.map((b) => ({ id: b.id, role: b.role, parent: b.parent, box: b.box, score: b.score, placements: where.get(b.id) ?? [] })),
  };
}

/** Where phase 1's boxes come from: stage one (the pipeline) or, for the benchmark's oracle, elsewhere. */
export type BoxSource = (chunk: Chunk) => Promise<Candidate[]>;

export async function runTwoStage(
  ctx: RunContext, out: OutputArrays, chunks: readonly Chunk[], progress?: Progress, boxSource?: BoxSource,
): Promise<{ failures: ChunkFailure[]; stats: TwoStageStats; plan?: BoxPlan }> {
  const c = ctx.config;
  const workDir = path.join(out.path, '.work');
  const g = lowGrid(ctx.src, c.stage1.spacing);

  // Phase 1.
  const s1Chunks = planGrid(ctx.roi, stage1ChunkShape(c.io.chunk, g), [0, 0, 0]);
  const fragments = new Map<string, Candidate[]>();
  const f1 = await ctx.timings.phase('stage1', () => runChunks(ctx, s1Chunks, async (ch) => {
    fragments.set(ch.id, await (boxSource ? boxSource(ch) : stage1Chunk(ctx, g, ch, workDir)));
  }, (n) => progress?.('stage1', n, s1Chunks.length)));
  if (f1.length) return { failures: f1, stats: emptyStats() };

  // Phase 2.
  const plan = planBoxes(ctx, chunks, s1Chunks.map((ch) => fragments.get(ch.id)!));
  await writeJsonAtomic(path.join(out.path, 'boxes.json'), boxesDocument(plan));
  ctx.log.info({ candidates: plan.candidates.length, parents: plan.parents.length, children: plan.children.length, boxes: plan.boxes.length, canvases: plan.packing.canvases, fillRatio: plan.packing.fillRatio }, 'boxes planned');

  // Phase 3: canvases in fixed batches (batch composition never depends on timing).
  const batch = Math.max(1, c.inference.batch);
  const batches: number[][] = [];
  for (let i = 0; i < plan.packing.canvases; i += batch) {
    batches.push(Array.from({ length: Math.min(batch, plan.packing.canvases - i) }, (_, k) => i + k));
  }
  let channels = ctx.cards.fullres.output === 'softmax' ? Math.max(1, ctx.cards.fullres.classes.length - 1) : ctx.cards.fullres.classes.length;
  // Enough batches in flight that reading and assembling the next canvases (main thread)
  // overlaps the network calls of the current ones (inference threads).
  const limit = pLimit(2 * ctx.pool.size + 1);
  let done = 0;
  await ctx.timings.phase('stage2', () => Promise.all(batches.map((b) => limit(async () => {
    channels = await stage2Batch(ctx, plan.packing, b, workDir);
    progress?.('stage2', ++done, batches.length);
  }))));

  // Phase 4.
  const cache = new Map<number, Promise<CanvasPrediction>>();
  const loadCanvas = (i: number): Promise<CanvasPrediction> => {
    let p = cache.get(i);
    if (!p) {
      p = readFloat(canvasFile(workDir, i)).then((data) => ({ canvas: i, channels, data }));
      cache.set(i, p);
      if (cache.size > 64) cache.delete(cache.keys().next().value!);
    }
    return p;
  };
  const byChunk = canvasesByChunk(plan.packing, chunks, c.io.chunk);
  let covered = 0;
  const f4 = await ctx.timings.phase('paste', () => runChunks(ctx, chunks, async (ch) => {
    covered += await pasteChunk(ctx, out, g, plan, ch, channels, workDir, loadCanvas, s1Chunks, byChunk.get(ch.id) ?? []);
  }, (n) => progress?.('paste', n, chunks.length)));
  await fs.promises.rm(workDir, { recursive: true, force: true });
  const roiShape = shapeOf(ctx.roi);
  return {
    failures: f4,
    plan,
    stats: {
      candidates: plan.candidates.length,
      parents: plan.parents.length,
      children: plan.children.length,
      boxes: plan.boxes.length,
      canvases: plan.packing.canvases,
      fillRatio: plan.packing.fillRatio,
      coverage: covered / (roiShape[0] * roiShape[1] * roiShape[2]),
    },
  };
}

/**
 * For every chunk, the canvases (ascending) with a placement whose target reaches its write
 * box. Chunks lie on a grid aligned to `chunkShape`, so each target maps to its chunks by
 * arithmetic: one pass over the placements instead of one per chunk.
 */
export function canvasesByChunk(packing: Packing, chunks: readonly Chunk[], chunkShape: Vec3): Map<string, number[]> {
  const byCell = new Map<string, Chunk>();
  const cell = (g: readonly number[]) => g.join(',');
  for (const ch of chunks) byCell.set(cell(ch.writeBox.begin.map((v, a) => Math.floor(v / chunkShape[a]))), ch);
  const sets = new Map<string, Set<number>>();
  for (const p of packing.placements) {
    if (isEmpty(p.target)) continue;
    const lo = p.target.begin.map((v, a) => Math.floor(v / chunkShape[a]));
    const hi = p.target.end.map((v, a) => Math.ceil(v / chunkShape[a]));
    for (let z = lo[0]; z < hi[0]; z++) for (let y = lo[1]; y < hi[1]; y++) for (let x = lo[2]; x < hi[2]; x++) {
      const ch = byCell.get(cell([z, y, x]));
      if (!ch || isEmpty(intersect(p.target, ch.writeBox))) continue;
      const set = sets.get(ch.id) ?? new Set<number>();
      set.add(p.canvas);
      sets.set(ch.id, set);
    }
  }
  return new Map([...sets].map(([id, set]) => [id, [...set].sort((a, b) => a - b)]));
}

/** Stage-one chunk: `io.chunk` times the (rounded) resolution factor, so chunks nest in it. */
export function stage1ChunkShape(chunk: Vec3, g: LowGrid): Vec3 {
  return chunk.map((v, a) => v * Math.max(1, Math.round(g.factor[a]))) as unknown as Vec3;
}

function emptyStats(): TwoStageStats {
  return { candidates: 0, parents: 0, children: 0, boxes: 0, canvases: 0, fillRatio: 0, coverage: 0 };
}
