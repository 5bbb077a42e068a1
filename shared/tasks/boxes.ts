// Task `boxes`: the fragments of a chunk and its 26 neighbours → the boxes the chunk owns
// (boxes-merge.ts), persisted per chunk. Ready once stage one is done for every block holding
// the chunk or a neighbour.
import type { Vec3 } from '../geometry/box.ts';
import { chunkBox, forEachIndex, indexId, relatedBlocks, inRange, range3 } from '../geometry/grid.ts';
import type { Fragment } from '../pipeline/boxes-fragments.ts';
import { type OwnedBox, mergeFragments } from '../pipeline/boxes-merge.ts';
import type { TaskContext, TaskStats } from './context.ts';
import { ONE, mergeReach } from './graph.ts';
import type { Stage1Result } from './stage1.ts';

export function readStage1(ctx: TaskContext, b: Vec3): Promise<Stage1Result> {
  return ctx.stage1Cache.get(indexId(b), () => ctx.work.readJson<Stage1Result>('stage1', b));
}

export async function boxesTask(ctx: TaskContext, index: Vec3): Promise<TaskStats> {
  const c = ctx.config;
  const s1 = ctx.graph.kinds.find((k) => k.name === 'stage1')!;
  const near = range3([index[0] - 1, index[1] - 1, index[2] - 1], [index[0] + 2, index[1] + 2, index[2] + 2]);
  const blocks: Vec3[] = [];
  forEachIndex(relatedBlocks(index, ONE, ONE, s1.block, s1.range), (b) => blocks.push(b));
  const fragments: Fragment[] = [];
  for (const r of await Promise.all(blocks.map((b) => readStage1(ctx, b)))) {
    for (const ch of r.chunks) if (inRange(near, ch.index)) fragments.push(...ch.fragments);
  }
  const owned = await ctx.timings.time('boxes', () => mergeFragments(fragments, chunkBox(index, ctx.graph.chunk, ctx.graph.volume), {
    nmmThreshold: c.boxes.nmmThreshold, metric: c.boxes.metric, mode: c.boxes.mode,
    recrop: c.boxes.recrop, cropThreshold: c.boxes.cropThreshold, minShape: c.pack.crop, bounds: ctx.graph.volume,
    reach: mergeReach(c, ctx.low!.factor),
  }));
  await ctx.work.writeJson('boxes', index, owned);
  return {
    parents: owned.filter((b) => b.role === 'parent').length,
    children: owned.filter((b) => b.role === 'child').length,
  };
}

export function readBoxes(ctx: TaskContext, index: Vec3): Promise<OwnedBox[]> {
  return ctx.work.readJson<OwnedBox[]>('boxes', index);
}
