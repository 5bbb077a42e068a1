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

// ---------------------------------------------------------------------------------------------
// The lazy grid. At FAFB scale (≈ 8·10⁶ chunks) no list of chunks is ever built: a chunk is its
// absolute grid index (aligned to multiples of the chunk shape from the volume origin, so a
// chunk keeps its identity when the ROI changes), and everything about it is arithmetic.

/** A half-open range of integer grid indices [lo, hi) per axis. */
export interface Range3 {
  readonly lo: Vec3;
  readonly hi: Vec3;
}

export function range3(lo: Vec3, hi: Vec3): Range3 {
  return { lo: [lo[0], lo[1], lo[2]], hi: [Math.max(lo[0], hi[0]), Math.max(lo[1], hi[1]), Math.max(lo[2], hi[2])] };
}

export function rangeShape(r: Range3): Vec3 {
  return [r.hi[0] - r.lo[0], r.hi[1] - r.lo[1], r.hi[2] - r.lo[2]];
}

export function rangeSize(r: Range3): number {
  const s = rangeShape(r);
  return s[0] * s[1] * s[2];
}

export function inRange(r: Range3, i: Vec3): boolean {
  return i[0] >= r.lo[0] && i[0] < r.hi[0] && i[1] >= r.lo[1] && i[1] < r.hi[1] && i[2] >= r.lo[2] && i[2] < r.hi[2];
}

export function intersectRange(a: Range3, b: Range3): Range3 {
  return range3(
    [Math.max(a.lo[0], b.lo[0]), Math.max(a.lo[1], b.lo[1]), Math.max(a.lo[2], b.lo[2])],
    [Math.min(a.hi[0], b.hi[0]), Math.min(a.hi[1], b.hi[1]), Math.min(a.hi[2], b.hi[2])],
  );
}

/** Raster position of `i` inside `r` (z slowest). */
export function linearOf(r: Range3, i: Vec3): number {
  const s = rangeShape(r);
  return ((i[0] - r.lo[0]) * s[1] + (i[1] - r.lo[1])) * s[2] + (i[2] - r.lo[2]);
}

export function indexOf(r: Range3, linear: number): Vec3 {
  const s = rangeShape(r);
  const x = linear % s[2];
  const t = (linear - x) / s[2];
  const y = t % s[1];
  return [r.lo[0] + (t - y) / s[1], r.lo[1] + y, r.lo[2] + x];
}

/** Indices of the chunks of `chunkShape` that meet `region`. */
export function chunkRange(region: Box, chunkShape: Vec3): Range3 {
  for (let a = 0; a < 3; a++) {
    if (!(chunkShape[a] > 0)) throw new RangeError(`chunk shape must be positive, got ${chunkShape.join(',')}`);
  }
  return range3(
    [0, 1, 2].map((a) => Math.floor(region.begin[a] / chunkShape[a])) as unknown as Vec3,
    [0, 1, 2].map((a) => Math.ceil(region.end[a] / chunkShape[a])) as unknown as Vec3,
  );
}

/** The write box of chunk `index`: its grid cell clipped to `bounds` (the volume). */
export function chunkBox(index: Vec3, chunkShape: Vec3, bounds: Box): Box {
  return intersect(
    box(
      [index[0] * chunkShape[0], index[1] * chunkShape[1], index[2] * chunkShape[2]],
      [(index[0] + 1) * chunkShape[0], (index[1] + 1) * chunkShape[1], (index[2] + 1) * chunkShape[2]],
    ),
    bounds,
  );
}

/**
 * Blocks of `block` chunks (block index b covers chunks [b·block, (b+1)·block)) that meet the
 * chunk range `r`: the arithmetic behind every dependency of the task graph.
 */
export function blocksMeeting(r: Range3, block: Vec3): Range3 {
  return range3(
    [0, 1, 2].map((a) => Math.floor(r.lo[a] / block[a])) as unknown as Vec3,
    [0, 1, 2].map((a) => Math.ceil(r.hi[a] / block[a])) as unknown as Vec3,
  );
}

/** The chunks of block `b` grown by `reach` chunks on every side. */
export function blockReach(b: Vec3, block: Vec3, reach: Vec3): Range3 {
  return range3(
    [0, 1, 2].map((a) => b[a] * block[a] - reach[a]) as unknown as Vec3,
    [0, 1, 2].map((a) => (b[a] + 1) * block[a] + reach[a]) as unknown as Vec3,
  );
}

/** Stable id of an absolute grid index, e.g. "3_0_12". */
export function indexId(i: Vec3): string {
  return `${i[0]}_${i[1]}_${i[2]}`;
}

/** Parse indexId's text; undefined when malformed. */
export function parseIndexId(text: string): Vec3 | undefined {
  const m = /^(-?\d+)_(-?\d+)_(-?\d+)$/.exec(text);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

/**
 * The blocks of another kind's grid (`otherBlock` chunks each, limited to `otherRange`) whose
 * chunks lie within `reach` chunks of block `index` (of `block` chunks): the upstream tasks of
 * a task, and, the relation being symmetric, its downstream ones.
 */
export function relatedBlocks(index: Vec3, block: Vec3, reach: Vec3, otherBlock: Vec3, otherRange: Range3): Range3 {
  return intersectRange(blocksMeeting(blockReach(index, block, reach), otherBlock), otherRange);
}

/** Calls `f` for every index of `r` in raster order. */
export function forEachIndex(r: Range3, f: (i: Vec3) => void): void {
  for (let z = r.lo[0]; z < r.hi[0]; z++) for (let y = r.lo[1]; y < r.hi[1]; y++) for (let x = r.lo[2]; x < r.hi[2]; x++) f([z, y, x]);
}
