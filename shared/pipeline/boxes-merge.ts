// Fragments → the boxes one chunk owns: the chunk-local NMM, the merger's work for boxes that
// cross chunk borders. The boxes task of chunk c sees the fragments of c and its 26 neighbours
// (N(c)) and nothing else, yet every object comes out exactly once, whole, and the same
// whatever the order of tasks:
//
// - Links: two fragments of one chunk link when their boxes match above the NMM threshold;
//   two fragments of neighbouring chunks link when they are one region (the stage-one block
//   that computed both says so), or, computed by different blocks, when their cells touch
//   (26-adjacent cell boxes): a region cut by a chunk border is joined back. Every link is between the same or adjacent
//   chunks, so what c cannot see can only reach c's components through N(c)'s outer shell.
// - A component (union-find over links) whose box fits `cropThreshold` is "small": it goes to
//   stage two whole, owned by the chunk holding its anchor (the centre voxel of its box).
//   Since io.chunk > cropThreshold + lattice/2 + 2·(margin + cell) (checked with the config),
//   a small component lies inside N(owner), so the owner sees all of it; a chunk that sees
//   only part of a larger component always sees a part bigger than cropThreshold. So small
//   components are emitted once, whole, and large ones are recognised as large by every chunk.
// - Large components (and every component in 'children' mode) are the bounded case of a merge
//   that keeps growing across chunks: they are never united into one box. Instead they are
//   covered by tiles of a lattice aligned to the volume origin (`latticeOf`), each tile owned by
//   the chunk holding its anchor and emitted when a cell of a large component needs it (the
//   fragment lists its cells' tiles, boxes-fragments.ts; so the tiles of an object do not depend
//   on how chunks cut it). Any number of chunks can share an object; each tiles its own part,
//   and the tiles of neighbours abut without gaps or overlaps.
// Pure; deterministic (fixed orders everywhere, no dependence on input order).
import { type Box, type Vec3, containsPoint, grow, growTo, intersect, isEmpty, shapeOf, union } from '../geometry/box.ts';
import type { Candidate, BoxMode, MatchMetric } from './boxes.ts';
import { matchScore } from './boxes.ts';
import { compareBoxes } from './boxes-order.ts';
import { type Fragment, byFragment, latticeOf, tileBox, tilesMeeting } from './boxes-fragments.ts';
import { anchorOf } from './select.ts';

export interface MergeOptions {
  nmmThreshold: number;
  metric: MatchMetric;
  mode: BoxMode;
  recrop: Vec3;
  cropThreshold: Vec3;
  /** Whole boxes are grown to at least this shape (the stage-two crop), as extractBoxes does. */
  minShape: Vec3;
  /** The volume: tiles are clipped to it. */
  bounds: Box;
  /**
   * Voxels around the owner beyond which no fragment can change what it owns (see
   * tasks/graph.ts mergeReach); fragments farther away are not looked at. Undefined: all are.
   */
  reach?: Vec3;
}

/**
 * A box the chunk owns. Lattice tiles carry no `parent`: which tiles belong to one object is
 * not known the same way by every chunk, and the order of boxes must not depend on the chunking
 * (the spatial policy keeps neighbouring tiles together by their position anyway).
 */
export type OwnedBox = Candidate;

function sameChunk(a: Fragment, b: Fragment): boolean {
  return a.chunk[0] === b.chunk[0] && a.chunk[1] === b.chunk[1] && a.chunk[2] === b.chunk[2];
}

function touches(a: Box, b: Box): boolean {
  for (let k = 0; k < 3; k++) if (a.begin[k] > b.end[k] || b.begin[k] > a.end[k]) return false;
  return true;
}

function sameBlock(a: Fragment, b: Fragment): boolean {
  return a.block[0] === b.block[0] && a.block[1] === b.block[1] && a.block[2] === b.block[2];
}

/** `grown`: the fragments' boxes grown to the crop shape, as NMM compares them. */
function linked(a: Fragment, b: Fragment, ga: Box, gb: Box, o: MergeOptions): boolean {
  if (sameChunk(a, b)) return matchScore(ga, gb, o.metric) > o.nmmThreshold;
  // One block computed both: it knows whether they are one region. Otherwise their cells
  // touching across the border is the best evidence there is.
  if (sameBlock(a, b)) return a.region === b.region && touches(a.cells, b.cells);
  return touches(a.cells, b.cells);
}

/** Could the two be linked at all: grown boxes overlapping, or cells touching, along `axis`? */
function near(ga: Box, gb: Box, a: Fragment, b: Fragment, axis: number): boolean {
  return (ga.begin[axis] < gb.end[axis] && gb.begin[axis] < ga.end[axis])
    || (a.cells.begin[axis] <= b.cells.end[axis] && b.cells.begin[axis] <= a.cells.end[axis]);
}

function fits(b: Box, limit: Vec3): boolean {
  const s = shapeOf(b);
  return s[0] <= limit[0] && s[1] <= limit[1] && s[2] <= limit[2];
}

/** Components of the link graph: sort-and-sweep along z (never all pairs), union-find. */
export function components(fragments: readonly Fragment[], o: MergeOptions): Fragment[][] {
  const f = [...fragments].sort(byFragment);
  const parent = f.map((_, i) => i);
  const find = (i: number): number => {
    while (parent[i] !== i) i = parent[i] = parent[parent[i]];
    return i;
  };
  // Sweep along z: a fragment's interval covers its grown box and its cells grown by one (two
  // unit systems, voxels and cells: the union of both intervals is a superset of each, so no
  // linkable pair is missed); pairs whose intervals meet are tested on y and x before `linked`.
  const grown = f.map((x) => growTo(x.box, o.minShape, o.bounds));
  const lo = f.map((x, i) => Math.min(grown[i].begin[0], x.cells.begin[0] - 1));
  const hi = f.map((x, i) => Math.max(grown[i].end[0], x.cells.end[0] + 1));
  const byLo = f.map((_, i) => i).sort((i, j) => lo[i] - lo[j] || i - j);
  let active: number[] = [];
  for (const i of byLo) {
    active = active.filter((k) => hi[k] >= lo[i]);
    for (const j of active) {
      if (!near(grown[i], grown[j], f[i], f[j], 1) || !near(grown[i], grown[j], f[i], f[j], 2)) continue;
      if (!linked(f[i], f[j], grown[i], grown[j], o)) continue;
      const a = find(i), b = find(j);
      if (a !== b) parent[Math.max(a, b)] = Math.min(a, b);
    }
    active.push(i);
  }
  const groups = new Map<number, Fragment[]>();
  f.forEach((x, i) => {
    const r = find(i);
    const g = groups.get(r);
    if (g) g.push(x);
    else groups.set(r, [x]);
  });
  return [...groups.values()];
}

/** The boxes chunk `owner` (its write box) owns, from the fragments of its neighbourhood; ids 0.. in box order. */
export function mergeFragments(fragments: readonly Fragment[], owner: Box, o: MergeOptions): OwnedBox[] {
  const parents: Array<{ box: Box; score: number }> = [];
  const tiles = new Map<string, { box: Box; score: number }>();
  const lattice = latticeOf(o);
  // Only the shell around the owner matters: a component that matters to it lies inside, or
  // shows a part bigger than cropThreshold inside (which classifies it as large all the same).
  const shell = o.reach ? grow(owner, o.reach) : undefined;
  const near = shell ? fragments.filter((f) => !isEmpty(intersect(f.box, shell))) : fragments;
  for (const comp of components(near, o)) {
    const u = growTo(comp.reduce((acc, x) => union(acc, x.box), comp[0].box), o.minShape, o.bounds);
    let score = 0;
    for (const x of comp) score += x.score;
    if (o.mode !== 'children' && fits(u, o.cropThreshold)) {
      if (containsPoint(owner, anchorOf(u))) parents.push({ box: u, score });
      continue;
    }
    for (const x of comp) {
      for (const t of ownedTiles(x.tiles, lattice, owner, o.bounds)) {
        const key = t.begin.join(',');
        const prev = tiles.get(key);
        if (!prev || score > prev.score) tiles.set(key, { box: t, score });
      }
    }
  }
  const out = [
    ...parents.map((p) => ({ box: p.box, score: p.score, role: 'parent' as const })),
    ...[...tiles.values()].map((t) => ({ box: t.box, score: t.score, role: 'child' as const })),
  ];
  return out.sort(byBox).map((b, id) => ({ ...b, id }));
}

/** Box, then score descending: a total order that does not depend on how boxes were found. */
export function byBox(a: Pick<Candidate, 'box' | 'score'>, b: Pick<Candidate, 'box' | 'score'>): number {
  return compareBoxes(a.box, b.box) || (b.score - a.score);
}

/** The tiles of `indices` (as `Fragment.tiles`), clipped to `bounds`, whose anchor lies in `owner`. */
export function ownedTiles(indices: readonly number[], lattice: Vec3, owner: Box, bounds: Box): Box[] {
  const out: Box[] = [];
  for (let k = 0; k + 2 < indices.length; k += 3) {
    const t = tileBox([indices[k], indices[k + 1], indices[k + 2]], lattice, bounds);
    if (!isEmpty(t) && containsPoint(owner, anchorOf(t))) out.push(t);
  }
  return out;
}

/** Lattice tiles (origin-aligned, clipped to `bounds`) that meet `b` and whose anchor lies in `owner`. */
export function latticeTiles(b: Box, lattice: Vec3, owner: Box, bounds: Box): Box[] {
  return ownedTiles(tilesMeeting(b, lattice), lattice, owner, bounds);
}
