// Deterministic ordering of candidates and the even tiling shared by re-cropping and packing. Pure.
import type { Box } from '../geometry/box.ts';
import type { Candidate } from './boxes.ts';

/** Lexicographic order on begin, then end. */
export function compareBoxes(a: Box, b: Box): number {
  for (let i = 0; i < 3; i++) if (a.begin[i] !== b.begin[i]) return a.begin[i] - b.begin[i];
  for (let i = 0; i < 3; i++) if (a.end[i] !== b.end[i]) return a.end[i] - b.end[i];
  return 0;
}

/** Score descending, then box, then id: a total order for candidates with distinct ids. */
export function byScore(a: Candidate, b: Candidate): number {
  if (a.score !== b.score) return b.score > a.score ? 1 : -1;
  return compareBoxes(a.box, b.box) || a.id - b.id;
}

/**
 * Starts of tiles of length `tile` covering [lo, hi) with the fewest tiles, spread evenly
 * from lo to hi - tile (nnU-Net's sliding-window steps with step size 1:
 * n = ceil(len / tile), start_i = lo + round(i · (len - tile) / (n - 1))). Consecutive tiles
 * overlap or abut, never leave a gap. When len ≤ tile: [lo] (callers centre the tile).
 */
export function tileStarts(lo: number, hi: number, tile: number): number[] {
  const len = hi - lo;
  if (!(tile > 0)) throw new RangeError(`tile length must be positive, got ${tile}`);
  if (len <= tile) return [lo];
  const n = Math.ceil(len / tile);
  const step = (len - tile) / (n - 1);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(i === n - 1 ? hi - tile : lo + Math.round(i * step));
  return out;
}
