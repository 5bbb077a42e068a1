// Surface metrics with the definitions of DeepMind's `surface-distance` package
// (github.com/deepmind/surface-distance, metrics.py + lookup_tables.py), anisotropic throughout.
//
// Surface elements ("surfels") live on the corner grid, half a voxel off the voxel grid: each
// corner sees the 2×2×2 voxels around it, and the 8 in/out bits form a neighbour code (0..255).
// Corners whose code is neither 0 nor 255 are surfels. Each code has the marching-cubes triangles
// of that configuration; their area vectors (normal × area, unit voxels) are the table below,
// and a surfel's area for spacing (s0, s1, s2) is Σ |(n0·s1·s2, n1·s0·s2, n2·s0·s1)| over its
// triangles. Distances are Euclidean (in spacing units) from each surfel of one mask to the
// nearest surfel of the other.
//
// Empty masks (DeepMind leaves these as NaN/inf; Tessera fixes them):
//  - both empty:  surface Dice = 1, robust Hausdorff (HD95) = 0  ("nothing to find, nothing found")
//  - one empty:   surface Dice = 0, robust Hausdorff (HD95) = +Infinity
//    (Infinity has no JSON form: JSON.stringify writes it as null).
import { type Vec3, grow } from '../geometry/box.ts';
import type { Array3 } from '../array/array3.ts';
import { edtSquaredInPlace } from './distance.ts';
import { assertSameShape, assertSpacing, cropMask, foregroundBox } from './region.ts';

// Area vectors of the marching-cubes triangles of each neighbour code, from DeepMind's
// `neighbour_code_to_normals`. Only their lengths under axis scaling matter, so each triangle is
// stored as three digits: |component| in eighths of a unit, components in [axis0, axis1, axis2]
// order ("111" = (1/8, 1/8, 1/8): the corner triangle of a single voxel). Codes are space-separated,
// 16 per string, code 0 first. Bit layout of a code: voxel at offset (dz, dy, dx) ∈ {0,1}³ from
// the corner's lower neighbour has bit value 128 >> (4·dz + 2·dy + dx).
const CODE_TRIANGLES: readonly string[] = [
  '000 111 111 220220 111 202202 111111 400222111 111 111111 202202 400222111 220220 400222111 400222111 400400',
  '111 022022 111111 040222111 111111 004222111 111111111 111222222111 111111 022022111 202202111 111333022202 111220220 333022111220 400111222111 400111222',
  '111 111111 022022 040111222 111111 111202202 022022111 333022111202 111111 111111111 004222111 222222111111 111220220 400222111111 022333111220 400222111',
  '220220 040222111 040111222 040040 220220111 333202111220 111040222111 040222111 111220220 040222111111 333220111202 040222111 220220220220 220220111 111220220 220220',
  '111 111111 111111 111220220 022022 004222111 022022111 333022111220 111111 111111111 111202202 400222111111 040222111 222222111111 202333022111 400222111',
  '202202 004222111 111202202 202333220111 004222111 004004 111111222004 111222004 202202111 004222111111 202202202202 111202202 202333220111 004222111 111202202 202202',
  '111111 111111111 111022022 040111222111 022022111 004222111111 022022022022 022022111 111111111 111111111111 004222111111 111111111 040222111111 111111111 022022111 111111',
  '400222111 222111222111 333022111202 040222111 333220022111 111222004 111022022 022022 400222111111 111111111 202202111 111111 220220111 111111 111111 111',
  '111 111111 111111 220220111 111111 202202111 111111111 400222111111 022022 111022022 111222004 333220022111 040222111 333022111202 222111222111 400222111',
  '111111 022022111 111111111 040222111111 111111111 004222111111 111111111111 111111111 022022111 022022022022 004222111111 022022111 040111222111 111022022 111111111 111111',
  '202202 111202202 004222111 202333220111 111202202 202202202202 004222111111 202202111 111222004 111111222004 004004 004222111 202333220111 111202202 004222111 202202',
  '400222111 202333022111 222222111111 040222111 400222111111 111202202 111111111 111111 333022111220 022022111 004222111 022022 111220220 111111 111111 111',
  '220220 111220220 220220111 220220220220 040222111 333220111202 040222111111 111220220 040222111 111040222111 333202111220 220220111 040040 040111222 040222111 220220',
  '400222111 022333111220 400222111111 111220220 222222111111 004222111 111111111 111111 333022111202 022022111 111202202 111111 040111222 022022 111111 111',
  '400111222 400111222111 333022111220 111220220 111333022202 202202111 022022111 111111 111222222111 111111111 004222111 111111 040222111 111111 022022 111',
  '400400 400222111 400222111 220220 400222111 202202 111111 111 400222111 111111 202202 111 220220 111 111 000',
];

/** Per-triangle |area vector| components in eighths, flattened: code → [a0, a1, a2, a0, a1, a2, …]. */
const TRIANGLES: readonly (readonly number[])[] = CODE_TRIANGLES.join(' ').split(' ').map((t) => [...t].map(Number));
if (TRIANGLES.length !== 256) throw new Error('surface: neighbour-code table must have 256 entries');

/** Surface area of each of the 256 neighbour codes for voxel spacing `spacing` ([z, y, x]). */
export function surfelAreaTable(spacing: Vec3): Float64Array {
  const [s0, s1, s2] = spacing;
  const w0 = (s1 * s2) / 8, w1 = (s0 * s2) / 8, w2 = (s0 * s1) / 8;
  const out = new Float64Array(256);
  for (let code = 0; code < 256; code++) {
    const t = TRIANGLES[code];
    let a = 0;
    for (let i = 0; i < t.length; i += 3) a += Math.hypot(t[i] * w0, t[i + 1] * w1, t[i + 2] * w2);
    out[code] = a;
  }
  return out;
}

/**
 * Surfels of both masks with their areas and their distance to the other mask's surface (DeepMind
 * `compute_surface_distances`). Arrays are in raster order of the corner grid (not sorted).
 * With one mask empty its arrays are empty and the other's distances are +Infinity.
 */
export interface SurfaceDistances {
  /** Distance from each gt surfel to the nearest pred surfel. */
  readonly distancesGtToPred: Float64Array;
  /** Distance from each pred surfel to the nearest gt surfel. */
  readonly distancesPredToGt: Float64Array;
  /** Area of each gt surfel (same order as distancesGtToPred). */
  readonly surfelAreasGt: Float64Array;
  /** Area of each pred surfel (same order as distancesPredToGt). */
  readonly surfelAreasPred: Float64Array;
}

const EMPTY: SurfaceDistances = {
  distancesGtToPred: new Float64Array(0),
  distancesPredToGt: new Float64Array(0),
  surfelAreasGt: new Float64Array(0),
  surfelAreasPred: new Float64Array(0),
};

/** Neighbour codes of the (n+1)-corner grid of a mask padded with one zero voxel on every side. */
function neighbourCodes(padded: Uint8Array, pz: number, py: number, px: number): Uint8Array {
  const cz = pz - 1, cy = py - 1, cx = px - 1;
  const out = new Uint8Array(cz * cy * cx);
  const sy = px, sz = py * px;
  let o = 0;
  for (let z = 0; z < cz; z++) {
    for (let y = 0; y < cy; y++) {
      let i = z * sz + y * sy;
      for (let x = 0; x < cx; x++, i++, o++) {
        out[o] =
          (padded[i] << 7) | (padded[i + 1] << 6) | (padded[i + sy] << 5) | (padded[i + sy + 1] << 4) |
          (padded[i + sz] << 3) | (padded[i + sz + 1] << 2) | (padded[i + sz + sy] << 1) | padded[i + sz + sy + 1];
      }
    }
  }
  return out;
}

/**
 * Surface distances between the foreground of `pred` and of `gt` (with `cls`: voxels equal to
 * it; without: non-zero voxels), for voxel spacing `spacing` ([z, y, x], any unit). Works on the
 * pred ∪ gt bounding box grown by one voxel, so sparse masks in big volumes stay cheap.
 */
export function surfaceDistances(pred: Array3, gt: Array3, spacing: Vec3, cls?: number): SurfaceDistances {
  assertSameShape(pred.shape, gt.shape);
  assertSpacing(spacing);
  const fg = foregroundBox([pred, gt], cls);
  if (fg === undefined) return EMPTY;
  // Pad one voxel on every side so every corner touching the foreground gets its full code.
  const region = grow(fg, [1, 1, 1]);
  const mp = cropMask(pred, region, cls);
  const mg = cropMask(gt, region, cls);
  const [pz, py, px] = mp.shape;
  const cp = neighbourCodes(mp.data, pz, py, px);
  const cg = neighbourCodes(mg.data, pz, py, px);
  const cshape: Vec3 = [pz - 1, py - 1, px - 1];
  const n = cp.length;
  const dp = new Float64Array(n); // → squared distance to the nearest pred surfel
  const dg = new Float64Array(n); // → squared distance to the nearest gt surfel
  let nPred = 0, nGt = 0;
  for (let i = 0; i < n; i++) {
    const bp = cp[i] !== 0 && cp[i] !== 255;
    const bg = cg[i] !== 0 && cg[i] !== 255;
    dp[i] = bp ? 0 : Infinity;
    dg[i] = bg ? 0 : Infinity;
    if (bp) nPred++;
    if (bg) nGt++;
  }
  edtSquaredInPlace(dp, cshape, spacing);
  edtSquaredInPlace(dg, cshape, spacing);
  const area = surfelAreaTable(spacing);
  const distancesGtToPred = new Float64Array(nGt);
  const surfelAreasGt = new Float64Array(nGt);
  const distancesPredToGt = new Float64Array(nPred);
  const surfelAreasPred = new Float64Array(nPred);
  let ig = 0, ip = 0;
  for (let i = 0; i < n; i++) {
    const a = cg[i], b = cp[i];
    if (a !== 0 && a !== 255) {
      distancesGtToPred[ig] = Math.sqrt(dp[i]);
      surfelAreasGt[ig++] = area[a];
    }
    if (b !== 0 && b !== 255) {
      distancesPredToGt[ip] = Math.sqrt(dg[i]);
      surfelAreasPred[ip++] = area[b];
    }
  }
  return { distancesGtToPred, distancesPredToGt, surfelAreasGt, surfelAreasPred };
}

function sum(a: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
}

/**
 * Surface Dice at tolerance τ (DeepMind `compute_surface_dice_at_tolerance`): (area of gt surfels
 * within τ of pred + area of pred surfels within τ of gt) / (total area of both); "within" is ≤.
 * Both empty → 1; one empty → 0.
 */
export function surfaceDiceFromDistances(sd: SurfaceDistances, tolerance: number): number {
  if (sd.surfelAreasGt.length === 0 && sd.surfelAreasPred.length === 0) return 1;
  if (sd.surfelAreasGt.length === 0 || sd.surfelAreasPred.length === 0) return 0;
  // Both sums in one order, so that "every surfel within τ" gives exactly 1.
  let overlap = 0, total = 0;
  for (let i = 0; i < sd.distancesGtToPred.length; i++) {
    total += sd.surfelAreasGt[i];
    if (sd.distancesGtToPred[i] <= tolerance) overlap += sd.surfelAreasGt[i];
  }
  for (let i = 0; i < sd.distancesPredToGt.length; i++) {
    total += sd.surfelAreasPred[i];
    if (sd.distancesPredToGt[i] <= tolerance) overlap += sd.surfelAreasPred[i];
  }
  return overlap / total;
}

/** The area-weighted `percent` percentile of one direction's distances (DeepMind's searchsorted rule). */
function percentileDistance(dist: Float64Array, areas: Float64Array, percent: number): number {
  const n = dist.length;
  if (n === 0) return Infinity;
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  // DeepMind sorts (distance, area) pairs.
  order.sort((a, b) => dist[a] - dist[b] || areas[a] - areas[b]);
  const total = sum(areas);
  const p = percent / 100;
  let cum = 0;
  for (let k = 0; k < n; k++) {
    cum += areas[order[k]];
    if (cum / total >= p) return dist[order[k]];
  }
  return dist[order[n - 1]];
}

/**
 * Robust Hausdorff distance (DeepMind `compute_robust_hausdorff`): the max over both directions of
 * the area-weighted `percent` percentile of surfel distances. Both empty → 0; one empty → +Infinity.
 */
export function robustHausdorffFromDistances(sd: SurfaceDistances, percent: number): number {
  if (!(percent >= 0 && percent <= 100)) throw new RangeError(`percent must be in [0, 100], got ${percent}`);
  if (sd.distancesGtToPred.length === 0 && sd.distancesPredToGt.length === 0) return 0;
  return Math.max(
    percentileDistance(sd.distancesGtToPred, sd.surfelAreasGt, percent),
    percentileDistance(sd.distancesPredToGt, sd.surfelAreasPred, percent),
  );
}

/** Surface Dice at `tolerance` (same unit as `spacing`); see {@link surfaceDiceFromDistances}. */
export function surfaceDice(pred: Array3, gt: Array3, spacing: Vec3, tolerance: number, cls?: number): number {
  return surfaceDiceFromDistances(surfaceDistances(pred, gt, spacing, cls), tolerance);
}

/** Robust Hausdorff distance at `percent`; see {@link robustHausdorffFromDistances}. */
export function robustHausdorff(pred: Array3, gt: Array3, spacing: Vec3, percent: number, cls?: number): number {
  return robustHausdorffFromDistances(surfaceDistances(pred, gt, spacing, cls), percent);
}

/**
 * HD95: DeepMind `compute_robust_hausdorff(…, 95)`. Both empty → 0; one empty → +Infinity
 * (JSON.stringify writes Infinity as null).
 */
export function hd95(pred: Array3, gt: Array3, spacing: Vec3, cls?: number): number {
  return robustHausdorff(pred, gt, spacing, 95, cls);
}

/** Total DeepMind surface area of a mask's foreground (0 when empty). */
export function surfaceArea(mask: Array3, spacing: Vec3, cls?: number): number {
  return sum(surfaceDistances(mask, mask, spacing, cls).surfelAreasGt);
}
