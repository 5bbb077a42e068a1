// Stage two's result as paste reads it: one file per stage-two block (`stage2/<block>.bin`, one
// atomic write, one file to free), in sections, one per chunk the block's crops reach, each
// holding those crops cut to the chunk. A paste reads its own section of each block within one
// chunk by byte range: what lands in its chunk, each byte decoded once, with no cache between
// pastes (a block's whole result read by up to 27 pastes did not fit the 64 MiB one on FAFB).
// Within a section crops keep the block's order, and paste adds blocks in raster order, so
// every voxel gets the same float sums in the same order as from the whole result.
import { type Box, type Vec3, equals, intersect, isEmpty, shapeOf } from '../geometry/box.ts';
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

interface Part {
  index: Vec3;
  crops: Stage2Crop[];
  values: Uint16Array[];
}

/** `r` cut by the chunks (of `chunk`, clipped to `bounds`) its crops reach, chunks in raster order. */
export function splitByChunk(r: Stage2Result, chunk: Vec3, bounds: Box): Array<{ index: Vec3; part: Stage2Result }> {
  const parts = new Map<string, Part>();
  let at = 0;
  for (const c of r.crops) {
    const s = shapeOf(c.target);
    const n = s[0] * s[1] * s[2];
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
      for (let ch = 0; ch < r.channels; ch++) {
        const v = r.values.subarray(at + ch * n, at + (ch + 1) * n);
        p.values.push(equals(target, c.target) ? v : crop(array3(v, s), c.target.begin, target).data);
      }
    }
    at += r.channels * n;
  }
  const byRaster = (a: Part, b: Part) => a.index[0] - b.index[0] || a.index[1] - b.index[1] || a.index[2] - b.index[2];
  return [...parts.values()].sort(byRaster).map((p) => ({ index: p.index, part: { channels: r.channels, crops: p.crops, values: concat(p.values) } }));
}

function concat(parts: readonly Uint16Array[]): Uint16Array {
  const out = new Uint16Array(parts.reduce((n, q) => n + q.length, 0));
  let at = 0;
  for (const q of parts) { out.set(q, at); at += q.length; }
  return out;
}

/** Persist stage-two block `index`'s result, one section per chunk it reaches. */
export async function writeStage2(ctx: TaskContext, index: Vec3, r: Stage2Result): Promise<void> {
  const sections: Section[] = splitByChunk(r, ctx.graph.chunk, ctx.graph.volume).map(({ index: c, part }) => ({
    key: indexId(c),
    header: { channels: part.channels, crops: part.crops } satisfies Stage2Header,
    body: new Uint8Array(part.values.buffer, part.values.byteOffset, part.values.byteLength),
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
  return splitByChunk(result, ctx.graph.chunk, ctx.graph.volume).find((p) => indexId(p.index) === key)?.part;
}
