// Heatmap → boxes ("extract"): boxes-extract.ts pools the stage-one heatmap into cells and turns
// regions into candidates (the definitions of cells, roi_threshold, axis_thr, area_thr and
// score are documented there); this module de-duplicates them (NMS), merges them (NMM) into
// parents and re-crops parents into fixed-size children. Pure: data in, data out;
// deterministic whatever the order of candidates handed to nms/nmm.
import { type Box, type Vec3, box, intersect, intersectionOverSmaller, iou, isEmpty, shapeOf, union } from '../geometry/box.ts';
import type { Array3 } from '../array/array3.ts';
import { type ExtractOptions, extractBoxes } from './boxes-extract.ts';
import { byScore, compareBoxes, tileStarts } from './boxes-order.ts';

export { type ExtractOptions, extractBoxes } from './boxes-extract.ts';
export { byScore, compareBoxes, tileStarts } from './boxes-order.ts';

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

export function matchScore(a: Box, b: Box, metric: MatchMetric): number {
  return metric === 'iou' ? iou(a, b) : intersectionOverSmaller(a, b);
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

/** What refineBoxes needs: NMS, NMM, the box mode and re-cropping. */
export type RefineOptions = Pick<ProposeOptions, 'nmsThreshold' | 'nmmThreshold' | 'metric' | 'nmsMetric' | 'nmmMetric' | 'mode' | 'recropShape' | 'cropThreshold' | 'bounds'>;

/**
 * Candidates → nms → nmm → parents; children re-cropped from the parents the mode asks for
 * ('parents': none; 'children': every parent; 'auto': parents bigger than cropThreshold on
 * some axis). Parents have ids 0..P-1, children P.. so ids are unique across both. `boxes`
 * keeps parent order; in 'auto' a re-cropped parent is replaced by its children in place.
 * Runs on one chunk's candidates or on the candidates of every chunk at once (the embedded
 * and distributed runners merge chunk fragments with it).
 */
export function refineBoxes(candidates: readonly Candidate[], o: RefineOptions): Proposal {
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
  return { candidates: [...candidates], parents, children, boxes };
}

/** The whole extract step on one heatmap: extractBoxes → refineBoxes. */
export function proposeBoxes(heat: Array3, heatOrigin: Vec3, o: ProposeOptions): Proposal {
  return refineBoxes(extractBoxes(heat, heatOrigin, o), o);
}
