// The image pyramid of a synthetic volume: levels 0, 1, 2 at [1, 2, 2] steps, each level the
// rounded area mean of the one before. Shared by `tessera synth` (written to disk tile by tile)
// and `virtual:` inputs (rendered chunk by chunk), so that a run reads the same voxels at every
// level from either — its stage one reads level 2, and a float mean made on the fly from
// level 0 would differ from the rounded means here.
//
// Pooling blocks are anchored at the volume origin, so a level's region renders the same from
// any level-0 region that starts on the block grid (a tile, a chunk): partial blocks only occur
// at the volume's far edge, where every caller's region ends too.
import { type Box, type Vec3, boxOfShape, intersect } from '../geometry/box.ts';
import { type Array3, array3 } from '../array/array3.ts';
import { downsampleMean } from '../array/resample.ts';
import { type DType, allocate } from '../volume/dtype.ts';
import { type SynthScene, renderImage } from './index.ts';

export const PYRAMID_STEP: Vec3 = [1, 2, 2];
export const PYRAMID_LEVELS = 3;

/** Level-0 voxels per level-k voxel along each axis. */
export function levelFactor(k: number): Vec3 {
  return PYRAMID_STEP.map((s) => s ** k) as unknown as Vec3;
}

/** The shapes of levels 0 … PYRAMID_LEVELS − 1 of a volume of `shape`. */
export function levelShapes(shape: Vec3): Vec3[] {
  const out: Vec3[] = [shape];
  for (let k = 1; k < PYRAMID_LEVELS; k++) out.push(out[k - 1].map((v, a) => Math.ceil(v / PYRAMID_STEP[a])) as unknown as Vec3);
  return out;
}

/** The level-k box a level-0 box maps to (blocks it touches). */
export function levelBox(b: Box, k: number): Box {
  const f = levelFactor(k);
  return {
    begin: b.begin.map((v, a) => Math.floor(v / f[a])) as unknown as Vec3,
    end: b.end.map((v, a) => Math.ceil(v / f[a])) as unknown as Vec3,
  };
}

/** The next level of `a`: the mean of each PYRAMID_STEP block, rounded to `dtype`. */
export function nextLevel(a: Array3, dtype: DType): Array3 {
  const mean = downsampleMean(a, PYRAMID_STEP);
  const out = allocate(dtype, mean.data.length);
  for (let i = 0; i < mean.data.length; i++) out[i] = Math.round(mean.data[i]);
  return array3(out, mean.shape);
}

/** The image of `region` of level k (inside that level): level 0 rendered, then reduced k times. */
export function renderLevel(scene: SynthScene, k: number, region: Box): Array3 {
  const f = levelFactor(k);
  const full = intersect({
    begin: region.begin.map((v, a) => v * f[a]) as unknown as Vec3,
    end: region.end.map((v, a) => v * f[a]) as unknown as Vec3,
  }, boxOfShape(scene.shape));
  let a = renderImage(scene, full);
  for (let i = 0; i < k; i++) a = nextLevel(a, scene.dtype);
  return a;
}
