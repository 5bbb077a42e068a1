// Fragments → the boxes one stage-one block owns: NMS, NMM and re-cropping over whole regions,
// the merger's work for boxes crossing chunk and block borders. The boxes task of a block sees
// the fragments of the blocks within `boxesReach` of it (and the contacts between their
// borders) and nothing else, yet decides every box it owns exactly as if one block held the
// whole volume, whatever the task order:
//
// - Regions: fragments joined where their cells touch across a block face, edge or corner
//   (exact cell adjacency, from the blocks' borders). A region's box is the union of its
//   fragments' boxes grown to the crop shape; its score the sum of theirs.
// - Small regions (the grown box fits `cropThreshold`) go through NMS and NMM as whole boxes:
//   - NMS is Fast NMS (Bolya et al., YOLACT): a region is dropped when a region with a higher
//     score (ties: the smaller id) matches it above `nmsThreshold` — whether or not that one is
//     kept. Greedy NMS would keep a region whose suppressor was itself suppressed, a chain that
//     can reach anywhere; this rule is decided by a region's neighbours alone, in any order.
//   - NMM links the kept small regions that match above `nmmThreshold`; a component (union-find
//     over links) whose grown union fits `cropThreshold` is one box, owned by the block holding
//     its anchor (the centre voxel of its box).
// - Everything else — large regions, components grown past `cropThreshold`, every component in
//   'children' mode — is covered by tiles of a lattice aligned to the volume origin (`latticeOf`),
//   each tile owned by the block holding its anchor and emitted when a cell of such a region
//   needs it (fragments list their cells' tiles, boxes-fragments.ts). Large regions take no part
//   in NMS or NMM: their tiles cover their cells, and a box-level test against their bounding
//   box would drop or join regions their tiles never cover.
//
// Why the view suffices (graph.ts boxesReach: 4·cropThreshold + tile + 2·(margin + cell) per
// axis): a box or tile the block owns depends on regions within cropThreshold of it, on their
// suppressors and link partners within one more, on those partners' suppressors within one
// more; a region cut by the view's edge reaches at least the reach from the block, so its visible
// part alone exceeds cropThreshold and it is (rightly) taken as large.
// Pure; deterministic (fixed orders everywhere, no dependence on input order).
import { type Box, type Vec3, containsPoint, growTo, shapeOf, union } from '../geometry/box.ts';
import type { Candidate, BoxMode, MatchMetric } from './boxes.ts';
import { matchScore } from './boxes.ts';
import { compareBoxes } from './boxes-order.ts';
import { type Fragment, latticeOf, tileBox } from './boxes-fragments.ts';
import { anchorOf } from './select.ts';
import { IdIndex } from './merge.ts';

export interface MergeOptions {
  nmsThreshold: number;
  nmmThreshold: number;
  metric: MatchMetric;
  mode: BoxMode;
  recrop: Vec3;
  cropThreshold: Vec3;
  /** Whole boxes are grown to at least this shape (the stage-two crop), as extractBoxes does. */
  minShape: Vec3;
  /** The volume: boxes and tiles are clipped to it. */
  bounds: Box;
}

/**
 * A box the block owns. Lattice tiles carry no `parent`: which tiles belong to one object is
 * not known the same way by every block, and the order of boxes must not depend on the chunking
 * (the spatial policy keeps neighbouring tiles together by their position anyway).
 */
export type OwnedBox = Candidate;

/** A whole region (or the part of one the view holds). */
interface Region {
  id: number;
  /** Union of its fragments' boxes, and that grown to the crop shape. */
  box: Box;
  grown: Box;
  score: number;
  members: Fragment[];
  small: boolean;
}

function fits(b: Box, limit: Vec3): boolean {
  const s = shapeOf(b);
  return s[0] <= limit[0] && s[1] <= limit[1] && s[2] <= limit[2];
}

/** Union-find over indices, the smaller index the root; `sets` groups items by their set, in first-member order. */
function unionFind(n: number): { find: (i: number) => number; join: (a: number, b: number) => void; sets: <T>(items: readonly T[]) => T[][] } {
  const parent = new Int32Array(n);
  for (let i = 0; i < n; i++) parent[i] = i;
  const find = (i: number): number => {
    while (parent[i] !== i) i = parent[i] = parent[parent[i]];
    return i;
  };
  return {
    find,
    join: (a, b) => {
      const ra = find(a), rb = find(b);
      if (ra !== rb) parent[Math.max(ra, rb)] = Math.min(ra, rb);
    },
    sets: (items) => {
      const groups = new Map<number, (typeof items)[number][]>();
      items.forEach((x, i) => {
        const r = find(i);
        const g = groups.get(r);
        if (g) g.push(x);
        else groups.set(r, [x]);
      });
      return [...groups.values()];
    },
  };
}

/** Fragments → regions: joined by the contacts between blocks ([a0, b0, …] fragment ids; pairs naming a fragment outside the view are ignored). */
function regionsOf(fragments: readonly Fragment[], contacts: Float64Array, o: MergeOptions): Region[] {
  const f = [...fragments].sort((a, b) => a.id - b.id);
  const at = new IdIndex(f.length);
  f.forEach((x, i) => { if (!at.add(x.id, i)) throw new RangeError(`fragment ${x.id} is given twice`); });
  const uf = unionFind(f.length);
  for (let k = 0; k + 1 < contacts.length; k += 2) {
    const a = at.get(contacts[k]), b = at.get(contacts[k + 1]);
    if (a >= 0 && b >= 0) uf.join(a, b);
  }
  return uf.sets(f).map((members) => {
    let b = members[0].box;
    let score = 0;
    for (const m of members) { b = union(b, m.box); score += m.score; }
    const grown = growTo(b, o.minShape, o.bounds);
    return { id: members[0].id, box: b, grown, score, members, small: fits(grown, o.cropThreshold) };
  });
}

/**
 * Pairs of boxes that overlap, by a sweep along z (never all pairs): calls `f(i, j)` with i < j
 * for every pair whose boxes meet (share volume).
 */
function overlapping(boxes: readonly Box[], f: (i: number, j: number) => void): void {
  const order = boxes.map((_, i) => i).sort((i, j) => boxes[i].begin[0] - boxes[j].begin[0] || i - j);
  let active: number[] = [];
  for (const i of order) {
    const b = boxes[i];
    active = active.filter((k) => boxes[k].end[0] > b.begin[0]);
    for (const k of active) {
      const c = boxes[k];
      if (c.begin[1] < b.end[1] && b.begin[1] < c.end[1] && c.begin[2] < b.end[2] && b.begin[2] < c.end[2]) f(Math.min(i, k), Math.max(i, k));
    }
    active.push(i);
  }
}

/** Fast NMS over small regions: which survive (a region is dropped when a better one matches it above the threshold). */
function fastNms(small: readonly Region[], o: MergeOptions): boolean[] {
  const kept = small.map(() => true);
  if (o.nmsThreshold >= 1) return kept;
  const better = (a: Region, b: Region) => a.score > b.score || (a.score === b.score && a.id < b.id);
  overlapping(small.map((r) => r.grown), (i, j) => {
    if (!(matchScore(small[i].grown, small[j].grown, o.metric) > o.nmsThreshold)) return;
    kept[better(small[i], small[j]) ? j : i] = false;
  });
  return kept;
}

/** NMM: components of the kept small regions linked by a match above the threshold. */
function nmmComponents(kept: readonly Region[], o: MergeOptions): Region[][] {
  const uf = unionFind(kept.length);
  if (o.nmmThreshold < 1) {
    overlapping(kept.map((r) => r.grown), (i, j) => {
      if (matchScore(kept[i].grown, kept[j].grown, o.metric) > o.nmmThreshold) uf.join(i, j);
    });
  }
  return uf.sets(kept);
}

/** The boxes block `owner` (its write box) owns, from the fragments and contacts of its view; ids 0.. in box order. */
export function mergeFragments(fragments: readonly Fragment[], contacts: Float64Array, owner: Box, o: MergeOptions): OwnedBox[] {
  const regions = regionsOf(fragments, contacts, o);
  const small = regions.filter((r) => r.small).sort((a, b) => a.id - b.id);
  const survives = fastNms(small, o);
  const parents: Array<{ box: Box; score: number }> = [];
  const tiles = new Map<string, { box: Box; score: number }>();
  const lattice = latticeOf(o);
  const tile = (members: readonly Region[], score: number) => {
    for (const r of members) {
      for (const x of r.members) {
        for (const t of ownedTiles(x.tiles, lattice, owner, o.bounds)) {
          const key = t.begin.join(',');
          const prev = tiles.get(key);
          if (!prev || score > prev.score) tiles.set(key, { box: t, score });
        }
      }
    }
  };
  for (const comp of nmmComponents(small.filter((_, i) => survives[i]), o)) {
    const u = growTo(comp.reduce((acc, r) => union(acc, r.box), comp[0].box), o.minShape, o.bounds);
    let score = 0;
    for (const r of comp) score += r.score;
    if (o.mode !== 'children' && fits(u, o.cropThreshold)) {
      if (containsPoint(owner, anchorOf(u))) parents.push({ box: u, score });
    } else tile(comp, score);
  }
  for (const r of regions) if (!r.small) tile([r], r.score);
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
    if (t.end[0] > t.begin[0] && t.end[1] > t.begin[1] && t.end[2] > t.begin[2] && containsPoint(owner, anchorOf(t))) out.push(t);
  }
  return out;
}
