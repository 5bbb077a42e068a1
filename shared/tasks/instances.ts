// Global instance ids (26-connected objects per class, one id across the whole volume), the
// chunk ends of the work; the reduction in between is tasks/faces.ts and tasks/merge.ts:
//
//   paste|blend ──▶ faces (reach 1) ──▶ merge1 … mergeL ──▶ resolveL … resolve1 ──▶ relabel
//
// - paste/blend label their chunk once, as they write it (labelChunk): the objects table
//   (`.work/label/<c>.json`, each object with its part id = 1 + raster index of its first voxel),
//   the border (`.work/border/<c>.bin`: faces and edges in part ids, border.ts) and the labels as
//   runs (`.work/runs/<c>.bin`), plus the segmentation's viewing pyramid for the chunk.
// - relabel(c): the final id of each of the chunk's parts that reach its faces comes from
//   resolve1 (the chunk's list), every other part's id is already final; paints the runs with
//   those ids into instances/0 and writes objects/<c>.jsonl (an object spanning chunks once, at
//   the chunk holding its first voxel, with its summed row).
import * as path from 'node:path';
import { type Box, type Vec3, boxAt, shapeOf } from '../geometry/box.ts';
import { downsampleMode } from '../array/resample.ts';
import { chunkBox, indexId } from '../geometry/grid.ts';
import { regionParent } from '../geometry/tree.ts';
import { type Array3, array3 } from '../array/array3.ts';
import { type ObjectRow, type RowRanges, anchorIds, labelObjects, labelRuns, paintRuns, paintRunsSlab } from '../pipeline/instances.ts';
import { borderSections, emptyBorderSections } from '../pipeline/border.ts';
import type { Down } from '../pipeline/merge.ts';
import { packColumns, unpackColumns } from '../array/columns.ts';
import { readRegion, writeRegion } from '../volume/zarr.ts';
import { writeShardBySlabs } from '../volume/shard.ts';
import { InputError } from '../errors.ts';
import { writeFileAtomic } from '../volume/store.ts';
import type { TaskContext, TaskStats } from './context.ts';
import { decodeDown } from './merge.ts';
import { numbered } from './work-sections.ts';
import { skipOf, skipped } from './mask.ts';

/** An object of a chunk's table: its local id, its part id (`anchor`) and its statistics. */
export type LabelRow = ObjectRow & { anchor: number };

export interface LabelResult {
  count: number;
  objects: LabelRow[];
}

/** Label a chunk just written (by paste or blend) and keep what the instance tasks need. */
export async function labelChunk(ctx: TaskContext, index: Vec3, write: Box, seg: Array3<Uint8Array>, probs: readonly Array3<Float32Array>[]): Promise<number> {
  const shape = shapeOf(write);
  const { local, ids, runs, border } = await ctx.timings.time('label', () => {
    const into = ctx.pasteBuffers.u32(seg.data.length);
    const l = labelObjects(seg, write.begin, probs, into);
    const i = anchorIds(l, write.begin, shape, ctx.graph.volume.end);
    const r = labelRuns(l.labels, shape, l.rows);
    const b = borderSections(l.labels, i, seg.data, shape);
    // Back to the pool zeroed: the runs say which voxels were written.
    for (let k = 0; k < r.length; k += 3) into.fill(0, r[k], r[k] + r[k + 1]);
    ctx.pasteBuffers.give(into);
    return { local: l, ids: i, runs: r, border: b };
  });
  const objects: LabelRow[] = local.objects.map((r) => ({ ...r, anchor: ids[r.id] }));
  await ctx.work.writeJson('label', index, { count: local.count, objects } satisfies LabelResult);
  await ctx.work.writeSections('border', index, numbered(border));
  await ctx.work.writeSections('runs', index, [{ key: 'runs', header: null, body: [packColumns([runs])] }]);
  await writePyramid(ctx, write, seg, local.rows);
  return local.count;
}

/**
 * What labelChunk keeps for a chunk with no object, without touching its voxels: a chunk the
 * tissue mask skips (nothing is written to the segmentation or its pyramid: background).
 */
export async function emptyLabel(ctx: TaskContext, index: Vec3, write: Box): Promise<void> {
  await ctx.work.writeJson('label', index, { count: 0, objects: [] } satisfies LabelResult);
  await ctx.work.writeSections('border', index, numbered(emptyBorderSections(shapeOf(write))));
  await ctx.work.writeSections('runs', index, [{ key: 'runs', header: null, body: [packColumns([new Uint32Array(0)])] }]);
}

/**
 * The segmentation's viewing pyramid: this chunk's share of each level, whole storage chunks of
 * that level (pyramidFactors keeps only levels where a chunk maps to whole chunks).
 */
async function writePyramid(ctx: TaskContext, write: Box, seg: Array3<Uint8Array>, rows: RowRanges): Promise<void> {
  for (const { array, factor } of ctx.out.segmentationLevels) {
    const down = downsampleMode(seg, factor, rows);
    await ctx.timings.time('write', () => writeRegion(array, boxAt(write.begin.map((v, a) => v / factor[a]) as unknown as Vec3, down.shape), down, ctx.src.io));
  }
}

/**
 * A chunk's local labels as runs: those its writer kept, or, once freed (a resume over another ROI),
 * labelled again from the written segmentation — the labelling is deterministic, so they are the
 * same (the object count is checked).
 */
async function chunkRuns(ctx: TaskContext, index: Vec3, write: Box, table: LabelResult): Promise<Uint32Array> {
  if (ctx.work.exists('runs', index, 'bin')) {
    const [b] = await ctx.work.readSections('runs', index, ['runs']);
    const [runs] = unpackColumns(b, `label runs of chunk ${indexId(index)}`);
    if (!(runs instanceof Uint32Array)) throw new InputError(ctx.work.path('runs', index, 'bin'), 'is not a table of label runs', indexId(index));
    return runs;
  }
  const seg = await ctx.timings.time('read', () => readRegion(ctx.out.segmentation, write, 'constant', 0, ctx.src.io));
  const local = await ctx.timings.time('label', () => labelObjects(array3(seg.data as Uint8Array, seg.shape), write.begin));
  if (table.count !== local.count) {
    throw new InputError(ctx.out.segmentation.path, `chunk ${indexId(index)} holds ${local.count} objects but ${table.count} were labelled when it was written (changed since?)`, indexId(index));
  }
  return labelRuns(local.labels, shapeOf(write), local.rows);
}

/** The final ids of a chunk's parts that reach its faces: its list in its level-1 region's resolve. */
async function chunkDown(ctx: TaskContext, index: Vec3): Promise<Down> {
  const region = regionParent(index, ctx.config.io.mergeFanIn);
  const [b] = await ctx.work.readSections('resolve1', region, [indexId(index)]);
  return decodeDown(b, `resolve1 ${indexId(region)}, chunk ${indexId(index)}`);
}

export async function relabelTask(ctx: TaskContext, index: Vec3): Promise<TaskStats> {
  const write = chunkBox(index, ctx.graph.chunk, ctx.graph.volume);
  // A chunk its writer skipped (no tissue, no stored input) has no object: no instances chunk
  // is painted (an empty FAFB chunk's uint64 ids cost seconds to encode), its objects file is empty.
  const why = await skipOf(ctx, 'relabel', index);
  if (why) {
    await writeFileAtomic(path.join(ctx.out.path, 'objects', `${indexId(index)}.jsonl`), '');
    return { instances: 0, ...skipped('relabel', why) };
  }
  const table = await ctx.work.readJson<LabelResult>('label', index);
  const down = await chunkDown(ctx, index);
  const downAt = new Map<number, number>();
  for (let i = 0; i < down.key.length; i++) downAt.set(down.key[i], i);
  const final = new Float64Array(table.count + 1);
  const lines: string[] = [];
  for (const row of table.objects) {
    const d = downAt.get(row.anchor);
    final[row.id] = d === undefined ? row.anchor : down.final[d];
    if (final[row.id] !== row.anchor) continue; // a part of an object whose first voxel lies elsewhere
    lines.push(JSON.stringify(d === undefined ? objectLine(row) : summedLine(down, d)));
  }
  const runs = await chunkRuns(ctx, index, write, table);
  if (ctx.out.instances.dtype === 'uint64') await paintUint64(ctx, write, runs, final);
  else await paintUint32(ctx, write, runs, final);
  await writeFileAtomic(path.join(ctx.out.path, 'objects', `${indexId(index)}.jsonl`), lines.length ? lines.join('\n') + '\n' : '');
  return { instances: lines.length };
}

/**
 * uint32 ids: painted into a pooled chunk-sized array (a fresh one costs its page faults), handed
 * back zeroed by the same runs once written.
 */
async function paintUint32(ctx: TaskContext, write: Box, runs: Uint32Array, final: Float64Array): Promise<void> {
  const shape = shapeOf(write);
  const out = ctx.pasteBuffers.u32(shape[0] * shape[1] * shape[2]);
  try {
    await ctx.timings.time('relabel', () => paintRuns(runs, final, out));
    await ctx.timings.time('write', () => writeRegion(ctx.out.instances, write, array3(out, shape), ctx.src.io));
  } finally {
    for (let k = 0; k < runs.length; k += 3) out.fill(0, runs[k], runs[k] + runs[k + 1]);
    ctx.pasteBuffers.give(out);
  }
}

/**
 * uint64 ids (volumes past 2^32 voxels: FAFB): 8 bytes a voxel would hold 805 MB for one FAFB
 * chunk, so the chunk is painted and written a slab of whole storage chunks at a time (the
 * storage chunk's depth in z: 201 MB there). A sharded output's shard is this chunk: its slabs
 * are encoded one after the other into the one shard file.
 */
async function paintUint64(ctx: TaskContext, write: Box, runs: Uint32Array, final: Float64Array): Promise<void> {
  const shape = shapeOf(write);
  const va = ctx.out.instances;
  const plane = shape[1] * shape[2];
  if (va.shard) {
    let next = 0;
    const shardIndex = write.begin.map((v, a) => v / va.shard![a]) as unknown as Vec3;
    await ctx.timings.time('write', () => writeShardBySlabs(va, shardIndex, (slab, z0) => {
      next = paintRunsSlab(runs, final, slab.data as unknown as BigUint64Array, z0 * plane, next);
    }, ctx.src.io));
    return;
  }
  const depth = Math.min(shape[0], va.chunks[0]);
  const slab = new BigUint64Array(depth * plane);
  let from = 0;
  for (let z = 0; z < shape[0]; z += depth) {
    const d = Math.min(depth, shape[0] - z);
    const out = d === depth ? slab : slab.subarray(0, d * plane);
    if (z > 0) out.fill(0n);
    from = await ctx.timings.time('relabel', () => paintRunsSlab(runs, final, out, z * plane, from));
    const box: Box = { begin: [write.begin[0] + z, write.begin[1], write.begin[2]], end: [write.begin[0] + z + d, write.end[1], write.end[2]] };
    await ctx.timings.time('write', () => writeRegion(va, box, array3(out as unknown as Uint32Array, [d, shape[1], shape[2]]), ctx.src.io));
  }
}

function objectLine(row: LabelRow): ObjectRow {
  const out: ObjectRow = { id: row.anchor, class: row.class, box: row.box, voxels: row.voxels };
  if (row.meanProbability !== undefined) out.meanProbability = row.meanProbability;
  return out;
}

function summedLine(down: Down, i: number): ObjectRow {
  const r = down.row;
  const b = r.box.subarray(6 * i, 6 * i + 6);
  const out: ObjectRow = { id: down.final[i], class: r.cls[i], box: { begin: [b[0], b[1], b[2]], end: [b[3], b[4], b[5]] }, voxels: r.voxels[i] };
  if (!Number.isNaN(r.mass[i])) out.meanProbability = r.mass[i] / r.voxels[i];
  return out;
}
