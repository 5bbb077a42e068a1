// Segmentation metrics: voxel overlap, DeepMind surface metrics, object detection AP, a
// threshold baseline, and the one-call evaluation that combines them.
export type { OverlapCounts, OverlapScores } from './overlap.ts';
export {
  CLASS_IDS, classesPresent, confusionMatrix, countsFromConfusion, diceFromCounts, iouFromCounts,
  overlapScores, perClassOverlap, scoresFromCounts,
} from './overlap.ts';
export type { EnvelopeScratch } from './distance.ts';
export { edt, edtSquared, edtSquaredInPlace, edtSquaredInRegion, envelopeScratch, lowerEnvelope1d } from './distance.ts';
export type { SurfaceDistances } from './surface.ts';
export {
  hd95, robustHausdorff, robustHausdorffFromDistances, surfaceArea, surfaceDice, surfaceDiceFromDistances,
  surfaceDistances, surfelAreaTable,
} from './surface.ts';
export type { DetectionResult, ObjectOptions, ObjectOverlaps } from './detection.ts';
export { averagePrecision, detection, detectionAP, detectionAtIoU, objectOverlaps } from './detection.ts';
export type { ThresholdDice, ThresholdDirection } from './threshold.ts';
export { MAX_BINS, bestThresholdDice } from './threshold.ts';
export type { ClassScores, EvaluateOptions, Evaluation } from './evaluate.ts';
export { evaluate, meanScores } from './evaluate.ts';
export type { ClassSelector } from './region.ts';
export { assertSameShape, cropMask, foregroundBox } from './region.ts';
