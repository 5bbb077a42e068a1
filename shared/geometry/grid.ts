// Volume → chunks (daisy's blocks): each chunk owns its writeBox alone and reads a readBox,
// its writeBox grown by the halo. Write boxes tile the region exactly and never overlap, so
// any number of workers writing their own chunks never race. Pure.
import { type Box, type Vec3, box, grow, intersect } from './box.ts';

export interface Chunk {
  /** Stable id from the chunk's grid index, e.g. "c0_2_1". */
  readonly id: string;
  readonly index: Vec3;
  /** The voxels this chunk alone writes (clipped to the region). */
  readonly writeBox: Box;
  /** writeBox grown by the halo; may reach outside the volume (readers pad there). */
  readonly readBox: Box;
}

export function chunkId(index: Vec3): string {
  return `c${index[0]}_${index[1]}_${index[2]}`;
}

/**
 * Tile `region` with chunks of `chunkShape`, aligned to multiples of chunkShape from the
 * volume origin so chunk writes line up with storage chunks of the same (or a dividing) shape.
 */
export function planGrid(region: Box, chunkShape: Vec3, halo: Vec3): Chunk[] {
  if (region.end.some((e, a) => e <= region.begin[a])) return [];
  const first: number[] = [];
  const count: number[] = [];
  for (let a = 0; a < 3; a++) {
    if (!(chunkShape[a] > 0)) throw new RangeError(`chunk shape must be positive, got ${chunkShape.join(',')}`);
    const lo = Math.floor(region.begin[a] / chunkShape[a]);
    const hi = Math.ceil(region.end[a] / chunkShape[a]);
    first.push(lo);
    count.push(Math.max(0, hi - lo));
  }
  const chunks: Chunk[] = [];
  for (let i = 0; i < count[0]; i++) {
    for (let j = 0; j < count[1]; j++) {
      for (let k = 0; k < count[2]; k++) {
        const index: Vec3 = [i, j, k];
        const g = [first[0] + i, first[1] + j, first[2] + k];
        const full = box(
          [g[0] * chunkShape[0], g[1] * chunkShape[1], g[2] * chunkShape[2]],
          [(g[0] + 1) * chunkShape[0], (g[1] + 1) * chunkShape[1], (g[2] + 1) * chunkShape[2]],
        );
        const writeBox = intersect(full, region);
        chunks.push({ id: chunkId(index), index, writeBox, readBox: grow(writeBox, halo) });
      }
    }
  }
  return chunks;
}
