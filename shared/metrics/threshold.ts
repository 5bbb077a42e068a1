// The best Dice a plain intensity threshold reaches: a baseline that tells whether a task needs a
// model at all. Histogram-based, O(N + bins): integer images whose value range fits in MAX_BINS
// get one bin per value (exact); others (wide uint16, float) are binned linearly into MAX_BINS
// bins between their min and max, so the search runs over bin boundaries.
import type { Array3 } from '../array/array3.ts';
import type { TypedArray } from '../volume/dtype.ts';
import { assertSameShape } from './region.ts';

export const MAX_BINS = 4096;

export type ThresholdDirection = '>=' | '<=';

export interface ThresholdDice {
  readonly dice: number;
  /**
   * Foreground = image >= threshold (direction '>=') or image <= threshold ('<='); it is an
   * actual voxel value, and thresholding with it reproduces `dice` exactly. +Infinity with '>='
   * (select nothing) when gt holds no voxel of the class (dice 1 then: nothing to find).
   */
  readonly threshold: number;
  readonly direction: ThresholdDirection;
}

function isIntegerArray(a: TypedArray): boolean {
  return !(a instanceof Float32Array || a instanceof Float64Array);
}

/**
 * Best Dice of `gt == cls` against `image >= t` or `image <= t` over all thresholds t. Ties go to
 * '>=' over '<=', then to the lower threshold for '>=' and the higher one for '<='. NaN voxels are
 * never foreground. When the image holds no finite value, the result is dice 0 (or 1 if gt is empty).
 */
export function bestThresholdDice(image: Array3, gt: Array3<Uint8Array>, cls = 1): ThresholdDice {
  assertSameShape(image.shape, gt.shape, 'image', 'gt');
  const v = image.data;
  const g = gt.data;
  const n = v.length;
  let lo = Infinity, hi = -Infinity, gtTotal = 0;
  for (let i = 0; i < n; i++) {
    const x = v[i];
    if (x < lo) lo = x;
    if (x > hi) hi = x;
    if (g[i] === cls) gtTotal++;
  }
  if (gtTotal === 0) return { dice: 1, threshold: Infinity, direction: '>=' };
  if (!(lo <= hi)) return { dice: 0, threshold: Infinity, direction: '>=' };
  const exact = isIntegerArray(v) && hi - lo + 1 <= MAX_BINS;
  const bins = exact ? hi - lo + 1 : hi === lo ? 1 : MAX_BINS;
  const scale = exact || hi === lo ? 1 : bins / (hi - lo);
  const all = new Float64Array(bins);
  const fg = new Float64Array(bins);
  const bmin = new Float64Array(bins).fill(Infinity);
  const bmax = new Float64Array(bins).fill(-Infinity);
  for (let i = 0; i < n; i++) {
    const x = v[i];
    if (!(x >= lo)) continue; // NaN
    const b = exact ? x - lo : Math.min(bins - 1, Math.floor((x - lo) * scale));
    all[b]++;
    if (g[i] === cls) fg[b]++;
    if (x < bmin[b]) bmin[b] = x;
    if (x > bmax[b]) bmax[b] = x;
  }
  // '>=': foreground = bins b..end, threshold = smallest value in bin b. Scanning b downwards
  // with >= keeps the lowest threshold among ties.
  let up: ThresholdDice = { dice: -1, threshold: Infinity, direction: '>=' };
  let sel = 0, tp = 0;
  for (let b = bins - 1; b >= 0; b--) {
    sel += all[b];
    tp += fg[b];
    if (all[b] === 0) continue;
    const dice = (2 * tp) / (sel + gtTotal);
    if (dice >= up.dice) up = { dice, threshold: bmin[b], direction: '>=' };
  }
  // '<=': foreground = bins 0..b, threshold = largest value in bin b; ties keep the highest.
  let down: ThresholdDice = { dice: -1, threshold: -Infinity, direction: '<=' };
  sel = 0;
  tp = 0;
  for (let b = 0; b < bins; b++) {
    sel += all[b];
    tp += fg[b];
    if (all[b] === 0) continue;
    const dice = (2 * tp) / (sel + gtTotal);
    if (dice >= down.dice) down = { dice, threshold: bmax[b], direction: '<=' };
  }
  const best = down.dice > up.dice ? down : up;
  return best;
}
