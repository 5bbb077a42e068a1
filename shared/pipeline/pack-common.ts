// Types and small helpers shared by the packing heuristics (pack.ts is the entry point).
import { type Box, type Vec3, volumeOf } from '../geometry/box.ts';
import { compareBoxes, tileStarts } from './boxes-order.ts';

export interface Placement {
  /** Id of the input candidate this placement serves (pieces of one box share it). */
  boxId: number;
  canvas: number;
  /** Full-resolution region read from the volume (may reach outside it: readers pad). */
  source: Box;
  /** Region in canvas coordinates. */
  dest: Box;
  /** dest shape ≠ source shape (the content is resized with resizeLinear). */
  resized: boolean;
  /**
   * The part of the volume this placement's prediction is pasted to; target ⊆ source. It is
   * the input box (or its share of it when the box was split); the rest of source is context.
   */
  target: Box;
}

export interface Packing {
  canvasShape: Vec3;
  canvases: number;
  /** Sorted by canvas, then dest begin. */
  placements: Placement[];
  /** Σ dest voxels / (canvases × canvas voxels); 0 when there is nothing to pack. */
  fillRatio: number;
}

export type PackHeuristic = 'grid' | 'scale' | 'jigsaw';
export type Postprocess = 'resize' | 'crop_and_resize';

export interface PackOptions {
  canvas: Vec3;
  /** Slot (crop) shape for grid and jigsaw. */
  slot: Vec3;
  heuristic: PackHeuristic;
  postprocess: Postprocess;
  /** Largest piece taken before resizing (crop_and_resize, grid/jigsaw). */
  cropThreshold: Vec3;
  /** At most this many slots (grid/jigsaw) or placements (scale) per canvas. */
  maxPerCanvas?: number;
  /** Volume region: context grown around small boxes is shifted into it where possible. */
  bounds?: Box;
  /** Scale packing: voxels of fill kept between any two placements of a canvas (default 0). */
  gap?: Vec3;
  /**
   * The stage-two network's size multiple: a canvas runs at its occupied extent rounded up to
   * it, which is what scale packing minimises (default [1, 1, 1]).
   */
  divisor?: Vec3;
}

/** One axis of a piece: the piece [lo, hi) and the share [tlo, thi) of the box it answers for. */
export interface Span {
  lo: number;
  hi: number;
  tlo: number;
  thi: number;
}

export function vec(f: (a: number) => number): Vec3 {
  return [f(0), f(1), f(2)];
}

export function prod(v: Vec3): number {
  return v[0] * v[1] * v[2];
}

/**
 * Cut points between tiles of length `len` starting at `starts` (ascending, contiguous):
 * c[0] = first start, c[n] = last end, c[i] = middle of the overlap of tiles i-1 and i.
 * Cells [c[i], c[i+1]) partition the union of the tiles and each lies in its tile.
 */
export function cutPoints(starts: readonly number[], len: number): number[] {
  const n = starts.length;
  const c = [starts[0]];
  for (let i = 1; i < n; i++) c.push(Math.floor((starts[i] + starts[i - 1] + len) / 2));
  c.push(starts[n - 1] + len);
  return c;
}

/** [lo, hi) split into the fewest pieces of at most maxLen, spread evenly; shares partition it. */
export function splitAxis(lo: number, hi: number, maxLen: number): Span[] {
  if (hi - lo <= maxLen) return [{ lo, hi, tlo: lo, thi: hi }];
  const starts = tileStarts(lo, hi, maxLen);
  const c = cutPoints(starts, maxLen);
  return starts.map((s, i) => ({ lo: s, hi: s + maxLen, tlo: c[i], thi: c[i + 1] }));
}

/**
 * Grow [lo, hi) to `want` voxels around its middle (never shrink it), shifted into
 * [blo, bhi) where possible and clipped to it otherwise — but always still holding [lo, hi).
 */
export function contextAxis(lo: number, hi: number, want: number, blo = -Infinity, bhi = Infinity): [number, number] {
  const len = hi - lo;
  if (len >= want) return [lo, hi];
  let a = lo - Math.floor((want - len) / 2);
  let b = a + want;
  if (a < blo) {
    b += blo - a;
    a = blo;
  }
  if (b > bhi) {
    a -= b - bhi;
    b = bhi;
  }
  if (a < blo) a = blo;
  return [Math.min(a, lo), Math.max(b, hi)];
}

/** All [z, y, x] combinations of per-axis lists, z slowest. */
export function product3<T>(axes: readonly [readonly T[], readonly T[], readonly T[]]): Array<[T, T, T]> {
  const out: Array<[T, T, T]> = [];
  for (const z of axes[0]) for (const y of axes[1]) for (const x of axes[2]) out.push([z, y, x]);
  return out;
}

function positiveInts(v: Vec3, name: string): void {
  if (v.length !== 3 || !v.every((x) => Number.isInteger(x) && x > 0)) {
    throw new RangeError(`pack: ${name} must be three positive integers, got ${v.join(',')}`);
  }
}

export function validatePackOptions(o: PackOptions): void {
  positiveInts(o.canvas, 'canvas');
  positiveInts(o.slot, 'slot');
  positiveInts(o.cropThreshold, 'cropThreshold');
  if (o.heuristic !== 'scale' && o.slot.some((s, a) => s > o.canvas[a])) {
    throw new RangeError(`pack: slot ${o.slot.join(',')} does not fit canvas ${o.canvas.join(',')}`);
  }
  if (o.maxPerCanvas !== undefined && !(Number.isInteger(o.maxPerCanvas) && o.maxPerCanvas >= 1)) {
    throw new RangeError(`pack: maxPerCanvas must be a positive integer, got ${o.maxPerCanvas}`);
  }
}

export function finishPacking(canvasShape: Vec3, canvases: number, placements: Placement[]): Packing {
  placements.sort((a, b) => a.canvas - b.canvas || compareBoxes(a.dest, b.dest));
  let filled = 0;
  for (const p of placements) filled += volumeOf(p.dest);
  const total = canvases * prod(canvasShape);
  return { canvasShape: [canvasShape[0], canvasShape[1], canvasShape[2]], canvases, placements, fillRatio: total > 0 ? filled / total : 0 };
}

/** A canvas's occupied extent `ext` as the network runs it: rounded up to `divisor`, at most the canvas. */
export function runExtent(ext: ArrayLike<number>, canvasShape: Vec3, divisor: Vec3): Vec3 {
  return vec((a) => Math.min(canvasShape[a], Math.ceil(Math.max(1, ext[a]) / divisor[a]) * divisor[a]));
}
