// Deterministic synthetic volumes with ground truth, for tests, demos, benchmarks and training.
//
//   const scene = synthScene({ kind: 'em', shape: [64, 1024, 1024], seed: 7 });
//   const img = renderImage(scene, region);   // any region: equals that crop of the whole volume
//   const lab = renderLabels(scene, region);  // 0 background, 1 foreground
//
// Rendering is region-independent (bit for bit), so huge volumes can be written chunk by chunk
// with flat memory. `em`: uint8, 40×4×4 nm, clefts on membranes; `ct`: uint16 (HU + 1024),
// 2.5×0.8×0.8 mm, lesions in organs. Seeds 1..99 are for evaluation; training uses 101 and up.
import { type Box, type Vec3, boxOfShape, contains, isEmpty, shapeOf, boxToString } from '../geometry/box.ts';
import { type Array3, array3 } from '../array/array3.ts';
import { type EmCleft, emClefts, renderEmImage, renderEmLabels, EM_CELL, EM_TILE } from './em.ts';
import { type CtTissue, type CtLesion, type CtDistractor, ctAnatomy, renderCtImage, renderCtLabels } from './ct.ts';

export type { EmCleft } from './em.ts';
export type { CtTissue, CtLesion, CtEllipsoid, CtDistractor } from './ct.ts';
export { CT_OFFSET } from './ct.ts';

export type SynthKind = 'em' | 'ct';

export interface SynthOptions {
  kind: SynthKind;
  shape: Vec3;
  seed: number;
  /** Target foreground fraction (default 0.005; 0 to 0.05). */
  fg?: number;
}

export const SYNTH_SPACING: Record<SynthKind, Vec3> = {
  em: [40, 4, 4],
  ct: [2.5, 0.8, 0.8],
};

export const SYNTH_UNIT: Record<SynthKind, 'nanometer' | 'millimeter'> = { em: 'nanometer', ct: 'millimeter' };
export const SYNTH_DTYPE: Record<SynthKind, 'uint8' | 'uint16'> = { em: 'uint8', ct: 'uint16' };
export const SYNTH_CLASSES: Record<SynthKind, readonly [string, string]> = {
  em: ['background', 'cleft'],
  ct: ['background', 'lesion'],
};
export const DEFAULT_FG = 0.005;

interface SceneBase {
  readonly shape: Vec3;
  readonly seed: number;
  readonly fg: number;
  readonly spacing: Vec3;
  readonly unit: 'nanometer' | 'millimeter';
  readonly dtype: 'uint8' | 'uint16';
}

/** EM: clefts are generated lazily per tile (see `sceneObjects`), so the scene stays tiny. */
export interface EmScene extends SceneBase {
  readonly kind: 'em';
  readonly dtype: 'uint8';
  readonly cell: number;
  readonly tile: Vec3;
}

/** CT: explicit anatomy (painted in order over air) and lesions. */
export interface CtScene extends SceneBase {
  readonly kind: 'ct';
  readonly dtype: 'uint16';
  readonly tissues: readonly CtTissue[];
  readonly lesions: readonly CtLesion[];
  /** Unlabelled look-alikes (vessels, cysts, calcifications), painted in the image only. */
  readonly distractors: readonly CtDistractor[];
}

/** Plain JSON-serialisable data. */
export type SynthScene = EmScene | CtScene;

/** A foreground object with its tight bounding box and voxel count. */
export type SynthObject = EmCleft | CtLesion;

function checkOptions(o: SynthOptions): number {
  if (o.kind !== 'em' && o.kind !== 'ct') throw new RangeError(`synth: unknown kind ${String(o.kind)}`);
  if (!Array.isArray(o.shape) || o.shape.length !== 3 || !o.shape.every((v) => Number.isInteger(v) && v > 0)) {
    throw new RangeError(`synth: shape must be three positive integers, got ${JSON.stringify(o.shape)}`);
  }
  if (!Number.isInteger(o.seed)) throw new RangeError(`synth: seed must be an integer, got ${o.seed}`);
  const fg = o.fg ?? DEFAULT_FG;
  if (!(fg >= 0 && fg <= 0.05)) throw new RangeError(`synth: fg must be in [0, 0.05], got ${fg}`);
  return fg;
}

/** The scene for a seed: cheap (object lists, not voxels). */
export function synthScene(opts: SynthOptions): SynthScene {
  const fg = checkOptions(opts);
  const shape: Vec3 = [opts.shape[0], opts.shape[1], opts.shape[2]];
  const base = {
    shape, seed: opts.seed, fg, spacing: SYNTH_SPACING[opts.kind], unit: SYNTH_UNIT[opts.kind],
  };
  if (opts.kind === 'em') return { ...base, kind: 'em', dtype: 'uint8', cell: EM_CELL, tile: EM_TILE };
  const sp = SYNTH_SPACING.ct;
  const a = ctAnatomy(opts.seed, shape, fg, sp[0] / sp[1]);
  return { ...base, kind: 'ct', dtype: 'uint16', tissues: a.tissues, lesions: a.lesions, distractors: a.distractors };
}

function checkRegion(scene: SynthScene, region: Box): void {
  if (!isEmpty(region) && !contains(boxOfShape(scene.shape), region)) {
    throw new RangeError(`synth: region ${boxToString(region)} is outside the volume ${scene.shape.join('x')}`);
  }
}

function count(region: Box): number {
  const s = shapeOf(region);
  return s[0] * s[1] * s[2];
}

/** The image of `region` (must lie inside the volume): Uint8Array for em, Uint16Array for ct. */
export function renderImage(scene: SynthScene, region: Box): Array3 {
  checkRegion(scene, region);
  const shape = shapeOf(region);
  if (scene.kind === 'em') {
    const out = new Uint8Array(count(region));
    if (out.length) renderEmImage(scene, region, out);
    return array3(out, shape);
  }
  const out = new Uint16Array(count(region));
  if (out.length) renderCtImage(scene.seed, scene, region, out);
  return array3(out, shape);
}

/** Ground truth of `region`: 0 background, 1 foreground. */
export function renderLabels(scene: SynthScene, region: Box): Array3<Uint8Array> {
  checkRegion(scene, region);
  const out = new Uint8Array(count(region));
  if (out.length) {
    if (scene.kind === 'em') renderEmLabels(scene, region, out);
    else renderCtLabels(scene, region, out);
  }
  return array3(out, shapeOf(region));
}

/**
 * Foreground objects whose bounding box meets `region` (default: the whole volume). Objects
 * may overlap the region only partly; their `voxels` count is for the whole object.
 */
export function sceneObjects(scene: SynthScene, region: Box = boxOfShape(scene.shape)): SynthObject[] {
  if (scene.kind === 'em') return emClefts(scene, region);
  return scene.lesions.filter((l) =>
    l.bbox.begin.every((b, k) => b < region.end[k]) && l.bbox.end.every((e, k) => e > region.begin[k]));
}
