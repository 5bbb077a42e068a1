// Jigsaw packing: boxes that are neighbours in the volume keep their relative placement, so a
// canvas holds a contiguous region of the volume (real context at the seams, no padding).
//
// Lattices. The children of one parent (same `parent`, same shape, distinct boxes) lie on a
// lattice: per axis, a sorted list of tile starts with a common tile length L (recrop spreads
// them evenly; they overlap or abut). Any other box is a one-tile lattice — or, with
// crop_and_resize, when it exceeds the largest slot block, the lattice of its
// cropThreshold-sized pieces (as grid would cut it, see pack-grid.ts).
//
// Blocks. Per axis, tiles are grouped greedily into runs of contiguous tiles whose span
// (first start to last end) fits the largest block of usable slots (slotGrid.maxBlock × slot).
// A block (one run per axis) whose tiles are all present becomes one item of
// k = ceil(span / slot) slots per axis: its region U (the tiles' union, grown around its middle
// to k × slot for context, shifted into bounds) is laid into the canvas unresized, as it lies
// in the volume. Inside the block, U is split between the tiles at the middles of their
// overlaps; each tile's placement has that cell as source and target (outer cells extend to
// U's faces as source and to the tile's own faces as target), so dests are disjoint and
// abut, every placement has the same offset dest − source, and targets cover every tile.
//
// Fallback to grid (pieceItem / gridItems): children whose lattice is invalid or whose tile
// is longer than the block limit, tiles of incomplete blocks, and boxes too big to place
// unresized (resize postprocess, or pieces still longer than the block limit).
import { type Vec3, box, shapeOf } from '../geometry/box.ts';
import type { Candidate } from './boxes.ts';
import { tileStarts } from './boxes-order.ts';
import { type PackOptions, type Placement, contextAxis, cutPoints, vec } from './pack-common.ts';
import { type SlotItem, gridItems, slotGrid } from './pack-grid.ts';

interface Lattice {
  len: Vec3;
  /** Tile starts per axis, ascending. */
  pos: [number[], number[], number[]];
  /** boxId per tile (raster over pos), -1 where absent. */
  ids: Int32Array;
  /** Candidate per tile, for the grid fallback of incomplete blocks (undefined: virtual piece). */
  tiles: Array<Candidate | undefined>;
}

function childLattice(children: readonly Candidate[]): Lattice | undefined {
  const len = shapeOf(children[0].box);
  for (const c of children) {
    const s = shapeOf(c.box);
    if (s[0] !== len[0] || s[1] !== len[1] || s[2] !== len[2]) return undefined;
  }
  const pos = [0, 1, 2].map((a) => [...new Set(children.map((c) => c.box.begin[a]))].sort((x, y) => x - y));
  const index = pos.map((p) => new Map(p.map((v, i) => [v, i])));
  const n = pos[0].length * pos[1].length * pos[2].length;
  const ids = new Int32Array(n).fill(-1);
  const tiles: Array<Candidate | undefined> = new Array(n);
  for (const c of children) {
    const t = (index[0].get(c.box.begin[0])! * pos[1].length + index[1].get(c.box.begin[1])!) * pos[2].length + index[2].get(c.box.begin[2])!;
    if (ids[t] !== -1) return undefined;
    ids[t] = c.id;
    tiles[t] = c;
  }
  return { len, pos: [pos[0], pos[1], pos[2]], ids, tiles };
}

function pieceLattice(c: Candidate, o: PackOptions): Lattice {
  const len: number[] = [];
  const pos: number[][] = [];
  for (let a = 0; a < 3; a++) {
    const lo = c.box.begin[a], hi = c.box.end[a], t = o.cropThreshold[a];
    if (hi - lo <= t) {
      len.push(hi - lo);
      pos.push([lo]);
    } else {
      len.push(t);
      pos.push(tileStarts(lo, hi, t));
    }
  }
  const n = pos[0].length * pos[1].length * pos[2].length;
  return { len: [len[0], len[1], len[2]], pos: [pos[0], pos[1], pos[2]], ids: new Int32Array(n).fill(c.id), tiles: new Array(n) };
}

/** Greedy runs [i0, i1] of contiguous tiles whose span fits maxSpan. */
function runs(pos: readonly number[], len: number, maxSpan: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let i = 0; i < pos.length;) {
    let j = i;
    while (j + 1 < pos.length && pos[j + 1] <= pos[j] + len && pos[j + 1] + len - pos[i] <= maxSpan) j++;
    out.push([i, j]);
    i = j + 1;
  }
  return out;
}

function blockItem(l: Lattice, block: Array<[number, number]>, cuts: number[][], o: PackOptions): SlotItem {
  const k = vec((a) => Math.ceil((l.pos[a][block[a][1]] + l.len[a] - l.pos[a][block[a][0]]) / o.slot[a]));
  const region = [0, 1, 2].map((a) => contextAxis(
    l.pos[a][block[a][0]], l.pos[a][block[a][1]] + l.len[a], k[a] * o.slot[a], o.bounds?.begin[a], o.bounds?.end[a],
  ));
  // Per axis and tile index: [source lo, source hi, target lo, target hi].
  const spans = [0, 1, 2].map((a) => {
    const [i0, i1] = block[a];
    const out: Array<[number, number, number, number]> = [];
    for (let i = i0; i <= i1; i++) {
      out.push([
        i === i0 ? region[a][0] : cuts[a][i],
        i === i1 ? region[a][1] : cuts[a][i + 1],
        i === i0 ? l.pos[a][i] : cuts[a][i],
        i === i1 ? l.pos[a][i] + l.len[a] : cuts[a][i + 1],
      ]);
    }
    return out;
  });
  const [ny, nx] = [l.pos[1].length, l.pos[2].length];
  return {
    slots: k,
    emit(canvas, origin) {
      const out: Placement[] = [];
      for (let i = block[0][0]; i <= block[0][1]; i++) {
        for (let j = block[1][0]; j <= block[1][1]; j++) {
          for (let m = block[2][0]; m <= block[2][1]; m++) {
            const s = [spans[0][i - block[0][0]], spans[1][j - block[1][0]], spans[2][m - block[2][0]]];
            out.push({
              boxId: l.ids[(i * ny + j) * nx + m],
              canvas,
              source: box(vec((a) => s[a][0]), vec((a) => s[a][1])),
              dest: box(vec((a) => origin[a] + s[a][0] - region[a][0]), vec((a) => origin[a] + s[a][1] - region[a][0])),
              resized: false,
              target: box(vec((a) => s[a][2]), vec((a) => s[a][3])),
            });
          }
        }
      }
      return out;
    },
  };
}

function latticeItems(l: Lattice, o: PackOptions, limit: Vec3): SlotItem[] {
  const r = [0, 1, 2].map((a) => runs(l.pos[a], l.len[a], limit[a]));
  const cuts = [0, 1, 2].map((a) => cutPoints(l.pos[a], l.len[a]));
  const [ny, nx] = [l.pos[1].length, l.pos[2].length];
  const items: SlotItem[] = [];
  for (const rz of r[0]) {
    for (const ry of r[1]) {
      for (const rx of r[2]) {
        const present: number[] = [];
        let complete = true;
        for (let i = rz[0]; i <= rz[1]; i++) {
          for (let j = ry[0]; j <= ry[1]; j++) {
            for (let m = rx[0]; m <= rx[1]; m++) {
              const t = (i * ny + j) * nx + m;
              if (l.ids[t] === -1) complete = false;
              else present.push(t);
            }
          }
        }
        if (complete) items.push(blockItem(l, [rz, ry, rx], cuts, o));
        else for (const t of present) items.push(...gridItems(l.tiles[t]!, o));
      }
    }
  }
  return items;
}

export function jigsawItems(boxes: readonly Candidate[], o: PackOptions): SlotItem[] {
  const { maxBlock } = slotGrid(o);
  const limit = vec((a) => maxBlock[a] * o.slot[a]);
  const fits = (len: Vec3) => len[0] <= limit[0] && len[1] <= limit[1] && len[2] <= limit[2];
  // Groups in order of first appearance: children by parent, every other box alone.
  const groups = new Map<string, Candidate[]>();
  boxes.forEach((c, i) => {
    const key = c.role === 'child' && c.parent !== undefined ? `p${c.parent}` : `b${i}`;
    const g = groups.get(key);
    if (g) g.push(c);
    else groups.set(key, [c]);
  });
  const items: SlotItem[] = [];
  for (const [key, g] of groups) {
    if (key.startsWith('p')) {
      const l = childLattice(g);
      if (l && fits(l.len)) items.push(...latticeItems(l, o, limit));
      else for (const c of g) items.push(...gridItems(c, o));
      continue;
    }
    const c = g[0];
    const single: Lattice = { len: shapeOf(c.box), pos: [[c.box.begin[0]], [c.box.begin[1]], [c.box.begin[2]]], ids: Int32Array.of(c.id), tiles: [c] };
    if (fits(single.len)) {
      items.push(...latticeItems(single, o, limit));
      continue;
    }
    if (o.postprocess === 'crop_and_resize') {
      const l = pieceLattice(c, o);
      if (fits(l.len)) {
        items.push(...latticeItems(l, o, limit));
        continue;
      }
    }
    items.push(...gridItems(c, o));
  }
  return items;
}
