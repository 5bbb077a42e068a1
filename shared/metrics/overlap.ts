// Voxel-overlap scores (Dice, IoU) per class from two label arrays of uint8 class ids.
//
// Empty-mask convention: when neither pred nor gt holds class c, Dice = IoU = 1
// ("nothing to find, nothing found"); when exactly one of them holds it, Dice = IoU = 0.
import type { Array3 } from '../array/array3.ts';
import { assertSameShape } from './region.ts';

/** Voxel counts for one class. */
export interface OverlapCounts {
  /** Voxels of the class in both pred and gt. */
  readonly tp: number;
  /** Voxels of the class in pred only. */
  readonly fp: number;
  /** Voxels of the class in gt only. */
  readonly fn: number;
}

export interface OverlapScores extends OverlapCounts {
  readonly dice: number;
  readonly iou: number;
}

/** Number of class ids a uint8 label array can hold. */
export const CLASS_IDS = 256;

/**
 * The 256×256 confusion matrix of two uint8 label arrays in one pass:
 * `m[p * 256 + g]` = number of voxels with pred class p and gt class g.
 */
export function confusionMatrix(pred: Uint8Array, gt: Uint8Array): Float64Array {
  if (pred.length !== gt.length) {
    throw new RangeError(`pred has ${pred.length} voxels, gt has ${gt.length}`);
  }
  const m = new Float64Array(CLASS_IDS * CLASS_IDS);
  for (let i = 0; i < pred.length; i++) m[(pred[i] << 8) | gt[i]]++;
  return m;
}

/** Counts of class `cls` read off a {@link confusionMatrix}. */
export function countsFromConfusion(m: Float64Array, cls: number): OverlapCounts {
  if (!Number.isInteger(cls) || cls < 0 || cls >= CLASS_IDS) return { tp: 0, fp: 0, fn: 0 };
  const tp = m[cls * CLASS_IDS + cls];
  let predTotal = 0;
  let gtTotal = 0;
  for (let k = 0; k < CLASS_IDS; k++) {
    predTotal += m[cls * CLASS_IDS + k];
    gtTotal += m[k * CLASS_IDS + cls];
  }
  return { tp, fp: predTotal - tp, fn: gtTotal - tp };
}

/** The class ids > 0 present in pred or gt, ascending, read off a {@link confusionMatrix}. */
export function classesPresent(m: Float64Array): number[] {
  const out: number[] = [];
  for (let c = 1; c < CLASS_IDS; c++) {
    let n = 0;
    for (let k = 0; k < CLASS_IDS && n === 0; k++) n += m[c * CLASS_IDS + k] + m[k * CLASS_IDS + c];
    if (n > 0) out.push(c);
  }
  return out;
}

/** Dice = 2·tp / (2·tp + fp + fn); 1 when both masks are empty. */
export function diceFromCounts(c: OverlapCounts): number {
  const d = 2 * c.tp + c.fp + c.fn;
  return d === 0 ? 1 : (2 * c.tp) / d;
}

/** IoU = tp / (tp + fp + fn); 1 when both masks are empty. */
export function iouFromCounts(c: OverlapCounts): number {
  const d = c.tp + c.fp + c.fn;
  return d === 0 ? 1 : c.tp / d;
}

export function scoresFromCounts(c: OverlapCounts): OverlapScores {
  return { tp: c.tp, fp: c.fp, fn: c.fn, dice: diceFromCounts(c), iou: iouFromCounts(c) };
}

/** Dice and IoU of class `cls` (see the module's empty-mask convention). */
export function overlapScores(pred: Array3<Uint8Array>, gt: Array3<Uint8Array>, cls: number): OverlapScores {
  assertSameShape(pred.shape, gt.shape);
  let tp = 0, fp = 0, fn = 0;
  const p = pred.data, g = gt.data;
  for (let i = 0; i < p.length; i++) {
    const a = p[i] === cls, b = g[i] === cls;
    if (a) { if (b) tp++; else fp++; } else if (b) fn++;
  }
  return scoresFromCounts({ tp, fp, fn });
}

/**
 * Dice and IoU for each class id in `classes` (default: every id > 0 present in pred or gt),
 * keyed by the id as a string, from one pass over the voxels.
 */
export function perClassOverlap(
  pred: Array3<Uint8Array>, gt: Array3<Uint8Array>, classes?: readonly number[],
): Record<string, OverlapScores> {
  assertSameShape(pred.shape, gt.shape);
  const m = confusionMatrix(pred.data, gt.data);
  const out: Record<string, OverlapScores> = {};
  for (const c of classes ?? classesPresent(m)) out[String(c)] = scoresFromCounts(countsFromConfusion(m, c));
  return out;
}
