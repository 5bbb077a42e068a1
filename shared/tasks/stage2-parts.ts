// Stage two's result as paste reads it: one file per stage-two block (`stage2/<block>.bin`, one
// atomic write, one file to free), in sections, one per chunk the block's crops reach, each
// holding those crops cut to the chunk. A paste reads its own section of each block within one
// chunk by byte range: what lands in its chunk, each byte decoded once, with no cache between
// pastes (a block's whole result read by up to 27 pastes did not fit the 64 MiB one on FAFB).
// Within a section crops keep the block's order, and paste adds blocks in raster order, so
// every voxel gets the same float sums in the same order as from the whole result.
import { type Box, type Vec3, equals, intersect, isEmpty, shapeOf, volumeOf } from '../geometry/box.ts';
import { array3, crop } from '../array/array3.ts';
import { chunkBox, indexId } from '../geometry/grid.ts';
import type { Section } from './work-sections.ts';
import type { TaskContext } from './context.ts';

export interface Stage2Crop {
  boxId: number;
  source: Box;
  target: Box;
}

export interface Stage2Header {
  channels: number;
  crops: Stage2Crop[];
}

/** A stage-two result (a block's, or its part in one chunk): crops in paste order and their quantised values, channel after channel per crop. */
export interface Stage2Result {
  channels: number;
  crops: Stage2Crop[];
  values: Uint16Array;
}

/** One crop's prediction as stage two makes it: its quantised values, one array per channel. */
export interface QuantisedCrop {
  crop: Stage2Crop;
  values: readonly Uint16Array[];
}

/** The crops of one block that land in one chunk: crops cut to it, values in crop then channel order. */
export interface ChunkPart {
  index: Vec3;
  crops: Stage2Crop[];
  values: Uint16Array[];
}

/**
 * `crops` (in stored order) cut by the chunks (of `chunk`, clipped to `bounds`) they reach,
 * chunks in raster order. A crop inside one chunk keeps its arrays; one crossing a border is
 * copied once per chunk, its part only.
 */
export function splitByChunk(crops: readonly QuantisedCrop[], chunk: Vec3, bounds: Box): ChunkPart[] {
  const parts = new Map<string, ChunkPart>();
  for (const { crop: c, values } of crops) {
    const s = shapeOf(c.target);
    const lo = c.target.begin.map((v, a) => Math.floor(v / chunk[a]));
    const hi = c.target.end.map((v, a) => Math.ceil(v / chunk[a]));
    for (let z = lo[0]; z < hi[0]; z++) for (let y = lo[1]; y < hi[1]; y++) for (let x = lo[2]; x < hi[2]; x++) {
      const index: Vec3 = [z, y, x];
      const target = intersect(c.target, chunkBox(index, chunk, bounds));
      if (isEmpty(target)) continue;
      const key = indexId(index);
      let p = parts.get(key);
      if (!p) parts.set(key, (p = { index, crops: [], values: [] }));
      p.crops.push({ ...c, target });
      for (const v of values) p.values.push(equals(target, c.target) ? v : crop(array3(v, s), c.target.begin, target).data);
    }
  }
  const byRaster = (a: ChunkPart, b: ChunkPart) => a.index[0] - b.index[0] || a.index[1] - b.index[1] || a.index[2] - b.index[2];
  return [...parts.values()].sort(byRaster);
}

/** The crops of a result, each with its values per channel (views, no copy). */
export function cropsOf(r: Stage2Result): QuantisedCrop[] {
  let at = 0;
  return r.crops.map((c) => {
    const n = volumeOf(c.target);
    const values = Array.from({ length: r.channels }, (_, ch) => r.values.subarray(at + ch * n, at + (ch + 1) * n));
    at += r.channels * n;
    return { crop: c, values };
  });
}

/** The arrays end to end in one. */
export function concat(parts: readonly Uint16Array[]): Uint16Array {
  const out = new Uint16Array(parts.reduce((n, q) => n + q.length, 0));
  let at = 0;
  for (const q of parts) { out.set(q, at); at += q.length; }
  return out;
}

const bytesOf = (q: Uint16Array) => new Uint8Array(q.buffer, q.byteOffset, q.byteLength);

/** Persist stage-two block `index`'s crops (in paste order), one section per chunk they reach. */
export async function writeStage2(ctx: TaskContext, index: Vec3, channels: number, crops: readonly QuantisedCrop[]): Promise<void> {
  const sections: Section[] = splitByChunk(crops, ctx.graph.chunk, ctx.graph.volume).map((p) => ({
    key: indexId(p.index),
    header: { channels, crops: p.crops } satisfies Stage2Header,
    body: p.values.map(bytesOf),
  }));
  await ctx.work.writeSections('stage2', index, sections);
}

/** The part of stage-two block `block`'s result that lands in chunk `chunk`; undefined if none. */
export async function readStage2Part(ctx: TaskContext, block: Vec3, chunk: Vec3): Promise<Stage2Result | undefined> {
  const r = await ctx.work.readSection<Stage2Header>('stage2', block, indexId(chunk));
  if (r.kind === 'none') return undefined;
  const values = new Uint16Array(r.body.buffer, r.body.byteOffset, r.body.byteLength / 2);
  const result: Stage2Result = { channels: r.header.channels, crops: r.header.crops, values };
  if (r.kind === 'section') return result;
  // A whole block's result, as versions before the split wrote it.
  const key = indexId(chunk);
  const part = splitByChunk(cropsOf(result), ctx.graph.chunk, ctx.graph.volume).find((p) => indexId(p.index) === key);
  return part && { channels: result.channels, crops: part.crops, values: concat(part.values) };
}
