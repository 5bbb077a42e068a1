// `tessera eval`: score an output group against an input volume's ground truth over the run's
// region of interest. Refuses incomplete outputs.
import * as path from 'node:path';
import * as fs from 'node:fs';
import { type Box, type Vec3, boxOfShape, boxToString, shapeOf } from '../geometry/box.ts';
import type { Array3 } from '../array/array3.ts';
import { isArrayNode, openImage, scaleInParent } from '../volume/ome.ts';
import { type VolumeArray, openArray, readGroupAttributes, readRegion } from '../volume/zarr.ts';
import { type Evaluation, evaluate } from '../metrics/index.ts';
import { requireComplete } from './output.ts';
import { InputError } from '../errors.ts';

export interface EvalOptions {
  pred: string;
  /** The input volume group (its labels/gt/0 is the truth), or a label array/image itself. */
  gt: string;
  /**
   * Surface Dice tolerance in the spacing's unit. @default the finest voxel side: the coarsest
   * (40 nm in EM, 10 in-plane voxels) is thicker than a synaptic cleft, so every prediction
   * near one would score 1.
   */
  tolerance?: number;
  /** Voxel size of a bare label array given as `gt` that has no NGFF scale. */
  spacing?: Vec3;
}

export interface EvalReport extends Evaluation {
  pred: string;
  gt: string;
  roi: string;
  spacing: Vec3;
  unit: string | undefined;
  tolerance: number;
  voxels: number;
}

/**
 * The ground-truth label image and its voxel size: `gt/labels/gt` of an input volume, a label
 * image group, or a bare label array (spacing from its parent's multiscales, else `--spacing`).
 * An intensity image without labels/gt is refused: scoring against intensities means nothing.
 */
async function openGroundTruth(gt: string, spacing?: Vec3): Promise<{ array: VolumeArray; spacing: Vec3; unit?: string }> {
  if (!fs.existsSync(gt)) throw new InputError(gt, 'no such file or directory');
  const labels = path.join(gt, 'labels', 'gt');
  if (fs.existsSync(labels)) {
    const img = await openImage(labels);
    return { array: img.levels[0].array, spacing: img.levels[0].spacing, unit: img.unit };
  }
  const attrs = isArrayNode(gt) ? undefined : readGroupAttributes(gt);
  if (attrs !== undefined) {
    if (!('image-label' in attrs)) {
      throw new InputError(gt, 'has no labels/gt and is not a label image (no "image-label" attributes): give the input volume with its labels/gt, or a label image');
    }
    const img = await openImage(gt);
    return { array: img.levels[0].array, spacing: img.levels[0].spacing, unit: img.unit };
  }
  // A bare array: its group's multiscales give its scale, when it is one of their datasets.
  const array = await openArray(gt);
  const own = await scaleInParent(gt);
  if (own) return { array, ...own };
  if (spacing) return { array, spacing };
  throw new InputError(gt, 'is a bare label array with no voxel size (not a dataset of an NGFF multiscales group): pass --spacing Z,Y,X');
}

export async function evaluateOutput(o: EvalOptions): Promise<EvalReport> {
  const run = requireComplete(o.pred);
  const predArr = await openArray(path.join(o.pred, 'segmentation', '0'));
  const gtImage = await openGroundTruth(o.gt, o.spacing);
  const gtArr = gtImage.array;
  if (shapeOf(boxOfShape(predArr.shape)).some((v, a) => v !== gtArr.shape[a])) {
    throw new InputError(o.pred, `segmentation shape ${predArr.shape.join('x')} differs from ground truth ${gtArr.shape.join('x')} (${gtArr.path})`);
  }
  const roiDoc = run.roi as { begin: Vec3; end: Vec3 } | undefined;
  const roi: Box = roiDoc ? { begin: roiDoc.begin, end: roiDoc.end } : boxOfShape(predArr.shape);
  const pred = (await readRegion(predArr, roi)) as Array3<Uint8Array>;
  const gt = (await readRegion(gtArr, roi)) as Array3<Uint8Array>;
  if (!(gt.data instanceof Uint8Array)) throw new InputError(gtArr.path, `ground truth must be uint8 class ids, got ${gtArr.dtype}`);
  const spacing = gtImage.spacing;
  const tolerance = o.tolerance ?? Math.min(...spacing);
  let probabilities: Array3<Float32Array> | undefined;
  const probPath = path.join(o.pred, 'probabilities', '0');
  if (fs.existsSync(probPath)) probabilities = (await readRegion(await openArray(probPath), roi)) as Array3<Float32Array>;
  const ev = evaluate(pred, gt, { spacing, tolerance, classes: [1], probabilities });
  const s = shapeOf(roi);
  return { pred: o.pred, gt: o.gt, roi: boxToString(roi), spacing, unit: gtImage.unit, tolerance, voxels: s[0] * s[1] * s[2], ...ev };
}
