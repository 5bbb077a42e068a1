// The one-stage baseline, chunk by chunk: nnU-Net sliding window at full resolution over each
// chunk's context box, cut to its write box, arg-maxed and written. Output depends only on
// (input, models, config): not on how many chunks run at once.
import type { Box } from '../geometry/box.ts';
import { type Array3, array3, crop } from '../array/array3.ts';
import { normalize } from '../infer/model.ts';
import { argmax, slidingWindow } from '../infer/sliding.ts';
import { contextBox } from '../pipeline/context.ts';
import { readFull } from '../volume/source.ts';
import { writeRegion } from '../volume/zarr.ts';
import type { RunContext } from './context.ts';
import type { OutputArrays } from './output.ts';

/** Returns what it wrote: the classes and the foreground probabilities per channel. */
export async function oneStageChunk(ctx: RunContext, out: OutputArrays, write: Box): Promise<{ seg: Array3<Uint8Array>; probs: Array3<Float32Array>[] }> {
  const c = ctx.config;
  const card = ctx.cards.fullres;
  const read = contextBox(write, c.baseline.patch, ctx.src.shape);
  const raw = await ctx.timings.time('read', () => readFull(ctx.src, read));
  const input = array3(normalize(raw.data, card.normalization), raw.shape);
  const probs = await ctx.timings.time('sliding', () => slidingWindow(input, ctx.fullres, {
    patch: c.baseline.patch, step: c.baseline.step, mirror: c.baseline.mirror,
    batch: c.inference.batch, inFlight: ctx.pool.size + 1, signal: ctx.signal,
  }));
  const fg = probs.map((p) => crop(p, read.begin, write));
  const seg = argmax(fg, card.activation);
  await ctx.timings.time('write', async () => {
    await writeRegion(out.segmentation, write, seg, ctx.src.io);
    if (out.probabilities) await writeRegion(out.probabilities, write, fg[0], ctx.src.io);
  });
  return { seg, probs: fg };
}
