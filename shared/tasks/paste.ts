// Task `paste`: blend every crop prediction that reaches the chunk — from its own stage-two
// result and its 26 neighbours' (a box owned by a neighbour may reach in) — arg-max, write the
// chunk. Crops are added in a fixed order (neighbours in raster order, then each result's crop
// order), so the float sums, and so the bytes, never depend on which task finished first.
// The chunk's write box is the whole grid cell clipped to the volume, also where an ROI cuts it:
// the output inside an ROI equals a whole-volume run's, and a larger ROI later reuses the task.
import { type Vec3, intersect, shapeOf, volumeOf } from '../geometry/box.ts';
import { array3, crop } from '../array/array3.ts';
import { resizeLinear } from '../array/resample.ts';
import { foregroundCount } from '../infer/sliding.ts';
import { PasteAccumulator } from '../pipeline/paste.ts';
import { chunkBox, forEachIndex, relatedBlocks } from '../geometry/grid.ts';
import { toLowBox } from '../volume/source.ts';
import { writeRegion } from '../volume/zarr.ts';
import type { TaskContext, TaskStats } from './context.ts';
import { ONE } from './graph.ts';
import { type Stage2Result, readStage2Part } from './stage2-parts.ts';
import { blockBox } from './stage1.ts';
import { emptyLabel, labelChunk } from './instances.ts';
import { maskChunk, skipOf, skipped } from './mask.ts';

export function foregroundChannels(ctx: TaskContext): number {
  const card = ctx.cards.fullres;
  return foregroundCount(card, card.classes.length);
}

export async function pasteTask(ctx: TaskContext, index: Vec3): Promise<TaskStats> {
  const c = ctx.config;
  const write = chunkBox(index, ctx.graph.chunk, ctx.graph.volume);
  const why = await skipOf(ctx, 'paste', index);
  if (why) {
    await emptyLabel(ctx, index, write);
    return skipped('paste', why, volumeOf(write));
  }
  const s2 = ctx.graph.kinds.find((k) => k.name === 'stage2')!;
  const from: Vec3[] = [];
  forEachIndex(relatedBlocks(index, ONE, ONE, s2.block, s2.range), (i) => from.push(i));
  // Each block's crops cut to this chunk (stage2-parts.ts), blocks in raster order.
  const parts = await Promise.all(from.map((b) => readStage2Part(ctx, b, index)));
  let background: ((ch: number) => ReturnType<typeof resizeLinear>) | undefined;
  if (c.stage2.background === 'stage1') {
    // The stage-one block holding this chunk kept its heatmap (its own low-res write box).
    const g = ctx.low!;
    const s = ctx.graph.stage1Block;
    const b: Vec3 = [Math.floor(index[0] / s[0]), Math.floor(index[1] / s[1]), Math.floor(index[2] / s[2])];
    const bLow = toLowBox(g, blockBox(ctx, b), ctx.src.shape);
    const heat = array3(await ctx.work.readFloats('stage1', b), shapeOf(bLow));
    const lw = intersect(toLowBox(g, write, ctx.src.shape), bLow);
    const up = resizeLinear(crop(heat, bLow.begin, lw), shapeOf(write));
    background = () => up;
  }
  // Its arrays come from the pool and go back zeroed whatever happens (release, below).
  const acc = new PasteAccumulator(write, foregroundChannels(ctx), ctx.pasteBuffers);
  try {
    const { probs, seg, covered } = await ctx.timings.time('blend', () => {
      for (const r of parts) if (r) addCrops(acc, r);
      return acc.finish(ctx.cards.fullres.activation, background);
    });
    const maskedVoxels = await maskChunk(ctx, write, seg, probs);
    await ctx.timings.time('write', async () => {
      await writeRegion(ctx.out.segmentation, write, seg, ctx.src.io);
      if (ctx.out.probabilities) await writeRegion(ctx.out.probabilities, write, probs[0], ctx.src.io);
    });
    const s = shapeOf(write);
    const objects = await labelChunk(ctx, index, write, seg, probs);
    return { covered, pasted: s[0] * s[1] * s[2], objects, ...(ctx.mask ? { maskedVoxels } : {}) };
  } finally {
    acc.release();
  }
}

/** The crops of `r`, in stored order. */
function addCrops(acc: PasteAccumulator, r: Stage2Result): void {
  let at = 0;
  for (const crop of r.crops) {
    const s = shapeOf(crop.target);
    const n = r.channels * s[0] * s[1] * s[2];
    acc.addQuantised({ source: crop.source, target: crop.target, values: r.values.subarray(at, at + n) });
    at += n;
  }
}
