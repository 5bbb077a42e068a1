// Task `stage1`: stage one on a block of chunks and its halo → the block's fragments and border
// (boxes-fragments.ts): `.work/stage1/<block>.json` (fragments) and `.bin` (the border's 18
// sections). With `stage2.background = "stage1"` the block's heatmap is kept too (paste falls
// back to it).
import { type Box, type Vec3, boxOfShape } from '../geometry/box.ts';
import { chunkBox } from '../geometry/grid.ts';
import { crop } from '../array/array3.ts';
import { stage1 } from '../pipeline/stage1.ts';
import { type BlockFragments, type Fragment, extractFragments, latticeOf } from '../pipeline/boxes-fragments.ts';
import { contextBox } from '../pipeline/context.ts';
import { readLow, toLowBox } from '../volume/source.ts';
import type { TaskContext, TaskStats } from './context.ts';
import { oracleFragments } from '../run/oracle.ts';
import { numbered } from './work-sections.ts';
import { skipOf, skipped } from './mask.ts';

export interface Stage1Result {
  /** The block's fragments, sorted by id. */
  fragments: Fragment[];
}

/** The full-resolution write box of stage-one block `b` (the union of its chunks' write boxes). */
export function blockBox(ctx: TaskContext, b: Vec3): Box {
  const s = ctx.graph.stage1Block;
  const first: Vec3 = [b[0] * s[0], b[1] * s[1], b[2] * s[2]];
  const last: Vec3 = [(b[0] + 1) * s[0] - 1, (b[1] + 1) * s[1] - 1, (b[2] + 1) * s[2] - 1];
  const lo = chunkBox(first, ctx.graph.chunk, ctx.graph.volume);
  const hi = chunkBox(last, ctx.graph.chunk, ctx.graph.volume);
  return { begin: lo.begin, end: hi.end };
}

export async function stage1Task(ctx: TaskContext, b: Vec3): Promise<TaskStats> {
  const c = ctx.config;
  const g = ctx.low!;
  // No tissue in what the block's fragments can reach (tasks/mask.ts): nothing reads its result.
  const why = await skipOf(ctx, 'stage1', b);
  if (why) return skipped('stage1', why);
  const write = blockBox(ctx, b);
  if (ctx.oracle) {
    const found = await ctx.timings.time('read', () => oracleFragments(c, ctx.oracle!, write, b));
    return persist(ctx, b, found);
  }
  const lw = toLowBox(g, write, ctx.src.shape);
  const around = contextBox(lw, c.stage1.patch, g.shape);
  const raw = await ctx.timings.time('read', () => readLow(ctx.src, g, around));
  const heat = await ctx.timings.time('sliding', () => stage1(raw, ctx.lowres!, {
    patch: c.stage1.patch, step: c.stage1.step, mirror: c.stage1.mirror,
    batch: c.inference.batch, inFlight: ctx.pool.size + 1, signal: ctx.signal,
  }));
  const found = await ctx.timings.time('extract', () => extractFragments(heat, around.begin, lw, b, {
    priorDownsample: c.boxes.priorDownsample, pooling: c.boxes.pooling, roiThreshold: c.boxes.roiThreshold,
    axisThr: c.boxes.axisThr, areaThr: c.boxes.areaThr, factor: g.factor, margin: c.boxes.margin,
    minShape: c.pack.crop, bounds: boxOfShape(ctx.src.shape), lowVolume: g.shape, lattice: latticeOf(c.boxes),
  }));
  if (c.stage2.background === 'stage1') await ctx.work.writeFloats('stage1', b, crop(heat, around.begin, lw).data);
  return persist(ctx, b, found);
}

async function persist(ctx: TaskContext, b: Vec3, found: BlockFragments): Promise<TaskStats> {
  await ctx.work.writeSections('stage1', b, numbered(found.border));
  await ctx.work.writeJson('stage1', b, { fragments: found.fragments } satisfies Stage1Result);
  return { candidates: found.fragments.length };
}
