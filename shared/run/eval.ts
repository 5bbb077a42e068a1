// `tessera eval`: score a prediction — a Tessera output or anyone's label array — against ground
// truth, over the run's region of interest or a given one. Refuses incomplete Tessera outputs and
// only what it cannot compare (shape, voxel size, values that are not labels).
import * as path from 'node:path';
import * as fs from 'node:fs';
import { type Box, type Vec3, box, boxOfShape, boxToString, shapeOf } from '../geometry/box.ts';
import type { Array3 } from '../array/array3.ts';
import { isArrayNode, openImage, remoteNode, remoteScaleInParent, scaleInParent } from '../volume/ome.ts';
import { RemoteClient, displayUrl, isRemote, remoteJoin } from '../volume/remote.ts';
import { type VolumeArray, openArray, readGroupAttributes, readRegion } from '../volume/zarr.ts';
import { type Evaluation, evaluate } from '../metrics/index.ts';
import { type BoxRecall, boxRecall } from '../metrics/recall.ts';
import { readBoxTargets } from '../tasks/boxes-output.ts';
import { type RunDocument, requireComplete, runJsonPath } from './output.ts';
import { InputError } from '../errors.ts';

export interface EvalOptions {
  /** A Tessera output group, or any label image / bare Zarr array of class ids (another tool's prediction). */
  pred: string;
  /** The input volume group (its labels/gt/0 is the truth), or a label image / bare array itself. */
  gt: string;
  /**
   * Surface Dice tolerance in the spacing's unit. @default the finest voxel side: the coarsest
   * (40 nm in EM, 10 in-plane voxels) is thicker than a synaptic cleft, so every prediction
   * near one would score 1.
   */
  tolerance?: number;
  /** Voxel size of a bare ground-truth array that has no NGFF scale (a bare prediction takes the truth's). */
  spacing?: Vec3;
  /** Region scored, on both. @default the Tessera run's ROI, else the whole volume */
  roi?: Box;
  /** Score every nonzero voxel as the foreground class: for arrays of instance ids rather than class ids. */
  foreground?: boolean;
}

export interface EvalReport extends Evaluation {
  pred: string;
  gt: string;
  roi: string;
  spacing: Vec3;
  unit: string | undefined;
  tolerance: number;
  voxels: number;
  /**
   * A two-stage Tessera output's stage-one recall: ground-truth objects with ≥ 90 % of their
   * voxels inside the boxes stage two ran on (its boxes.json), within the ROI.
   */
  boxRecall?: BoxRecall;
}

interface Labels {
  array: VolumeArray;
  /** Undefined: a bare array with no scale (the other side's, or --spacing, applies). */
  spacing?: Vec3;
  unit?: string;
  /** A Tessera output's run.json (its ROI, its probabilities). */
  run?: RunDocument;
}

/**
 * A label array and its voxel size: a Tessera output's segmentation, `labels/gt` of an input
 * volume (truth), an NGFF label image, an NGFF image group of class ids (a prediction), or a bare
 * array (scale from its parent's multiscales when it is one of their datasets).
 * An intensity image given as truth is refused: scoring against intensities means nothing.
 */
async function openLabels(p: string, role: 'pred' | 'gt'): Promise<Labels> {
  if (isRemote(p)) return openRemoteLabels(p, role);
  if (!fs.existsSync(p)) throw new InputError(p, 'no such file or directory');
  if (fs.existsSync(runJsonPath(p))) {
    const run = requireComplete(p);
    const img = await openImage(path.join(p, 'segmentation'));
    return { array: img.levels[0].array, spacing: img.levels[0].spacing, unit: img.unit, run };
  }
  const labels = path.join(p, 'labels', 'gt');
  if (role === 'gt' && fs.existsSync(labels)) return fromImage(await openImage(labels));
  if (isArrayNode(p)) {
    const own = await scaleInParent(p);
    return { array: await openArray(p), spacing: own?.spacing, unit: own?.unit };
  }
  const attrs = readGroupAttributes(p) ?? {};
  const ngff = (attrs.ome ?? attrs) as Record<string, unknown>;
  refuseIntensity(p, role, ngff);
  const img = await openImage(p);
  // A group without multiscales has no scale of its own (openImage gave it the [1, 1, 1] fallback).
  return 'multiscales' in ngff ? fromImage(img) : { array: img.levels[0].array };
}

/** Truth must be labels; a prediction must be an output, a label image or a bare label array. */
function refuseIntensity(p: string, role: 'pred' | 'gt', ngff: Record<string, unknown>): void {
  if (!('image-label' in ngff)) {
    // An intensity image is not labels; a plain group holding a "0" array (as many tools write) is.
    if (role === 'gt') throw new InputError(p, 'has no labels/gt and is not a label image (no "image-label" attributes): give the input volume with its labels/gt, or a label image');
    if ('multiscales' in ngff) throw new InputError(p, 'has no run.json (not a Tessera output) and is an NGFF intensity image, not a label image (no "image-label" attributes): give a Tessera output, a label image or a bare label array');
  }
}

/**
 * `openLabels` at a URL (https://, s3://, gs://): the input volume's labels/gt, a label image or
 * a bare label array, read in place (a Tessera output is a local path: outputs are not written
 * to URLs).
 */
async function openRemoteLabels(p: string, role: 'pred' | 'gt'): Promise<Labels> {
  const o = { remote: new RemoteClient() };
  const gt = remoteJoin(p, 'labels/gt');
  if (role === 'gt' && (await remoteNode(gt, o.remote)).kind !== 'none') return fromImage(await openImage(gt, [1, 1, 1], o));
  const node = await remoteNode(p, o.remote);
  if (node.kind === 'array') {
    const own = await remoteScaleInParent(p, o);
    return { array: await openArray(p, o), spacing: own?.spacing, unit: own?.unit };
  }
  const ngff = ((node.attrs?.ome ?? node.attrs) ?? {}) as Record<string, unknown>;
  refuseIntensity(displayUrl(p), role, ngff);
  const img = await openImage(p, [1, 1, 1], o);
  return 'multiscales' in ngff ? fromImage(img) : { array: img.levels[0].array };
}

function fromImage(img: Awaited<ReturnType<typeof openImage>>): Labels {
  return { array: img.levels[0].array, spacing: img.levels[0].spacing, unit: img.unit };
}

/** The voxel size both sides agree on; refused when they disagree or neither (nor --spacing) says. */
function commonSpacing(pred: Labels, gt: Labels, o: EvalOptions): Vec3 {
  // The truth states the voxel size (the surface metrics are in its unit); a bare prediction
  // takes it.
  const b = gt.spacing ?? o.spacing;
  if (!b) throw new InputError(o.gt, 'is a bare label array with no voxel size (not a dataset of an NGFF multiscales group): pass --spacing Z,Y,X');
  const a = pred.spacing ?? b;
  if (a.some((v, i) => Math.abs(v - b[i]) > 1e-6 * Math.max(v, b[i]))) {
    throw new InputError(o.pred, `voxel size ${a.join('x')} differs from the ground truth's ${b.join('x')} (${o.gt}): resample one of them first`);
  }
  return b;
}

/**
 * Class ids as uint8: uint8 as it is; other integer or boolean arrays when every value is a class
 * id (0–255), or nonzero → 1 with `foreground`; floats are refused (probabilities or intensities).
 */
function classIds(a: Array3, where: string, foreground: boolean): Array3<Uint8Array> {
  const d = a.data as ArrayLike<number | bigint>;
  if (a.data instanceof Float32Array || a.data instanceof Float64Array) {
    throw new InputError(where, `holds ${a.data instanceof Float32Array ? 'float32' : 'float64'} values: probabilities or intensities, not labels; threshold them into class ids first`);
  }
  if (a.data instanceof Uint8Array && !foreground) return a as Array3<Uint8Array>;
  const out = new Uint8Array(d.length);
  const big = typeof d[0] === 'bigint';
  for (let i = 0; i < d.length; i++) {
    const v = big ? Number(d[i] as bigint) : (d[i] as number);
    if (foreground) {
      out[i] = v !== 0 ? 1 : 0;
    } else if (v >= 0 && v <= 255) {
      out[i] = v;
    } else {
      throw new InputError(where, `value ${v} is not a class id (0–255): instance ids? pass --foreground to score every nonzero voxel as foreground`);
    }
  }
  return { ...a, data: out } as Array3<Uint8Array>;
}

export async function evaluateOutput(o: EvalOptions): Promise<EvalReport> {
  const pred = await openLabels(o.pred, 'pred');
  const truth = await openLabels(o.gt, 'gt');
  const shape = pred.array.shape;
  if (shapeOf(boxOfShape(shape)).some((v, a) => v !== truth.array.shape[a])) {
    throw new InputError(o.pred, `shape ${shape.join('x')} differs from the ground truth's ${truth.array.shape.join('x')} (${truth.array.path})`);
  }
  const spacing = commonSpacing(pred, truth, o);
  const runRoi = pred.run?.roi as { begin: Vec3; end: Vec3 } | undefined;
  const roi: Box = o.roi ?? (runRoi ? { begin: runRoi.begin, end: runRoi.end } : boxOfShape(shape));
  if (roi.begin.some((v, a) => v < 0 || roi.end[a] > shape[a] || v >= roi.end[a])) {
    throw new InputError(o.pred, `ROI ${boxToString(roi)} is not inside the volume ${shape.join('x')}`);
  }
  const p = classIds(await readRegion(pred.array, roi), pred.array.path, !!o.foreground);
  const g = classIds(await readRegion(truth.array, roi), truth.array.path, !!o.foreground);
  const tolerance = o.tolerance ?? Math.min(...spacing);
  let probabilities: Array3<Float32Array> | undefined;
  const probPath = path.join(o.pred, 'probabilities', '0');
  if (pred.run && fs.existsSync(probPath)) probabilities = (await readRegion(await openArray(probPath), roi)) as Array3<Float32Array>;
  const ev = evaluate(p, g, { spacing, tolerance, classes: [1], probabilities });
  const s = shapeOf(roi);
  const targets = pred.run ? readBoxTargets(o.pred) : undefined;
  // Boxes are in volume coordinates, the truth read here in the ROI's.
  const recall = targets && boxRecall(g, targets.map((t) => box(t.begin.map((v, a) => v - roi.begin[a]) as unknown as Vec3, t.end.map((v, a) => v - roi.begin[a]) as unknown as Vec3)));
  return { pred: o.pred, gt: o.gt, roi: boxToString(roi), spacing, unit: truth.unit ?? pred.unit, tolerance, voxels: s[0] * s[1] * s[2], ...ev, ...(recall ? { boxRecall: recall } : {}) };
}
