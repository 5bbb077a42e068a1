// Boxes: what a candidate box is and how two are compared. Heatmap → fragments is
// boxes-fragments.ts (the definitions of cells, roi_threshold, axis_thr, area_thr and score are
// in boxes-extract.ts); fragments → the boxes stage two takes — NMS, NMM and re-cropping over
// whole regions — is boxes-merge.ts, the one implementation of each.
import { type Box, intersectionOverSmaller, iou } from '../geometry/box.ts';

export { type ExtractOptions } from './boxes-extract.ts';
export { byScore, compareBoxes, tileStarts } from './boxes-order.ts';

export interface Candidate {
  /** Unique within one block's boxes (0.. in box order). */
  readonly id: number;
  /** Full-resolution voxel box. */
  readonly box: Box;
  readonly score: number;
  readonly role: 'parent' | 'child';
  /** For children: id of the parent they were re-cropped from (tests and hand-made lists; planned tiles carry none). */
  readonly parent?: number;
}

export type MatchMetric = 'iou' | 'ios';

/** 'auto': regions whose box fits cropThreshold go whole, bigger ones are tiled ('children': all are; 'parents': by a lattice of cropThreshold). */
export type BoxMode = 'parents' | 'children' | 'auto';

export function matchScore(a: Box, b: Box, metric: MatchMetric): number {
  return metric === 'iou' ? iou(a, b) : intersectionOverSmaller(a, b);
}
