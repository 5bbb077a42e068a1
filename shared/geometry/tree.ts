// The regions of the instance-id reduction: a tree over the chunk grid. Level 0 is the chunks;
// a level-l region is a block of fanIn^l chunks per axis, aligned to the grid's origin (so a
// region keeps its identity whatever the ROI), clipped to the chunks of the run. Its children
// are the level-(l−1) regions inside it, in raster order. The top level is the first whose one
// region holds every chunk of the run. Pure arithmetic, like grid.ts.
import type { Vec3 } from './box.ts';
import { type Range3, blocksMeeting, intersectRange, range3, rangeSize } from './grid.ts';

/** Chunks per axis of a level-l region. */
export function levelBlock(fanIn: Vec3, level: number): Vec3 {
  return [fanIn[0] ** level, fanIn[1] ** level, fanIn[2] ** level];
}

/** The number of levels above the chunks: the first level whose regions meeting `run` are one. */
export function treeLevels(run: Range3, fanIn: Vec3): number {
  if (fanIn.some((f) => !Number.isInteger(f) || f < 2)) throw new RangeError(`fan-in ${fanIn.join(',')} must be integers ≥ 2`);
  if (rangeSize(run) === 0) return 1;
  for (let l = 1; ; l++) if (rangeSize(blocksMeeting(run, levelBlock(fanIn, l))) === 1) return l;
}

/** The chunks of region `b` at `level` that belong to the run. */
export function regionChunks(b: Vec3, level: number, fanIn: Vec3, run: Range3): Range3 {
  const s = levelBlock(fanIn, level);
  return intersectRange(range3([b[0] * s[0], b[1] * s[1], b[2] * s[2]], [(b[0] + 1) * s[0], (b[1] + 1) * s[1], (b[2] + 1) * s[2]]), run);
}

/** The children of region `b` at `level` (regions of level − 1, chunks at level 1) that hold chunks of the run, in raster order. */
export function regionChildren(b: Vec3, level: number, fanIn: Vec3, run: Range3): Vec3[] {
  const r = blocksMeeting(regionChunks(b, level, fanIn, run), levelBlock(fanIn, level - 1));
  const out: Vec3[] = [];
  for (let z = r.lo[0]; z < r.hi[0]; z++) for (let y = r.lo[1]; y < r.hi[1]; y++) for (let x = r.lo[2]; x < r.hi[2]; x++) out.push([z, y, x]);
  return out;
}

/** The region at `level + 1` holding region `b` of `level`. */
export function regionParent(b: Vec3, fanIn: Vec3): Vec3 {
  return [Math.floor(b[0] / fanIn[0]), Math.floor(b[1] / fanIn[1]), Math.floor(b[2] / fanIn[2])];
}

/**
 * The faces of a range of chunks that have a neighbour in the run, as bits 2·axis + side (side
 * 0 at lo, 1 at hi): an object touching one may continue beyond it.
 */
export function openFaces(r: Range3, run: Range3): number {
  let m = 0;
  for (let a = 0; a < 3; a++) {
    if (r.lo[a] > run.lo[a]) m |= 1 << (2 * a);
    if (r.hi[a] < run.hi[a]) m |= 1 << (2 * a + 1);
  }
  return m;
}

/** The faces of `child` that lie on an open face of `region` (bits as openFaces). */
export function carriedFaces(child: Range3, region: Range3, run: Range3): number {
  const open = openFaces(region, run);
  let m = 0;
  for (let a = 0; a < 3; a++) {
    if (child.lo[a] === region.lo[a]) m |= (1 << (2 * a)) & open;
    if (child.hi[a] === region.hi[a]) m |= (1 << (2 * a + 1)) & open;
  }
  return m;
}
