// The one-stage baseline as nnU-Net runs it on a whole volume: one global tile grid (nnU-Net's
// step rule over the whole volume), every tile computed once, Gaussian-weighted logits summed
// exactly across chunk borders. Two task kinds:
//
//   predict(c) ──reach 1──▶ blend(c)
//
// - predict(c) runs the tiles whose start lies in chunk c and keeps their weighted sums per
//   chunk they reach: c itself and its neighbours after it (a tile is no longer than a chunk),
//   `.work/tiles-<dz><dy><dx>/<c>.bin` for the part in chunk c + (dz, dy, dx).
// - blend(c) adds the parts that reach c (from c and its neighbours before it, in a fixed
//   order), divides by the summed weights (a product of per-axis sums: the grid is a product),
//   activates, arg-maxes, writes the chunk and labels it for the instances.
// The grid is the whole volume's, whatever the ROI, so the output inside an ROI equals a
// whole-volume run's there; `tiles` in the report counts what ran.
import { type Box, type Vec3, intersect, isEmpty, shapeOf, volumeOf } from '../geometry/box.ts';
import { chunkBox } from '../geometry/grid.ts';
import { array3 } from '../array/array3.ts';
import { normalize } from '../infer/model.ts';
import { accumulateTiles, argmax, finishTiles, gridTiles, paddedStarts, tileWeights } from '../infer/sliding.ts';
import { readFull } from '../volume/source.ts';
import { writeRegion } from '../volume/zarr.ts';
import { ConfigError } from '../errors.ts';
import type { TaskContext, TaskStats } from './context.ts';
import type { WorkStore } from './work.ts';
import { emptyLabel, labelChunk } from './instances.ts';
import { maskChunk, skipOf, skipped } from './mask.ts';

/** The 8 offsets from a tile's owner chunk to the chunks its tiles can reach. */
const REACH: readonly Vec3[] = [0, 1].flatMap((z) => [0, 1].flatMap((y) => [0, 1].map((x): Vec3 => [z, y, x])));
const partKind = (o: Vec3) => `tiles-${o.join('')}`;

interface Part { channels: number; box: Box }

function starts(ctx: TaskContext): number[][] {
  const c = ctx.config;
  return paddedStarts(ctx.graph.volume.end, c.baseline.patch, c.baseline.step).starts;
}

/** Tile starts per axis owned by chunk `index` (those inside it; below 0 counts as chunk 0). */
function ownedStarts(all: number[][], index: Vec3, chunk: Vec3): number[][] {
  return all.map((s, a) => s.filter((t) => Math.max(0, Math.floor(t / chunk[a])) === index[a]));
}

export async function predictTask(ctx: TaskContext, index: Vec3): Promise<TaskStats> {
  const c = ctx.config;
  const card = ctx.cards.fullres;
  const patch = c.baseline.patch;
  // No tissue in the chunks its tiles reach: no blend that runs reads its parts.
  const why = await skipOf(ctx, 'predict', index);
  if (why) return skipped('predict', why);
  const own = ownedStarts(starts(ctx), index, ctx.graph.chunk);
  const tiles = gridTiles(own);
  const parts = REACH.map((o) => ({ o, target: [index[0] + o[0], index[1] + o[1], index[2] + o[2]] as Vec3 }));
  if (!tiles.length) {
    for (const { o } of parts) await ctx.work.writeBinary(partKind(o), index, { channels: 0, box: chunkBox(index, ctx.graph.chunk, ctx.graph.volume) } satisfies Part, new Uint8Array(0));
    return { tiles: 0 };
  }
  const region: Box = {
    begin: own.map((s) => s[0]) as unknown as Vec3,
    end: own.map((s, a) => s[s.length - 1] + patch[a]) as unknown as Vec3,
  };
  // Tiles stay inside the volume unless it is smaller than a patch (then nnU-Net's centred zero
  // padding: only the inside is read, the rest of a tile is 0 in normalised units).
  const inside = intersect(region, ctx.graph.volume);
  const raw = await ctx.timings.time('read', () => readFull(ctx.src, inside));
  const input = array3(normalize(raw.data, card.normalization), raw.shape);
  const acc = await ctx.timings.time('sliding', () => accumulateTiles(input, inside, tiles, region, ctx.fullres, {
    patch, step: c.baseline.step, mirror: c.baseline.mirror, batch: c.inference.batch, inFlight: ctx.pool.size + 1, signal: ctx.signal,
  }));
  const rs = shapeOf(region);
  for (const { o, target } of parts) {
    const box = intersect(region, chunkBox(target, ctx.graph.chunk, ctx.graph.volume));
    const body = isEmpty(box) ? new Float32Array(0) : new Float32Array(acc.length * volumeOf(box));
    if (!isEmpty(box)) {
      const s = shapeOf(box);
      let w = 0;
      for (const ch of acc) for (let z = 0; z < s[0]; z++) for (let y = 0; y < s[1]; y++) {
        const from = ((box.begin[0] - region.begin[0] + z) * rs[1] + box.begin[1] - region.begin[1] + y) * rs[2] + box.begin[2] - region.begin[2];
        body.set(ch.subarray(from, from + s[2]), w);
        w += s[2];
      }
    }
    await ctx.work.writeBinary(partKind(o), index, { channels: isEmpty(box) ? 0 : acc.length, box } satisfies Part, new Uint8Array(body.buffer));
  }
  return { tiles: tiles.length };
}

export async function blendTask(ctx: TaskContext, index: Vec3): Promise<TaskStats> {
  const c = ctx.config;
  const card = ctx.cards.fullres;
  const write = chunkBox(index, ctx.graph.chunk, ctx.graph.volume);
  const why = await skipOf(ctx, 'blend', index);
  if (why) {
    await emptyLabel(ctx, index, write);
    return skipped('blend', why, volumeOf(write));
  }
  const ws = shapeOf(write);
  const n = volumeOf(write);
  let acc: Float32Array[] | undefined;
  // Fixed order (offsets as listed), so the float sums never depend on which task ran first.
  for (const o of REACH) {
    const from: Vec3 = [index[0] - o[0], index[1] - o[1], index[2] - o[2]];
    if (from.some((v) => v < 0)) continue;
    const { header, body } = await ctx.work.readBinary<Part>(partKind(o), from);
    if (!header.channels) continue;
    acc ??= Array.from({ length: header.channels }, () => new Float32Array(n));
    const v = new Float32Array(body.buffer, body.byteOffset, body.byteLength / 4);
    const s = shapeOf(header.box);
    const pv = volumeOf(header.box);
    for (let ch = 0; ch < header.channels; ch++) {
      const a = acc[ch];
      let r = ch * pv;
      for (let z = 0; z < s[0]; z++) for (let y = 0; y < s[1]; y++) {
        const to = ((header.box.begin[0] - write.begin[0] + z) * ws[1] + header.box.begin[1] - write.begin[1] + y) * ws[2] + header.box.begin[2] - write.begin[2];
        for (let x = 0; x < s[2]; x++) a[to + x] += v[r++];
      }
    }
  }
  if (!acc) throw new ConfigError('baseline', `no tile of the global grid reaches chunk ${index.join('/')}`);
  const probs = finishTiles(acc, tileWeights(starts(ctx), c.baseline.patch, write), ws, card);
  const seg = argmax(probs, card.activation);
  const maskedVoxels = await maskChunk(ctx, write, seg, probs);
  await ctx.timings.time('write', async () => {
    await writeRegion(ctx.out.segmentation, write, seg, ctx.src.io);
    if (ctx.out.probabilities) await writeRegion(ctx.out.probabilities, write, probs[0], ctx.src.io);
  });
  return { objects: await labelChunk(ctx, index, write, seg, probs), ...(ctx.mask ? { maskedVoxels } : {}) };
}

/** predict's parts, freed once the blends that read them are done. */
export async function freeTiles(work: WorkStore, index: Vec3): Promise<void> {
  for (const o of REACH) await work.remove(partKind(o), index);
}

/** nnU-Net's tile count over the whole volume (what predict runs when the ROI is the volume). */
export function nnunetTiles(shape: Vec3, patch: Vec3, step: number): number {
  return paddedStarts(shape, patch, step).starts.reduce((n, s) => n * s.length, 1);
}
