// Object-level detection over 3D connected components (26-connectivity by default).
//
// Predicted components are scored by their mean foreground probability when a probability array
// is given, else by their voxel count. In descending score order (ties: larger component, then
// lower id) each predicted component is matched to the still-unmatched gt component with the
// highest 3D IoU ≥ the threshold (ties: lower gt id): a true positive, else a false positive.
// AP is the area under the all-points-interpolated precision–recall curve (VOC 2010+ / COCO
// style, without COCO's 101-point sampling).
//
// Empty cases: no gt & no pred objects → AP = 1, recall = 1, precision = 1 ("nothing to find,
// nothing found"); no gt but preds → AP = 0 (recall is 1: nothing was missed; precision 0);
// gt but no preds → AP = 0, recall = 0 (precision is 1: nothing wrong was claimed).
import type { Vec3 } from '../geometry/box.ts';
import type { Array3 } from '../array/array3.ts';
import { crop } from '../array/array3.ts';
import { type Connectivity, label } from '../array/components.ts';
import { assertSameShape, cropMask, foregroundBox } from './region.ts';

/** Components of both masks and their pairwise overlaps (only the non-zero ones). */
export interface ObjectOverlaps {
  readonly gtObjects: number;
  readonly predObjects: number;
  /** Voxel count of gt component k at index k (index 0 unused). */
  readonly gtSizes: Float64Array;
  /** Voxel count of pred component k at index k (index 0 unused). */
  readonly predSizes: Float64Array;
  /** Score of pred component k at index k: mean probability, or voxel count without probabilities. */
  readonly predScores: Float64Array;
  /** Overlapping pairs sorted by pred id then gt id: pairPred[i], pairGt[i], pairVoxels[i]. */
  readonly pairPred: Int32Array;
  readonly pairGt: Int32Array;
  readonly pairVoxels: Float64Array;
}

export interface ObjectOptions {
  /** Foreground = voxels equal to `cls`; default: non-zero voxels. */
  readonly cls?: number;
  /** Per-voxel foreground probability, same shape as the masks; scores pred components by its mean. */
  readonly probabilities?: Array3<Float32Array>;
  readonly connectivity?: Connectivity;
}

export interface DetectionResult {
  readonly iouThreshold: number;
  /** Average precision (see the module's empty conventions). */
  readonly ap: number;
  readonly tp: number;
  readonly fp: number;
  /** Gt objects left unmatched. */
  readonly fn: number;
  readonly gtObjects: number;
  readonly predObjects: number;
  /** tp / gtObjects (1 with no gt objects). */
  readonly recall: number;
  /** tp / predObjects (1 with no pred objects). */
  readonly precision: number;
}

/**
 * Label both masks' components (within their joint bounding box) and measure every overlapping
 * pair in one pass over the voxels, with a sparse (pred, gt) → voxels map.
 */
export function objectOverlaps(pred: Array3, gt: Array3, opts: ObjectOptions = {}): ObjectOverlaps {
  assertSameShape(pred.shape, gt.shape);
  if (opts.probabilities) assertSameShape(opts.probabilities.shape, pred.shape, 'probabilities', 'pred');
  const connectivity = opts.connectivity ?? 26;
  const fg = foregroundBox([pred, gt], opts.cls);
  if (fg === undefined) {
    const none = new Float64Array(1);
    return {
      gtObjects: 0, predObjects: 0, gtSizes: none, predSizes: none, predScores: none,
      pairPred: new Int32Array(0), pairGt: new Int32Array(0), pairVoxels: new Float64Array(0),
    };
  }
  const mp = cropMask(pred, fg, opts.cls);
  const mg = cropMask(gt, fg, opts.cls);
  const shape: Vec3 = mp.shape;
  const lp = label(mp.data, shape, connectivity);
  const lg = label(mg.data, shape, connectivity);
  const prob = opts.probabilities ? crop(opts.probabilities, [0, 0, 0], fg).data : undefined;
  const predSizes = new Float64Array(lp.count + 1);
  const gtSizes = new Float64Array(lg.count + 1);
  const probSums = new Float64Array(lp.count + 1);
  const stride = lg.count + 1;
  const pairs = new Map<number, number>();
  const P = lp.labels, G = lg.labels;
  for (let i = 0; i < P.length; i++) {
    const p = P[i], g = G[i];
    if (p !== 0) {
      predSizes[p]++;
      if (prob) probSums[p] += prob[i];
      if (g !== 0) {
        const key = p * stride + g;
        pairs.set(key, (pairs.get(key) ?? 0) + 1);
      }
    }
    if (g !== 0) gtSizes[g]++;
  }
  const predScores = new Float64Array(lp.count + 1);
  for (let p = 1; p <= lp.count; p++) predScores[p] = prob ? probSums[p] / predSizes[p] : predSizes[p];
  const keys = [...pairs.keys()].sort((a, b) => a - b);
  const pairPred = new Int32Array(keys.length);
  const pairGt = new Int32Array(keys.length);
  const pairVoxels = new Float64Array(keys.length);
  keys.forEach((k, i) => {
    pairPred[i] = Math.floor(k / stride);
    pairGt[i] = k % stride;
    pairVoxels[i] = pairs.get(k)!;
  });
  return { gtObjects: lg.count, predObjects: lp.count, gtSizes, predSizes, predScores, pairPred, pairGt, pairVoxels };
}

/**
 * Area under the all-points-interpolated precision–recall curve, for detections in descending
 * score order (`recall[i]`, `precision[i]` after the first i + 1 of them).
 */
export function averagePrecision(recall: ArrayLike<number>, precision: ArrayLike<number>): number {
  const n = recall.length;
  const mpre = new Float64Array(n + 2);
  const mrec = new Float64Array(n + 2);
  for (let i = 0; i < n; i++) {
    mrec[i + 1] = recall[i];
    mpre[i + 1] = precision[i];
  }
  mrec[n + 1] = 1;
  for (let i = n; i >= 0; i--) mpre[i] = Math.max(mpre[i], mpre[i + 1]);
  let ap = 0;
  for (let i = 0; i <= n; i++) if (mrec[i + 1] !== mrec[i]) ap += (mrec[i + 1] - mrec[i]) * mpre[i + 1];
  return ap;
}

/** Greedy matching and AP at one IoU threshold (see the module comment). */
export function detectionAtIoU(ov: ObjectOverlaps, iouThreshold: number): DetectionResult {
  const nG = ov.gtObjects, nP = ov.predObjects;
  const base = { iouThreshold, gtObjects: nG, predObjects: nP };
  if (nG === 0) {
    return { ...base, ap: nP === 0 ? 1 : 0, tp: 0, fp: nP, fn: 0, recall: 1, precision: nP === 0 ? 1 : 0 };
  }
  if (nP === 0) return { ...base, ap: 0, tp: 0, fp: 0, fn: nG, recall: 0, precision: 1 };
  // Pairs are sorted by pred id: start[p] .. start[p + 1] are pred p's overlaps.
  const start = new Int32Array(nP + 2);
  for (let i = 0; i < ov.pairPred.length; i++) start[ov.pairPred[i] + 1]++;
  for (let p = 1; p <= nP + 1; p++) start[p] += start[p - 1];
  const order: number[] = [];
  for (let p = 1; p <= nP; p++) order.push(p);
  order.sort((a, b) => ov.predScores[b] - ov.predScores[a] || ov.predSizes[b] - ov.predSizes[a] || a - b);
  const matched = new Uint8Array(nG + 1);
  const recall = new Float64Array(nP);
  const precision = new Float64Array(nP);
  let tp = 0;
  order.forEach((p, rank) => {
    let best = 0, bestIou = -1;
    for (let i = start[p]; i < start[p + 1]; i++) {
      const g = ov.pairGt[i];
      if (matched[g]) continue;
      const inter = ov.pairVoxels[i];
      const iou = inter / (ov.predSizes[p] + ov.gtSizes[g] - inter);
      if (iou >= iouThreshold && iou > bestIou) { best = g; bestIou = iou; }
    }
    if (best !== 0) { matched[best] = 1; tp++; }
    recall[rank] = tp / nG;
    precision[rank] = tp / (rank + 1);
  });
  return {
    ...base, ap: averagePrecision(recall, precision), tp, fp: nP - tp, fn: nG - tp,
    recall: tp / nG, precision: tp / nP,
  };
}

/** Detection AP and counts at each IoU threshold in `iouThresholds` (components labelled once). */
export function detection(
  pred: Array3, gt: Array3, iouThresholds: readonly number[], opts: ObjectOptions = {},
): DetectionResult[] {
  const ov = objectOverlaps(pred, gt, opts);
  return iouThresholds.map((t) => detectionAtIoU(ov, t));
}

/** Detection AP and counts at one IoU threshold. */
export function detectionAP(pred: Array3, gt: Array3, iouThreshold: number, opts: ObjectOptions = {}): DetectionResult {
  return detectionAtIoU(objectOverlaps(pred, gt, opts), iouThreshold);
}
