// Select and order ("filter", "sort"): which candidate boxes go to stage two, and in which
// order (consecutive boxes share a canvas). A policy is an interface so a learned scorer
// (e.g. an ONNX model over pooled features, via SelectContext.features) plugs in without
// touching the rest. Pure and deterministic.
//
// Ownership (chunkWriteBox): a box belongs to the chunk whose write box holds its ANCHOR, the
// voxel floor((begin + end) / 2) — the box centre. Write boxes tile the volume, so every box
// (and every object, as chunks that both see an object near their border compute nearly the
// same box around it) is owned by exactly one chunk. The centre is used rather than the begin
// corner because boxes are grown and shifted at borders, which moves corners more than centres.
import { type Box, type Vec3, containsPoint, union } from '../geometry/box.ts';
import type { Candidate } from './boxes.ts';
import { byScore } from './boxes-order.ts';

export interface SelectContext {
  /** Keep only boxes whose anchor (floor of the centre) lies in this box. */
  chunkWriteBox?: Box;
  /** At most this many boxes (policies choose which; undefined = no limit). */
  maxBoxes?: number;
  /** Features of a candidate, for learned policies. */
  features?: (c: Candidate) => Float32Array;
}

export interface SelectPolicy {
  readonly name: string;
  /** The chosen boxes, in the order stage two should take them. */
  select(boxes: readonly Candidate[], ctx: SelectContext): Candidate[];
}

export type PolicyName = 'all' | 'score' | 'spatial';

/** The voxel holding the box centre: floor((begin + end) / 2) per axis. */
export function anchorOf(b: Box): Vec3 {
  return [
    Math.floor((b.begin[0] + b.end[0]) / 2),
    Math.floor((b.begin[1] + b.end[1]) / 2),
    Math.floor((b.begin[2] + b.end[2]) / 2),
  ];
}

export function ownedBy(c: Candidate, writeBox: Box): boolean {
  return containsPoint(writeBox, anchorOf(c.box));
}

function owned(boxes: readonly Candidate[], ctx: SelectContext): Candidate[] {
  const w = ctx.chunkWriteBox;
  return w ? boxes.filter((c) => ownedBy(c, w)) : [...boxes];
}

function limit(ctx: SelectContext, n: number): number {
  const m = ctx.maxBoxes;
  return m === undefined ? n : Math.max(0, Math.min(n, Math.floor(m)));
}

/** Every owned box, in the order given; maxBoxes keeps the first ones. */
export function allPolicy(): SelectPolicy {
  return {
    name: 'all',
    select(boxes, ctx) {
      const c = owned(boxes, ctx);
      return c.slice(0, limit(ctx, c.length));
    },
  };
}

/** Owned boxes by score descending (ties: box, then id); maxBoxes keeps the best. */
export function scorePolicy(): SelectPolicy {
  return {
    name: 'score',
    select(boxes, ctx) {
      const c = owned(boxes, ctx).sort(byScore);
      return c.slice(0, limit(ctx, c.length));
    },
  };
}

/** Chan's trick: is the most significant set bit of a lower than that of b? (a, b ≥ 0, < 2^31) */
function lessMsb(a: number, b: number): boolean {
  return a < b && a < (a ^ b);
}

/**
 * Morton (Z-order) comparison of non-negative integer points, z the most significant axis at
 * equal bit level; no key is built, so coordinates up to 2^31 work.
 */
export function mortonCompare(p: Vec3, q: Vec3): number {
  let axis = 0;
  let best = 0;
  for (let a = 0; a < 3; a++) {
    const x = p[a] ^ q[a];
    if (lessMsb(best, x)) {
      axis = a;
      best = x;
    }
  }
  return p[axis] - q[axis];
}

/** Per axis, each coordinate replaced by its rank among the distinct values (0, 1, …). */
function rankSpace(points: readonly Vec3[]): Vec3[] {
  const ranks = [0, 1, 2].map((a) => {
    const values = [...new Set(points.map((p) => p[a]))].sort((x, y) => x - y);
    return new Map(values.map((v, i) => [v, i]));
  });
  return points.map((p) => [ranks[0].get(p[0])!, ranks[1].get(p[1])!, ranks[2].get(p[2])!]);
}

/** Morton keys for points: rank space by default, else cells of `unit` from the smallest point. */
function mortonKeys(points: readonly Vec3[], unit?: Vec3): Array<{ cell: Vec3; off: Vec3 }> {
  const min = [0, 1, 2].map((a) => points.reduce((m, p) => Math.min(m, p[a]), Infinity));
  const off = points.map((p): Vec3 => [p[0] - min[0], p[1] - min[1], p[2] - min[2]]);
  const cells = unit
    ? off.map((p): Vec3 => [0, 1, 2].map((a) => Math.floor(p[a] / Math.max(1, unit[a]))) as unknown as Vec3)
    : rankSpace(points);
  return off.map((o, i) => ({ cell: cells[i], off: o }));
}

function byKey(a: { cell: Vec3; off: Vec3 }, b: { cell: Vec3; off: Vec3 }): number {
  return mortonCompare(a.cell, b.cell) || mortonCompare(a.off, b.off);
}

export interface SpatialOptions {
  /**
   * Cell size for the Morton order of groups (e.g. the slot shape). Default: rank space — each
   * anchor coordinate replaced by its rank among the distinct anchor coordinates along that
   * axis, which makes the order independent of spacing and anisotropy.
   */
  unit?: Vec3;
}

/**
 * Owned boxes ordered so spatial neighbours are consecutive. Boxes are grouped — children by
 * their parent, every other box alone — and groups are ordered by the Morton (Z-) order of
 * their anchors (anchor of the union of the group's boxes; see SpatialOptions for the
 * coordinates), then inside a group by the Morton order of the members' anchors in rank space
 * (for children on a lattice: their lattice indices, so 2×2×2 blocks of tiles are
 * consecutive). Ties: Morton order of exact anchors, then score, box and id. With maxBoxes
 * the best-scoring boxes are chosen first, then ordered.
 */
export function spatialPolicy(opts: SpatialOptions = {}): SelectPolicy {
  return {
    name: 'spatial',
    select(boxes, ctx) {
      let c = owned(boxes, ctx);
      const n = limit(ctx, c.length);
      if (n < c.length) c = c.sort(byScore).slice(0, n);
      if (c.length < 2) return c;
      const groups = new Map<string, Candidate[]>();
      c.forEach((x, i) => {
        const key = x.role === 'child' && x.parent !== undefined ? `p${x.parent}` : `b${x.id}:${i}`;
        const g = groups.get(key);
        if (g) g.push(x);
        else groups.set(key, [x]);
      });
      const ordered = [...groups.values()].map((g) => {
        const keys = mortonKeys(g.map((x) => anchorOf(x.box)));
        const members = g.map((x, i) => ({ x, k: keys[i] }))
          .sort((a, b) => byKey(a.k, b.k) || byScore(a.x, b.x))
          .map((m) => m.x);
        const u = members.reduce((acc, x) => union(acc, x.box), members[0].box);
        const best = [...members].sort(byScore)[0];
        return { members, anchor: anchorOf(u), best };
      });
      const gkeys = mortonKeys(ordered.map((g) => g.anchor), opts.unit);
      return ordered
        .map((g, i) => ({ g, k: gkeys[i] }))
        .sort((a, b) => byKey(a.k, b.k) || byScore(a.g.best, b.g.best))
        .flatMap((e) => e.g.members);
    },
  };
}

export function policyByName(name: PolicyName): SelectPolicy {
  switch (name) {
    case 'all': return allPolicy();
    case 'score': return scorePolicy();
    case 'spatial': return spatialPolicy();
    default: {
      const never: never = name;
      throw new RangeError(`unknown selection policy ${String(never)}`);
    }
  }
}
