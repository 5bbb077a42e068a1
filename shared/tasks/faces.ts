// Task `faces`: the objects continuing from a chunk into the 13 neighbours after it in raster
// order (so each pair of chunks is looked at once, by one task), as pairs of part ids. Of each
// neighbour it reads only the face, edge or corner the two share (border.ts), never a chunk.
//
//   .work/faces/<c>.bin   one section: [a0, b0, a1, b1, …], a in this chunk, b in a neighbour
import { type Vec3, shapeOf } from '../geometry/box.ts';
import { chunkBox, indexId, inRange } from '../geometry/grid.ts';
import { array3 } from '../array/array3.ts';
import { packColumns } from '../array/columns.ts';
import { anchorIds, labelObjects } from '../pipeline/instances.ts';
import { Contacts, FORWARD, borderSections, contactsAcross, touchOf } from '../pipeline/border.ts';
import { readRegion } from '../volume/zarr.ts';
import type { TaskContext, TaskStats } from './context.ts';
import { instanceRange } from './merge.ts';

export async function facesTask(ctx: TaskContext, index: Vec3): Promise<TaskStats> {
  const { run } = instanceRange(ctx);
  const pairs: Array<{ d: Vec3; n: Vec3 }> = [];
  for (const d of FORWARD) {
    const n: Vec3 = [index[0] + d[0], index[1] + d[1], index[2] + d[2]];
    if (inRange(run, n)) pairs.push({ d, n });
  }
  const mine = await borderOf(ctx, index, pairs.map((p) => touchOf(p.d).mine));
  const out = new Contacts();
  for (const [k, { d, n }] of pairs.entries()) {
    const [theirs] = await borderOf(ctx, n, [touchOf(d).theirs]);
    await ctx.timings.time('faces', () => contactsAcross(d, mine[k], theirs, out, `border of chunks ${indexId(index)} and ${indexId(n)}`));
  }
  const edges = out.pairs();
  await ctx.work.writeSections('faces', index, [{ key: 'pairs', header: null, body: [packColumns([edges])] }]);
  return { borderPairs: edges.length / 2 };
}

/**
 * Sections of a chunk's border as its writer left them, or, once freed (a resume over a larger
 * ROI needs them again), recomputed from the written segmentation: the labelling is
 * deterministic, so the border is the same.
 */
async function borderOf(ctx: TaskContext, index: Vec3, which: readonly number[]): Promise<Uint8Array[]> {
  if (ctx.work.exists('border', index, 'bin')) return ctx.work.readSections('border', index, which.map(String));
  const write = chunkBox(index, ctx.graph.chunk, ctx.graph.volume);
  const seg = await ctx.timings.time('read', () => readRegion(ctx.out.segmentation, write, 'constant', 0, ctx.src.io));
  const s8 = array3(seg.data as Uint8Array, seg.shape);
  const shape = shapeOf(write);
  const local = labelObjects(s8, write.begin);
  const all = borderSections(local.labels, anchorIds(local, write.begin, shape, ctx.graph.volume.end), s8.data, shape);
  return which.map((i) => all[i]);
}
