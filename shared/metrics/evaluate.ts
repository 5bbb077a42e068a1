// One-call evaluation of a label prediction against ground truth: per-class voxel overlap,
// DeepMind surface metrics and object-level detection, plus their mean over the scored classes.
//
// Empty conventions (see overlap.ts, surface.ts, detection.ts): a class absent from both pred and
// gt scores dice = iou = surfaceDice = ap10 = ap50 = recall10 = 1 and hd95 = 0; a class present in
// only one of them scores 0 on all of those and hd95 = +Infinity, which JSON.stringify writes as
// null (so does the mean's hd95 then).
import type { Vec3 } from '../geometry/box.ts';
import { type Array3, crop } from '../array/array3.ts';
import { CLASS_IDS, classesPresent, confusionMatrix, countsFromConfusion, diceFromCounts, iouFromCounts } from './overlap.ts';
import { surfaceDistances, surfaceDiceFromDistances, robustHausdorffFromDistances } from './surface.ts';
import { detectionAtIoU, objectOverlaps } from './detection.ts';
import { assertSameShape, assertSpacing, cropMask, foregroundBox } from './region.ts';

export interface ClassScores {
  readonly dice: number;
  readonly iou: number;
  /** Surface Dice at the evaluation tolerance. */
  readonly surfaceDice: number;
  /** DeepMind robust Hausdorff distance at the 95th percentile, in spacing units. */
  readonly hd95: number;
  /** Detection AP at component IoU ≥ 0.1. */
  readonly ap10: number;
  /** Detection AP at component IoU ≥ 0.5. */
  readonly ap50: number;
  /** Connected components (26-connectivity) of the class in gt. */
  readonly gtObjects: number;
  /** Connected components (26-connectivity) of the class in pred. */
  readonly predObjects: number;
  /** Object recall at component IoU ≥ 0.1. */
  readonly recall10: number;
}

export interface EvaluateOptions {
  /** Voxel spacing [z, y, x] (any unit: nm for EM, mm for CT). */
  readonly spacing: Vec3;
  /** Class ids to score; default: every id > 0 present in pred or gt. */
  readonly classes?: readonly number[];
  /** Surface Dice tolerance, in the unit of `spacing`. */
  readonly tolerance: number;
  /** Per-voxel foreground probability; when given, pred objects are ranked by its mean, else by size. */
  readonly probabilities?: Array3<Float32Array>;
}

export interface Evaluation {
  /** Scores keyed by class id as a string ("1", "2", …). */
  readonly perClass: Record<string, ClassScores>;
  /**
   * Arithmetic mean of each field over the scored classes (object counts included). With no class
   * to score, the "nothing to find, nothing found" values: 1 for the scores, 0 for hd95 and counts.
   */
  readonly mean: ClassScores;
}

const KEYS = ['dice', 'iou', 'surfaceDice', 'hd95', 'ap10', 'ap50', 'gtObjects', 'predObjects', 'recall10'] as const;

const NOTHING: ClassScores = {
  dice: 1, iou: 1, surfaceDice: 1, hd95: 0, ap10: 1, ap50: 1, gtObjects: 0, predObjects: 0, recall10: 1,
};

/** Mean of each field over `scores`; {@link NOTHING}'s values for an empty list. */
export function meanScores(scores: readonly ClassScores[]): ClassScores {
  if (scores.length === 0) return { ...NOTHING };
  const out: Record<string, number> = {};
  for (const k of KEYS) {
    let s = 0;
    for (const c of scores) s += c[k];
    out[k] = s / scores.length;
  }
  return out as unknown as ClassScores;
}

/** Scores of one class; `m` is the confusion matrix of the whole volumes. */
function scoreClass(
  pred: Array3<Uint8Array>, gt: Array3<Uint8Array>, cls: number, m: Float64Array, opts: EvaluateOptions,
): ClassScores {
  const counts = countsFromConfusion(m, cls);
  const region = foregroundBox([pred, gt], cls);
  if (region === undefined) return { ...NOTHING };
  // Everything below works on the class's bounding box only.
  const mp = cropMask(pred, region, cls);
  const mg = cropMask(gt, region, cls);
  const sd = surfaceDistances(mp, mg, opts.spacing);
  const probabilities = opts.probabilities ? crop(opts.probabilities, [0, 0, 0], region) : undefined;
  const ov = objectOverlaps(mp, mg, { probabilities });
  const d10 = detectionAtIoU(ov, 0.1);
  const d50 = detectionAtIoU(ov, 0.5);
  return {
    dice: diceFromCounts(counts),
    iou: iouFromCounts(counts),
    surfaceDice: surfaceDiceFromDistances(sd, opts.tolerance),
    hd95: robustHausdorffFromDistances(sd, 95),
    ap10: d10.ap,
    ap50: d50.ap,
    gtObjects: ov.gtObjects,
    predObjects: ov.predObjects,
    recall10: d10.recall,
  };
}

/**
 * Evaluate `pred` against `gt` (uint8 class ids, same shape; a mismatch throws a RangeError naming
 * both shapes). Each scored class costs one bounding-box scan of the volume plus work on its box.
 */
export function evaluate(pred: Array3<Uint8Array>, gt: Array3<Uint8Array>, opts: EvaluateOptions): Evaluation {
  assertSameShape(pred.shape, gt.shape);
  if (opts.probabilities) assertSameShape(opts.probabilities.shape, gt.shape, 'probabilities', 'gt');
  assertSpacing(opts.spacing);
  if (!(opts.tolerance >= 0)) throw new RangeError(`tolerance must be a number >= 0, got ${opts.tolerance}`);
  const m = confusionMatrix(pred.data, gt.data);
  const classes = opts.classes ?? classesPresent(m);
  for (const c of classes) {
    if (!Number.isInteger(c) || c < 1 || c >= CLASS_IDS) {
      throw new RangeError(`class ids must be integers in [1, ${CLASS_IDS - 1}], got ${c}`);
    }
  }
  const perClass: Record<string, ClassScores> = {};
  for (const c of classes) perClass[String(c)] = scoreClass(pred, gt, c, m, opts);
  return { perClass, mean: meanScores(Object.values(perClass)) };
}
