// Heatmap → boxes ("extract"): pool the stage-one heatmap into cells, form regions, filter
// them, map them to full resolution, de-duplicate (NMS), merge (NMM) into parents and re-crop
// parents into fixed-size children. Pure: data in, data out; deterministic for a given input
// whatever the order of candidates handed to nms/nmm.
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
//   score is the sum of its members' scores; children inherit their parent's score.
// - Box: region cells → stage-one voxels (clipped to the heatmap) → full resolution
//   (scale.toFull, rounded outward) → grown by `margin` on every side → clipped to `bounds`
//   (dropped if nothing is left) → grown to at least `minShape` (growTo, shifted into bounds).
import {
  type Box, type Vec3, box, grow, growTo, intersect, intersectionOverSmaller, iou, isEmpty, shapeOf, union,
} from '../geometry/box.ts';
import { toFull } from '../geometry/scale.ts';
import type { Array3 } from '../array/array3.ts';
import { label } from '../array/components.ts';

export interface Candidate {
  /** Unique within one proposal (see proposeBoxes for how parents and children share ids). */
  readonly id: number;
  /** Full-resolution voxel box. */
  readonly box: Box;
  readonly score: number;
  readonly role: 'parent' | 'child';
  /** For children: id of the parent they were re-cropped from. */
  readonly parent?: number;
  /** For merged parents: ids of the pre-merge candidates, ascending. */
  readonly members?: readonly number[];
}

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

export type MatchMetric = 'iou' | 'ios';

/** 'auto': parents whose shape is ≤ cropThreshold on every axis stay whole, bigger ones are re-cropped. */
export type BoxMode = 'parents' | 'children' | 'auto';

export interface ProposeOptions extends ExtractOptions {
  nmsThreshold: number;
  nmmThreshold: number;
  /** Metric for both NMS and NMM unless overridden below. */
  metric: MatchMetric;
  nmsMetric?: MatchMetric;
  nmmMetric?: MatchMetric;
  mode: BoxMode;
  /** Shape of the children a parent is re-cropped into. */
  recropShape: Vec3;
  /** Largest parent kept whole in 'auto' mode. */
  cropThreshold: Vec3;
}

export interface Proposal {
  /** Extracted candidates before NMS (ids 0..n-1 in score order). */
  candidates: Candidate[];
  /** NMM parents: ids 0..P-1, members refer to candidate ids. */
  parents: Candidate[];
  /** Children re-cropped from parents: ids P..; `parent` refers to a parent id. */
  children: Candidate[];
  /** What goes to stage two, per mode. */
  boxes: Candidate[];
}

// ---------------------------------------------------------------------------------------------
// Ordering helpers

/** Lexicographic order on begin, then end. */
export function compareBoxes(a: Box, b: Box): number {
  for (let i = 0; i < 3; i++) if (a.begin[i] !== b.begin[i]) return a.begin[i] - b.begin[i];
  for (let i = 0; i < 3; i++) if (a.end[i] !== b.end[i]) return a.end[i] - b.end[i];
  return 0;
}

/** Score descending, then box, then id: a total order for candidates with distinct ids. */
export function byScore(a: Candidate, b: Candidate): number {
  if (a.score !== b.score) return b.score > a.score ? 1 : -1;
  return compareBoxes(a.box, b.box) || a.id - b.id;
}

export function matchScore(a: Box, b: Box, metric: MatchMetric): number {
  return metric === 'iou' ? iou(a, b) : intersectionOverSmaller(a, b);
}

/**
 * Starts of tiles of length `tile` covering [lo, hi) with the fewest tiles, spread evenly
 * from lo to hi - tile (nnU-Net's sliding-window steps with step size 1:
 * n = ceil(len / tile), start_i = lo + round(i · (len - tile) / (n - 1))). Consecutive tiles
 * overlap or abut, never leave a gap. When len ≤ tile: [lo] (callers centre the tile).
 */
export function tileStarts(lo: number, hi: number, tile: number): number[] {
  const len = hi - lo;
  if (!(tile > 0)) throw new RangeError(`tile length must be positive, got ${tile}`);
  if (len <= tile) return [lo];
  const n = Math.ceil(len / tile);
  const step = (len - tile) / (n - 1);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(i === n - 1 ? hi - tile : lo + Math.round(i * step));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Extraction

export function extractBoxes(heat: Array3, heatOrigin: Vec3, o: ExtractOptions): Candidate[] {
  const shape = heat.shape;
  if (shape[0] === 0 || shape[1] === 0 || shape[2] === 0) return [];
  const pd = o.priorDownsample.map((v) => Math.max(1, Math.round(v)));
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
    const v = o.pooling === 'max' ? maxv[c] : sum[c] / cnt[c];
    if (v > o.roiThreshold) mask[c] = 1;
  }
  const { labels, count } = label(mask, [NZ, NY, NX], 26);
  if (count === 0) return [];

  // Per-region bounding box (cells), mass, and cross-section counts.
  const lo = new Int32Array(3 * (count + 1)).fill(2 ** 30);
  const hi = new Int32Array(3 * (count + 1)).fill(-(2 ** 30));
  const mass = new Float64Array(count + 1);
  const needArea = o.areaThr > 1;
  const sections = needArea ? [new Int32Array((count + 1) * NZ), new Int32Array((count + 1) * NY), new Int32Array((count + 1) * NX)] : [];
  for (let z = 0, c = 0; z < NZ; z++) {
    for (let y = 0; y < NY; y++) {
      for (let x = 0; x < NX; x++, c++) {
        const l = labels[c];
        if (l === 0) continue;
        mass[l] += sum[c];
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

  const heatBox = box(heatOrigin, [heatOrigin[0] + Z, heatOrigin[1] + Y, heatOrigin[2] + X]);
  const voxelVolume = o.factor[0] * o.factor[1] * o.factor[2];
  const raw: Candidate[] = [];
  for (let l = 1; l <= count; l++) {
    let extent = 0;
    for (let a = 0; a < 3; a++) extent = Math.max(extent, hi[3 * l + a] - lo[3 * l + a]);
    if (extent < o.axisThr) continue;
    if (needArea) {
      let area = 0;
      for (let a = 0; a < 3; a++) {
        const n = nc[a];
        for (let s = 0; s < n; s++) area = Math.max(area, sections[a][l * n + s]);
      }
      if (area < o.areaThr) continue;
    }
    const low = intersect(
      box(
        [(c0[0] + lo[3 * l]) * pd[0], (c0[1] + lo[3 * l + 1]) * pd[1], (c0[2] + lo[3 * l + 2]) * pd[2]],
        [(c0[0] + hi[3 * l]) * pd[0], (c0[1] + hi[3 * l + 1]) * pd[1], (c0[2] + hi[3 * l + 2]) * pd[2]],
      ),
      heatBox,
    );
    const clipped = intersect(grow(toFull(low, o.factor), o.margin), o.bounds);
    if (isEmpty(clipped)) continue;
    raw.push({ id: 0, box: growTo(clipped, o.minShape, o.bounds), score: mass[l] * voxelVolume, role: 'parent' });
  }
  raw.sort((a, b) => byScore(a, b));
  return raw.map((c, i) => ({ ...c, id: i }));
}

// ---------------------------------------------------------------------------------------------
// NMS / NMM

/**
 * Greedy non-maximum suppression: in score order (byScore), keep a candidate unless it matches
 * an already kept one by more than `threshold`. Returns the kept candidates (ids unchanged)
 * in score order. threshold ≥ 1 keeps everything.
 */
export function nms(c: readonly Candidate[], threshold: number, metric: MatchMetric): Candidate[] {
  const sorted = [...c].sort(byScore);
  const kept: Candidate[] = [];
  for (const x of sorted) {
    if (kept.every((k) => matchScore(k.box, x.box, metric) <= threshold)) kept.push(x);
  }
  return kept;
}

interface Group {
  box: Box;
  score: number;
  members: number[];
}

function byGroup(a: Group, b: Group): number {
  if (a.score !== b.score) return b.score > a.score ? 1 : -1;
  return compareBoxes(a.box, b.box) || a.members[0] - b.members[0];
}

/**
 * Greedy non-maximum merging. In score order, the best remaining box takes every remaining box
 * whose match with its current merged box (the union of what it took so far) exceeds
 * `threshold`, re-scanning after each growth (so chains merge transitively as long as each
 * link matches the growing union). Passes repeat over the merged boxes until no two merge.
 * Returns parents: fresh ids 0..P-1 in score order, box = union of members, score = Σ member
 * scores, members = pre-merge ids (an input that already has members contributes those).
 */
export function nmm(c: readonly Candidate[], threshold: number, metric: MatchMetric): Candidate[] {
  let groups: Group[] = c.map((x) => ({
    box: x.box,
    score: x.score,
    members: x.members ? [...x.members].sort((a, b) => a - b) : [x.id],
  }));
  for (;;) {
    groups.sort(byGroup);
    const used = new Uint8Array(groups.length);
    const out: Group[] = [];
    for (let i = 0; i < groups.length; i++) {
      if (used[i]) continue;
      used[i] = 1;
      const g: Group = { box: groups[i].box, score: groups[i].score, members: [...groups[i].members] };
      for (let changed = true; changed;) {
        changed = false;
        for (let j = i + 1; j < groups.length; j++) {
          if (used[j] || !(matchScore(g.box, groups[j].box, metric) > threshold)) continue;
          used[j] = 1;
          g.box = union(g.box, groups[j].box);
          g.score += groups[j].score;
          g.members.push(...groups[j].members);
          changed = true;
        }
      }
      g.members.sort((a, b) => a - b);
      out.push(g);
    }
    const stable = out.length === groups.length;
    groups = out;
    if (stable) break;
  }
  groups.sort(byGroup);
  return groups.map((g, id) => ({ id, box: g.box, score: g.score, role: 'parent', members: g.members }));
}

// ---------------------------------------------------------------------------------------------
// Re-cropping

/**
 * Children of exactly `cropShape` covering the parent (clipped to `bounds` first) with the
 * fewest tiles per axis, spread evenly (tileStarts). Along an axis where the parent is
 * shorter than the crop, one tile is centred on it and shifted into bounds; where bounds are
 * shorter than the crop, the tile is clipped to bounds. Children are numbered firstId.. in
 * raster order (z, then y, then x), inherit the parent's score and name it as `parent`.
 */
export function recrop(parent: Candidate, cropShape: Vec3, bounds: Box, firstId: number): Candidate[] {
  const clipped = intersect(parent.box, bounds);
  const pb = isEmpty(clipped) ? parent.box : clipped;
  const axes: Array<Array<[number, number]>> = [];
  for (let a = 0; a < 3; a++) {
    const lo = pb.begin[a], hi = pb.end[a], crop = cropShape[a];
    const bl = bounds.begin[a], bh = bounds.end[a];
    if (bh - bl <= crop && lo >= bl && hi <= bh) axes.push([[bl, bh]]);
    else if (hi - lo <= crop) {
      let s = lo - Math.floor((crop - (hi - lo)) / 2);
      s = Math.max(bl, Math.min(s, bh - crop));
      axes.push([[s, s + crop]]);
    } else axes.push(tileStarts(lo, hi, crop).map((s): [number, number] => [s, s + crop]));
  }
  const out: Candidate[] = [];
  for (const [z0, z1] of axes[0]) {
    for (const [y0, y1] of axes[1]) {
      for (const [x0, x1] of axes[2]) {
        out.push({
          id: firstId + out.length,
          box: box([z0, y0, x0], [z1, y1, x1]),
          score: parent.score,
          role: 'child',
          parent: parent.id,
        });
      }
    }
  }
  return out;
}

function fitsWithin(b: Box, limit: Vec3): boolean {
  const s = shapeOf(b);
  return s[0] <= limit[0] && s[1] <= limit[1] && s[2] <= limit[2];
}

/**
 * The whole extract step: extractBoxes → nms → nmm → parents; children re-cropped from the
 * parents the mode asks for ('parents': none; 'children': every parent; 'auto': parents
 * bigger than cropThreshold on some axis). Parents have ids 0..P-1, children P.. so ids are
 * unique across both. `boxes` keeps parent order; in 'auto' a re-cropped parent is replaced
 * by its children in place.
 */
export function proposeBoxes(heat: Array3, heatOrigin: Vec3, o: ProposeOptions): Proposal {
  const candidates = extractBoxes(heat, heatOrigin, o);
  const kept = nms(candidates, o.nmsThreshold, o.nmsMetric ?? o.metric);
  const parents = nmm(kept, o.nmmThreshold, o.nmmMetric ?? o.metric);
  const children: Candidate[] = [];
  const boxes: Candidate[] = [];
  let nextId = parents.length;
  for (const p of parents) {
    const split = o.mode === 'children' || (o.mode === 'auto' && !fitsWithin(p.box, o.cropThreshold));
    if (!split) {
      boxes.push(p);
      continue;
    }
    const kids = recrop(p, o.recropShape, o.bounds, nextId);
    nextId += kids.length;
    children.push(...kids);
    boxes.push(...kids);
  }
  return { candidates, parents, children, boxes };
}
