// Global instance ids (26-connected objects per class, one id across the whole volume), as
// tasks over the pure library shared/pipeline/instances.ts:
//
//   paste|predict ──▶ faces (reach 1) ──▶ resolve (one task: the merger) ──▶ relabel
//
// - paste/predict label their chunk as they write it (labelChunk): the local objects table
//   (`.work/label/<c>.json`: count, rows) and the chunk's outer voxel layer (`.bin`).
// - faces(c): objects continuing into the 13 neighbours after c in raster order (each border
//   pair is looked at once), from the two shells only.
// - resolve: offsets (ids are consecutive: chunk c's objects get offset(c)+1.., offsets summed in
//   raster order), union-find over the border pairs (smallest id wins), and the table rows of
//   objects that span chunks aggregated into one. It holds one number and one flag per chunk
//   and one entry per border-crossing object, never one per object or voxel.
// - relabel(c): re-labels the chunk from the written segmentation (the same deterministic
//   labelling), maps local ids to global ones, writes instances/0 and objects/<c>.jsonl.
import * as path from 'node:path';
import { type Box, type Vec3, boxAt } from '../geometry/box.ts';
import { downsampleMode } from '../array/resample.ts';
import { type Range3, chunkBox, forEachIndex, indexId, linearOf, relatedBlocks, rangeSize } from '../geometry/grid.ts';
import { type Array3, array3 } from '../array/array3.ts';
import { type ObjectRow, type Shell, UnionFind, borderEdges, decodeShell, encodeShell, labelObjects, relabel, shellOf } from '../pipeline/instances.ts';
import { readRegion, writeRegion } from '../volume/zarr.ts';
import { InputError } from '../errors.ts';
import { writeFileAtomic } from '../volume/store.ts';
import type { TaskContext, TaskStats } from './context.ts';
import { ONE } from './graph.ts';
import { readAhead } from '../cache.ts';

interface LabelResult {
  count: number;
  objects: ObjectRow[];
}

interface ResolveHeader {
  chunks: number;
  remaps: number;
  /** Rows of objects spanning chunks, aggregated, keyed by their (root) global id. */
  merged: ObjectRow[];
  total: number;
}

export interface Resolved {
  offsets: Float64Array;
  remap: Map<number, number>;
  merged: Map<number, ObjectRow>;
}

/** Label a chunk just written (by paste or predict) and keep what the merger needs. */
export async function labelChunk(ctx: TaskContext, index: Vec3, write: Box, seg: Array3<Uint8Array>, probs: readonly Array3<Float32Array>[]): Promise<number> {
  const local = await ctx.timings.time('label', () => labelObjects(seg, write.begin, probs));
  await ctx.work.writeJson('label', index, { count: local.count, objects: local.objects } satisfies LabelResult);
  await ctx.work.writeBinary('label', index, {}, encodeShell(shellOf(local, seg, write)));
  return local.count;
}

function labelRange(ctx: TaskContext): Range3 {
  return ctx.graph.kinds.find((k) => k.name === 'faces')!.range;
}

/** Border pairs between chunk `index` and each neighbour after it in raster order. */
export async function facesTask(ctx: TaskContext, index: Vec3): Promise<TaskStats> {
  const range = labelRange(ctx);
  const mine = await readShell(ctx, index);
  const me = linearOf(range, index);
  const edges: number[][] = [];
  const after: Vec3[] = [];
  forEachIndex(relatedBlocks(index, ONE, ONE, ONE, range), (n) => { if (linearOf(range, n) > me) after.push(n); });
  for (const n of after) {
    const theirs = await readShell(ctx, n);
    for (const [a, b] of borderEdges(mine, theirs)) edges.push([a, n[0], n[1], n[2], b]);
  }
  await ctx.work.writeJson('faces', index, { edges });
  return { borderPairs: edges.length };
}

/**
 * A chunk's shell as its writer left it, or, once freed (a resume over a larger ROI needs it
 * again), recomputed from the written segmentation: the labelling is deterministic, so the
 * shell is the same.
 */
async function readShell(ctx: TaskContext, index: Vec3): Promise<Shell> {
  if (ctx.work.exists('label', index, 'bin')) return decodeShell((await ctx.work.readBinary('label', index)).body);
  const write = chunkBox(index, ctx.graph.chunk, ctx.graph.volume);
  const seg = await readRegion(ctx.out.segmentation, write, 'constant', 0, ctx.src.io);
  const s8 = array3(seg.data as Uint8Array, seg.shape);
  return shellOf(labelObjects(s8, write.begin), s8, write);
}

export async function resolveTask(ctx: TaskContext): Promise<TaskStats> {
  const range = labelRange(ctx);
  const n = rangeSize(range);
  const offsets = new Float64Array(n);
  let total = 0;
  let i = 0;
  // Pass 1: offsets (raster order).
  for await (const [, r] of readAhead(indices(range), (c) => ctx.work.readJson<LabelResult>('label', c))) {
    offsets[i++] = total;
    total += r.count;
  }
  // Pass 2: union-find over border pairs.
  // `spanning` marks the chunks holding part of an object that spans chunks (one byte per
  // chunk, beside the offsets), so pass 3 reads only those chunks' tables.
  const uf = new UnionFind();
  const spanning = new Uint8Array(n);
  i = 0;
  for await (const [, { edges }] of readAhead(indices(range), (c) => ctx.work.readJson<{ edges: number[][] }>('faces', c))) {
    const me = i++;
    for (const [a, z, y, x, b] of edges) {
      const other = linearOf(range, [z, y, x]);
      uf.union(offsets[me] + a, offsets[other] + b);
      spanning[me] = spanning[other] = 1;
    }
  }
  const remap = uf.remap();
  // Pass 3: aggregate the rows of objects that span chunks (only chunks holding such objects).
  const merged = new Map<number, ObjectRow & { probMass?: number }>();
  if (uf.size > 0) {
    const holders = (function* () {
      let me = 0;
      for (const c of indices(range)) { if (spanning[me]) yield [c, me] as const; me++; }
    })();
    for await (const [[, me], r] of readAhead(holders, ([c]) => ctx.work.readJson<LabelResult>('label', c))) {
      const off = offsets[me];
      for (const row of r.objects) {
        const g = off + row.id;
        if (!uf.has(g)) continue;
        const root = uf.find(g);
        const m = merged.get(root);
        const mass = (row.meanProbability ?? 0) * row.voxels;
        if (!m) {
          merged.set(root, { ...row, id: root, probMass: mass });
        } else {
          m.box = { begin: m.box.begin.map((v, a) => Math.min(v, row.box.begin[a])) as unknown as Vec3, end: m.box.end.map((v, a) => Math.max(v, row.box.end[a])) as unknown as Vec3 };
          m.voxels += row.voxels;
          m.probMass = (m.probMass ?? 0) + mass;
        }
      }
    }
  }
  const rows: ObjectRow[] = [...merged.values()].sort((a, b) => a.id - b.id).map(({ probMass, ...row }) => (
    row.meanProbability === undefined ? row : { ...row, meanProbability: (probMass ?? 0) / row.voxels }
  ));
  const pairs = new Float64Array(2 * remap.size);
  let k = 0;
  for (const [from, to] of remap) { pairs[k++] = from; pairs[k++] = to; }
  const body = new Uint8Array(8 * (n + pairs.length));
  new Float64Array(body.buffer).set(offsets, 0);
  new Float64Array(body.buffer).set(pairs, n);
  const header: ResolveHeader = { chunks: n, remaps: remap.size, merged: rows, total };
  await ctx.work.writeBinary('resolve', [0, 0, 0], header, body);
  return { objectsSpanningChunks: rows.length };
}

function* indices(r: Range3): Generator<Vec3> {
  for (let z = r.lo[0]; z < r.hi[0]; z++) for (let y = r.lo[1]; y < r.hi[1]; y++) for (let x = r.lo[2]; x < r.hi[2]; x++) yield [z, y, x];
}

async function readResolved(ctx: TaskContext): Promise<Resolved> {
  return ctx.resolveCache.get('0_0_0', async () => {
    const { header, body } = await ctx.work.readBinary<ResolveHeader>('resolve', [0, 0, 0]);
    const all = new Float64Array(body.buffer, body.byteOffset, body.byteLength / 8);
    const offsets = all.subarray(0, header.chunks);
    const remap = new Map<number, number>();
    for (let k = header.chunks; k < all.length; k += 2) remap.set(all[k], all[k + 1]);
    return { offsets, remap, merged: new Map(header.merged.map((r) => [r.id, r])) };
  });
}

export async function relabelTask(ctx: TaskContext, index: Vec3): Promise<TaskStats> {
  const { offsets, remap, merged } = await readResolved(ctx);
  const off = offsets[linearOf(labelRange(ctx), index)];
  const write = chunkBox(index, ctx.graph.chunk, ctx.graph.volume);
  const seg = await ctx.timings.time('read', () => readRegion(ctx.out.segmentation, write, 'constant', 0, ctx.src.io));
  const local = labelObjects(array3(seg.data as Uint8Array, seg.shape), write.begin);
  const table = await ctx.work.readJson<LabelResult>('label', index);
  if (table.count !== local.count) {
    throw new InputError(ctx.out.segmentation.path, `chunk ${indexId(index)} holds ${local.count} objects but ${table.count} were labelled when it was written (changed since?)`, indexId(index));
  }
  const ids = relabel(local.labels, off, remap);
  await ctx.timings.time('write', () => writeRegion(ctx.out.instances, write, array3(ids, seg.shape), ctx.src.io));
  // The segmentation's viewing pyramid: this chunk's share of each level, whole storage chunks
  // of that level (pyramidFactors keeps only levels where a chunk maps to whole chunks).
  for (const { array, factor } of ctx.out.segmentationLevels) {
    const down = downsampleMode(seg, factor);
    await ctx.timings.time('write', () => writeRegion(array, boxAt(write.begin.map((v, a) => v / factor[a]) as unknown as Vec3, down.shape), down, ctx.src.io));
  }
  const lines: string[] = [];
  for (const row of table.objects) {
    const g = off + row.id;
    if (remap.has(g)) continue; // part of an object whose smallest id lies elsewhere
    lines.push(JSON.stringify(merged.get(g) ?? { ...row, id: g }));
  }
  await writeFileAtomic(path.join(ctx.out.path, 'objects', `${indexId(index)}.jsonl`), lines.length ? lines.join('\n') + '\n' : '');
  return { instances: lines.length };
}
