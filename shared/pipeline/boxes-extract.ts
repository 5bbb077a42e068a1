// Heatmap → cells and regions, the definitions of "extract" (boxes-fragments.ts applies them per
// stage-one block; boxes-merge.ts has NMS, NMM, re-cropping). Pure: data in, data out.
//
// Definitions (the research notes leave these open; this is what Tessera means by them):
// - Cells: the heatmap is pooled (max or mean) on a grid of `priorDownsample` stage-one voxels,
//   aligned to multiples of priorDownsample in *global* stage-one coordinates (not to the
//   heatmap's first voxel), so two chunks that see the same object pool it identically.
//   Cells cut by the heatmap's edge pool only the voxels they hold.
// - roi_threshold: a cell is foreground when its pooled value is strictly greater.
// - Regions: 26-connected components of foreground cells.
// - axis_thr: a region is kept only if its bounding-box extent, in cells, along its LONGEST
//   axis is ≥ axisThr (it must reach axisThr cells along at least one axis).
// - area_thr: a region is kept only if its largest cross-section — the most region cells
//   in any one plane perpendicular to z, y or x — is ≥ areaThr cells.
//   axisThr ≤ 1 and areaThr ≤ 1 (e.g. 0) disable the filters.
// - score: the heatmap mass of the region = Σ heat over every stage-one voxel of the
//   region's cells × (full-res voxels per stage-one voxel), i.e. the expected foreground
//   volume in full-resolution voxels. Independent of the pooling mode. After NMM a parent's
//   score is the sum of its members' scores; tiles take their region's (or component's) score.
// - Box: region cells → stage-one voxels (clipped to the heatmap) → full resolution
//   (scale.toFull, rounded outward) → grown by `margin` on every side → clipped to `bounds`
//   (dropped if nothing is left) → grown to at least `minShape` (growTo, shifted into bounds).
import { type Box, type Vec3, box, grow, growTo, intersect, isEmpty } from '../geometry/box.ts';
import { toFull } from '../geometry/scale.ts';
import type { Array3 } from '../array/array3.ts';
import { label } from '../array/components.ts';

export interface ExtractOptions {
  /** Pooling grid in stage-one voxels, e.g. [3,16,16]. */
  priorDownsample: Vec3;
  pooling: 'max' | 'mean';
  roiThreshold: number;
  /** Minimum extent in cells along the region's longest axis; ≤ 1 disables. */
  axisThr: number;
  /** Minimum cells in the region's largest cross-section; ≤ 1 disables. */
  areaThr: number;
  /** Full-resolution voxels per stage-one voxel along each axis (may be fractional). */
  factor: Vec3;
  /** Full-resolution voxels added on every side. */
  margin: Vec3;
  /** Each box is grown to at least this shape (the stage-two crop). */
  minShape: Vec3;
  /** Full-resolution region the boxes are clipped / shifted into. */
  bounds: Box;
}

/** The heatmap pooled into cells: cell grid origin/shape (global cell coordinates), Σ heat per cell, foreground mask. */
export interface PooledCells {
  c0: Vec3;
  nc: Vec3;
  sum: Float64Array;
  mask: Uint8Array;
}

/** Pool `heat` (first voxel at `heatOrigin`) into cells of `pd` stage-one voxels aligned to the global grid. */
export function poolCells(heat: Array3, heatOrigin: Vec3, pd: Vec3, pooling: 'max' | 'mean', roiThreshold: number): PooledCells {
  const shape = heat.shape;
  const c0: number[] = [];
  const nc: number[] = [];
  const maps: Int32Array[] = [];
  for (let a = 0; a < 3; a++) {
    const lo = Math.floor(heatOrigin[a] / pd[a]);
    const hi = Math.ceil((heatOrigin[a] + shape[a]) / pd[a]);
    c0.push(lo);
    nc.push(hi - lo);
    const m = new Int32Array(shape[a]);
    for (let i = 0; i < shape[a]; i++) m[i] = Math.floor((heatOrigin[a] + i) / pd[a]) - lo;
    maps.push(m);
  }
  const [NZ, NY, NX] = nc;
  const ncell = NZ * NY * NX;
  const maxv = new Float32Array(ncell).fill(-Infinity);
  const sum = new Float64Array(ncell);
  const cnt = new Int32Array(ncell);
  const [Z, Y, X] = shape;
  const d = heat.data;
  const [mz, my, mx] = maps;
  for (let z = 0; z < Z; z++) {
    for (let y = 0; y < Y; y++) {
      const row = (mz[z] * NY + my[y]) * NX;
      const src = (z * Y + y) * X;
      for (let x = 0; x < X; x++) {
        const c = row + mx[x];
        const v = d[src + x];
        sum[c] += v;
        cnt[c]++;
        if (v > maxv[c]) maxv[c] = v;
      }
    }
  }
  const mask = new Uint8Array(ncell);
  for (let c = 0; c < ncell; c++) {
    const v = pooling === 'max' ? maxv[c] : sum[c] / cnt[c];
    if (v > roiThreshold) mask[c] = 1;
  }
  return { c0: c0 as unknown as Vec3, nc: nc as unknown as Vec3, sum, mask };
}

/** Per region: cell bounding box (lo/hi, 3 per label) and whether it passes axis_thr and area_thr. */
export function regionStats(labels: Int32Array, count: number, nc: Vec3, axisThr: number, areaThr: number): { lo: Int32Array; hi: Int32Array; keep: Uint8Array } {
  const [NZ, NY, NX] = nc;
  const lo = new Int32Array(3 * (count + 1)).fill(2 ** 30);
  const hi = new Int32Array(3 * (count + 1)).fill(-(2 ** 30));
  const needArea = areaThr > 1;
  const sections = needArea ? [new Int32Array((count + 1) * NZ), new Int32Array((count + 1) * NY), new Int32Array((count + 1) * NX)] : [];
  for (let z = 0, c = 0; z < NZ; z++) {
    for (let y = 0; y < NY; y++) {
      for (let x = 0; x < NX; x++, c++) {
        const l = labels[c];
        if (l === 0) continue;
        const p = [z, y, x];
        for (let a = 0; a < 3; a++) {
          if (p[a] < lo[3 * l + a]) lo[3 * l + a] = p[a];
          if (p[a] + 1 > hi[3 * l + a]) hi[3 * l + a] = p[a] + 1;
        }
        if (needArea) {
          sections[0][l * NZ + z]++;
          sections[1][l * NY + y]++;
          sections[2][l * NX + x]++;
        }
      }
    }
  }
  const keep = new Uint8Array(count + 1);
  for (let l = 1; l <= count; l++) {
    let extent = 0;
    for (let a = 0; a < 3; a++) extent = Math.max(extent, hi[3 * l + a] - lo[3 * l + a]);
    let ok = extent >= axisThr;
    if (ok && needArea) {
      let area = 0;
      for (let a = 0; a < 3; a++) {
        const n = nc[a];
        for (let s = 0; s < n; s++) area = Math.max(area, sections[a][l * n + s]);
      }
      ok = area >= areaThr;
    }
    keep[l] = ok ? 1 : 0;
  }
  return { lo, hi, keep };
}

/** Stage-one cells `cells` → the full-resolution box extractBoxes gives them (see the header). */
export function cellsToBox(cells: Box, pd: Vec3, clipLow: Box, o: Pick<ExtractOptions, 'factor' | 'margin' | 'minShape' | 'bounds'>): Box | undefined {
  const low = intersect(box(
    [cells.begin[0] * pd[0], cells.begin[1] * pd[1], cells.begin[2] * pd[2]],
    [cells.end[0] * pd[0], cells.end[1] * pd[1], cells.end[2] * pd[2]],
  ), clipLow);
  const clipped = intersect(grow(toFull(low, o.factor), o.margin), o.bounds);
  return isEmpty(clipped) ? undefined : growTo(clipped, o.minShape, o.bounds);
}

export function cellShape(priorDownsample: Vec3): Vec3 {
  return priorDownsample.map((v) => Math.max(1, Math.round(v))) as unknown as Vec3;
}
