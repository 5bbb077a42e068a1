// Heatmap → fragments: the chunk-local half of "extract". Stage one runs on a block of chunks
// (with a halo of context); its heatmap is pooled into cells and cut into regions exactly as
// extractBoxes does (same cells, roi_threshold, axis_thr, area_thr, score; see
// boxes-extract.ts), and then every region is split by the chunks that own its cells. A cell
// belongs to the chunk whose low-resolution write box holds the cell's first voxel, so the
// fragments of all chunks partition the foreground cells of the volume: no cell is in two
// fragments, whatever block computed it. The boxes task (boxes-merge.ts) joins fragments of
// neighbouring chunks back into whole objects.
//
// A fragment also lists the lattice tiles its cells need if its object turns out to be large
// (re-cropped into tiles, boxes-merge.ts): the tiles that each cell's own box (cell → full
// resolution, grown by the margin, clipped to the volume) meets. Computed cell by cell, the
// union over an object's fragments is the same however chunks cut the object; the tiles that
// meet each fragment's bounding box would not be (two chunkings bound different empty corners of
// an L-shaped object). Pure.
import { type Box, type Vec3, box, boxOfShape, growTo, intersect } from '../geometry/box.ts';
import type { Array3 } from '../array/array3.ts';
import { label } from '../array/components.ts';
import { type ExtractOptions, cellShape, cellsToBox, poolCells, regionStats } from './boxes-extract.ts';
import { type MatchMetric, matchScore } from './boxes.ts';
import { compareBoxes } from './boxes-order.ts';

export interface Fragment {
  /** Absolute index of the chunk that owns the fragment's cells. */
  readonly chunk: Vec3;
  /** The fragment's cells, in global cell coordinates (cell i covers stage-one voxels [i·pd, (i+1)·pd)). */
  readonly cells: Box;
  /**
   * Full-resolution box: cells → full resolution, grown by the margin, clipped to the volume (as
   * extractBoxes, but not yet grown to the crop shape: a whole object is, once its fragments
   * are joined; a sliver of an object at a chunk border grown to a crop would cover too much).
   */
  readonly box: Box;
  /** Heatmap mass of the fragment's cells in full-resolution voxels (extractBoxes' score). */
  readonly score: number;
  /**
   * The region the fragment is part of, as seen by the stage-one block that computed it
   * (`block`, the block's index; `region`, the region's label there): two fragments of one
   * region in neighbouring chunks of one block are one object, known exactly.
   */
  readonly block: Vec3;
  readonly region: number;
  /**
   * Lattice tiles (`latticeOf`) its cells need when its object is tiled: tile indices as flat
   * [z, y, x, z, y, x, …] triples in z, y, x order (tile t covers [t·lattice, (t+1)·lattice)).
   */
  readonly tiles: readonly number[];
}

/** The re-crop lattice: 'parents' mode tiles objects too large to go whole by cropThreshold, the others by recrop. */
export function latticeOf(o: { mode: string; recrop: Vec3; cropThreshold: Vec3 }): Vec3 {
  return o.mode === 'parents' ? o.cropThreshold : o.recrop;
}

/** Tile `t` of the lattice, clipped to `bounds` (may be empty). */
export function tileBox(t: Vec3, lattice: Vec3, bounds: Box): Box {
  return intersect(box(
    [t[0] * lattice[0], t[1] * lattice[1], t[2] * lattice[2]],
    [(t[0] + 1) * lattice[0], (t[1] + 1) * lattice[1], (t[2] + 1) * lattice[2]],
  ), bounds);
}

/** Indices of the lattice tiles meeting `b`, as `Fragment.tiles` lists them (for a fragment whose cells fill its box). */
export function tilesMeeting(b: Box, lattice: Vec3): number[] {
  const out: number[] = [];
  const lo = [0, 1, 2].map((a) => Math.floor(b.begin[a] / lattice[a]));
  const hi = [0, 1, 2].map((a) => Math.ceil(b.end[a] / lattice[a]));
  for (let z = lo[0]; z < hi[0]; z++) for (let y = lo[1]; y < hi[1]; y++) for (let x = lo[2]; x < hi[2]; x++) out.push(z, y, x);
  return out;
}

/** The tiles of one fragment, gathered cell by cell: `add` takes a cell's tile range [lo, hi) per axis. */
export class TileSet {
  private readonly keys = new Set<number>();
  constructor(private readonly count: Vec3) {}

  add(z: readonly [number, number], y: readonly [number, number], x: readonly [number, number]): void {
    const [, ny, nx] = this.count;
    for (let tz = z[0]; tz < z[1]; tz++) for (let ty = y[0]; ty < y[1]; ty++) for (let tx = x[0]; tx < x[1]; tx++) {
      this.keys.add((tz * ny + ty) * nx + tx);
    }
  }

  list(): number[] {
    const [, ny, nx] = this.count;
    const out: number[] = [];
    for (const k of [...this.keys].sort((p, q) => p - q)) out.push(Math.floor(k / (ny * nx)), Math.floor(k / nx) % ny, k % nx);
    return out;
  }
}

/** How many lattice tiles cover `bounds` along each axis (the key space of TileSet). */
export function tileCount(bounds: Box, lattice: Vec3): Vec3 {
  return [0, 1, 2].map((a) => Math.max(1, Math.ceil(bounds.end[a] / lattice[a]))) as unknown as Vec3;
}

/** The tile range [lo, hi) along one axis of the full-resolution interval [b, e) (empty: [0, 0]). */
export function tileRange(b: number, e: number, tile: number): [number, number] {
  return e <= b ? [0, 0] : [Math.floor(b / tile), Math.ceil(e / tile)];
}

/** One chunk of the block: its index and its write box at stage-one resolution. */
export interface OwnerChunk {
  readonly index: Vec3;
  readonly low: Box;
}

export interface FragmentOptions extends ExtractOptions {
  /** Non-maximum suppression among the fragments of one chunk (research key `nms`). */
  nmsThreshold: number;
  metric: MatchMetric;
  /** The stage-one volume (cells are clipped to it before mapping to full resolution). */
  lowVolume: Vec3;
  /** The re-crop lattice (`latticeOf`), for `Fragment.tiles`. */
  lattice: Vec3;
}

/**
 * Fragments of every chunk in `owners` (the chunks of one stage-one block) from the heatmap of
 * the block and its halo (`heat`, whose first voxel is `heatOrigin` in stage-one voxels).
 * Returns, per owner in the given order, its fragments sorted by box (then score).
 */
export function extractFragments(
  heat: Array3, heatOrigin: Vec3, owners: readonly OwnerChunk[], block: Vec3, o: FragmentOptions,
): Fragment[][] {
  const out: Fragment[][] = owners.map(() => []);
  const shape = heat.shape;
  if (shape[0] === 0 || shape[1] === 0 || shape[2] === 0 || owners.length === 0) return out;
  const pd = cellShape(o.priorDownsample);
  const { c0, nc, sum, mask } = poolCells(heat, heatOrigin, pd, o.pooling, o.roiThreshold);
  const { labels, count } = label(mask, nc, 26);
  if (count === 0) return out;
  // The region filters look at whole regions (as far as the block and its halo see them).
  const { keep } = regionStats(labels, count, nc, o.axisThr, o.areaThr);

  // The owner of a cell, per axis: the position (in the sorted distinct owner coordinates) of
  // the owner whose low write box holds the cell's first voxel, or -1 outside the block.
  const axisOwners = [0, 1, 2].map((a) => {
    const values = [...new Map(owners.map((w) => [w.index[a], w.low])).entries()].sort((p, q) => p[0] - q[0]);
    const m = new Int32Array(nc[a]);
    for (let i = 0; i < nc[a]; i++) {
      const first = (c0[a] + i) * pd[a];
      m[i] = values.findIndex(([, low]) => first >= low.begin[a] && first < low.end[a]);
    }
    return { coords: values.map((v) => v[0]), map: m };
  });
  const ownerPos = new Map(owners.map((w, i) => [w.index.join(','), i]));
  // Per axis, the tile range a cell's box meets: cellsToBox's mapping, one axis at a time.
  const lowVol = boxOfShape(o.lowVolume);
  const cellTiles = [0, 1, 2].map((a) => {
    const r: Array<[number, number]> = [];
    for (let i = 0; i < nc[a]; i++) {
      const lb = Math.max((c0[a] + i) * pd[a], lowVol.begin[a]);
      const le = Math.min((c0[a] + i + 1) * pd[a], lowVol.end[a]);
      const fb = Math.max(Math.floor(lb * o.factor[a]) - o.margin[a], o.bounds.begin[a]);
      const fe = Math.min(Math.ceil(le * o.factor[a]) + o.margin[a], o.bounds.end[a]);
      r.push(le <= lb ? [0, 0] : tileRange(fb, fe, o.lattice[a]));
    }
    return r;
  });
  const tileN = tileCount(o.bounds, o.lattice);
  const n = axisOwners.map((x) => x.coords.length);

  // One fragment per (region, owner): cell box and mass.
  const frag = new Map<number, { lo: number[]; hi: number[]; mass: number; owner: number; region: number; tiles: TileSet }>();
  for (let z = 0, c = 0; z < nc[0]; z++) {
    const oz = axisOwners[0].map[z];
    for (let y = 0; y < nc[1]; y++) {
      const oy = axisOwners[1].map[y];
      for (let x = 0; x < nc[2]; x++, c++) {
        const l = labels[c];
        if (l === 0 || !keep[l]) continue;
        const ox = axisOwners[2].map[x];
        if (oz < 0 || oy < 0 || ox < 0) continue;
        const key = ((l * n[0] + oz) * n[1] + oy) * n[2] + ox;
        let f = frag.get(key);
        if (!f) {
          const pos = ownerPos.get(`${axisOwners[0].coords[oz]},${axisOwners[1].coords[oy]},${axisOwners[2].coords[ox]}`);
          if (pos === undefined) continue;
          f = { lo: [z, y, x], hi: [z + 1, y + 1, x + 1], mass: 0, owner: pos, region: l, tiles: new TileSet(tileN) };
          frag.set(key, f);
        }
        const p = [z, y, x];
        for (let a = 0; a < 3; a++) {
          if (p[a] < f.lo[a]) f.lo[a] = p[a];
          if (p[a] + 1 > f.hi[a]) f.hi[a] = p[a] + 1;
        }
        f.mass += sum[c];
        f.tiles.add(cellTiles[0][z], cellTiles[1][y], cellTiles[2][x]);
      }
    }
  }

  const voxelVolume = o.factor[0] * o.factor[1] * o.factor[2];
  for (const f of frag.values()) {
    const cells = box(
      [c0[0] + f.lo[0], c0[1] + f.lo[1], c0[2] + f.lo[2]],
      [c0[0] + f.hi[0], c0[1] + f.hi[1], c0[2] + f.hi[2]],
    );
    const b = cellsToBox(cells, pd, lowVol, { ...o, minShape: [0, 0, 0] });
    if (b) out[f.owner].push({ chunk: owners[f.owner].index, cells, box: b, score: f.mass * voxelVolume, block, region: f.region, tiles: f.tiles.list() });
  }
  return out.map((list) => suppress(list.sort(byFragment), o));
}

/** Box, then score descending: the fixed order fragments are stored and merged in. */
export function byFragment(a: Fragment, b: Fragment): number {
  return compareBoxes(a.box, b.box) || compareBoxes(a.cells, b.cells) || (b.score - a.score) || (a.region - b.region);
}

/** Greedy NMS among one chunk's fragments (boxes grown to the crop, as extractBoxes'), best score first; keeps `list`'s order. */
function suppress(list: Fragment[], o: FragmentOptions): Fragment[] {
  if (o.nmsThreshold >= 1 || list.length < 2) return list;
  const grown = list.map((f) => growTo(f.box, o.minShape, o.bounds));
  const order = list.map((_, i) => i).sort((i, j) => (list[j].score - list[i].score) || (i - j));
  const kept: number[] = [];
  for (const i of order) {
    if (kept.every((k) => matchScore(grown[k], grown[i], o.metric) <= o.nmsThreshold)) kept.push(i);
  }
  kept.sort((i, j) => i - j);
  return kept.map((i) => list[i]);
}
