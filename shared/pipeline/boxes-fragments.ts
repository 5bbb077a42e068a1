// Heatmap → fragments: the block-local half of "extract". Stage one runs on a block of chunks
// (with a halo of context); its heatmap is pooled into cells and thresholded exactly as
// extractBoxes defines it (same cells, roi_threshold, axis_thr, area_thr, score; see
// boxes-extract.ts). A cell belongs to the block whose low-resolution write box holds the cell's
// first voxel, so the blocks partition the cells; a *fragment* is a 26-connected component of
// one block's own foreground cells: a region, or the part of a region that block holds. The
// block also writes its *border*: the fragments' cells on its faces and edges (border.ts, in
// fragment ids), from which the boxes task joins the fragments of neighbouring blocks into whole
// regions by exact cell adjacency (boxes-merge.ts). Nothing here depends on how the block is
// cut into chunks: with `stage1.block` set in voxels, neither does anything downstream.
//
// A fragment also lists the lattice tiles its cells need if its region is tiled (boxes-merge.ts):
// the tiles that each cell's own box (cell → full resolution, grown by the margin, clipped to the
// volume) meets, so a region's tiles are the same however block borders cut it. Pure.
import { type Box, type Vec3, box, boxOfShape, intersect } from '../geometry/box.ts';
import type { Array3 } from '../array/array3.ts';
import { label } from '../array/components.ts';
import { type ExtractOptions, type PooledCells, cellShape, cellsToBox, poolCells, regionStats } from './boxes-extract.ts';
import { borderSections } from './border.ts';

export interface Fragment {
  /**
   * 1 + the raster index of the fragment's first cell in the volume's cell grid: unique, and the
   * same whatever the chunking (the border names fragments by it).
   */
  readonly id: number;
  /** The stage-one block that holds the fragment's cells. */
  readonly block: Vec3;
  /** The fragment's cells, in global cell coordinates (cell i covers stage-one voxels [i·pd, (i+1)·pd)). */
  readonly cells: Box;
  /**
   * Full-resolution box: cells → full resolution, grown by the margin, clipped to the volume (as
   * extractBoxes, but not yet grown to the crop shape: a whole region is, once its fragments are
   * joined; a sliver of a region at a block border grown to a crop would cover too much).
   */
  readonly box: Box;
  /** Heatmap mass of the fragment's cells in full-resolution voxels (extractBoxes' score). */
  readonly score: number;
  /**
   * Lattice tiles (`latticeOf`) its cells need when its region is tiled: tile indices as flat
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
  private readonly count: Vec3;
  constructor(count: Vec3) {
    this.count = count;
  }

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

export interface FragmentOptions extends ExtractOptions {
  /** The stage-one volume (cells are clipped to it before mapping to full resolution). */
  lowVolume: Vec3;
  /** The re-crop lattice (`latticeOf`), for `Fragment.tiles`. */
  lattice: Vec3;
}

/** A block's fragments (sorted by id) and its border (18 sections, border.ts, over its own cells). */
export interface BlockFragments {
  fragments: Fragment[];
  border: Uint8Array[];
}

/** The cells a block owns: those whose first stage-one voxel lies in its low write box, per axis [lo, hi). */
export function ownedCells(lowWrite: Box, pd: Vec3): Box {
  return box(
    [0, 1, 2].map((a) => Math.ceil(lowWrite.begin[a] / pd[a])) as unknown as Vec3,
    [0, 1, 2].map((a) => Math.ceil(lowWrite.end[a] / pd[a])) as unknown as Vec3,
  );
}

/**
 * The fragments of block `block` (its stage-one write box `lowWrite`) from the heatmap of the
 * block and its halo (`heat`, whose first voxel is `heatOrigin` in stage-one voxels).
 */
export function extractFragments(heat: Array3, heatOrigin: Vec3, lowWrite: Box, block: Vec3, o: FragmentOptions): BlockFragments {
  const pd = cellShape(o.priorDownsample);
  const own = ownedCells(lowWrite, pd);
  const oshape = [0, 1, 2].map((a) => Math.max(0, own.end[a] - own.begin[a])) as unknown as Vec3;
  const n = oshape[0] * oshape[1] * oshape[2];
  const mask = new Uint8Array(n);
  if (n > 0 && heat.data.length > 0) {
    const pooled = poolCells(heat, heatOrigin, pd, o.pooling, o.roiThreshold);
    for (let a = 0; a < 3; a++) {
      if (own.begin[a] < pooled.c0[a] || own.end[a] > pooled.c0[a] + pooled.nc[a]) throw new RangeError(`the heatmap does not cover block ${block.join(',')}'s cells along ${'zyx'[a]}`);
    }
    // The region filters look at whole regions as far as the block and its halo see them.
    const all = label(pooled.mask, pooled.nc, 26);
    const { keep } = regionStats(all.labels, all.count, pooled.nc, o.axisThr, o.areaThr);
    ownMask(pooled, all.labels, keep, own, oshape, mask);
    return fragmentsOf(pooled, own, oshape, mask, block, pd, o);
  }
  return { fragments: [], border: borderSections(new Uint32Array(n), new Float64Array(1), mask, oshape) };
}

/** The block's own foreground cells whose region (as the block sees it) passes the filters. */
function ownMask(pooled: PooledCells, labels: Int32Array, keep: Uint8Array, own: Box, oshape: Vec3, out: Uint8Array): void {
  const [, NY, NX] = pooled.nc;
  for (let z = 0, i = 0; z < oshape[0]; z++) {
    for (let y = 0; y < oshape[1]; y++) {
      const row = ((own.begin[0] + z - pooled.c0[0]) * NY + (own.begin[1] + y - pooled.c0[1])) * NX + own.begin[2] - pooled.c0[2];
      for (let x = 0; x < oshape[2]; x++, i++) {
        const c = row + x;
        if (pooled.mask[c] && keep[labels[c]]) out[i] = 1;
      }
    }
  }
}

function fragmentsOf(pooled: PooledCells, own: Box, oshape: Vec3, mask: Uint8Array, block: Vec3, pd: Vec3, o: FragmentOptions): BlockFragments {
  const { labels, count } = label(mask, oshape, 26);
  const cellGrid = [0, 1, 2].map((a) => Math.ceil(o.lowVolume[a] / pd[a])) as unknown as Vec3;
  const lo = new Int32Array(3 * (count + 1)).fill(2 ** 30);
  const hi = new Int32Array(3 * (count + 1)).fill(-(2 ** 30));
  const mass = new Float64Array(count + 1);
  const ids = new Float64Array(count + 1);
  const tiles = Array.from({ length: count + 1 }, () => new TileSet(tileCount(o.bounds, o.lattice)));
  const cellTiles = [0, 1, 2].map((a) => axisTiles(own.begin[a], oshape[a], a, pd, o));
  const [, NY, NX] = pooled.nc;
  for (let z = 0, i = 0; z < oshape[0]; z++) {
    for (let y = 0; y < oshape[1]; y++) {
      const row = ((own.begin[0] + z - pooled.c0[0]) * NY + (own.begin[1] + y - pooled.c0[1])) * NX + own.begin[2] - pooled.c0[2];
      for (let x = 0; x < oshape[2]; x++, i++) {
        const l = labels[i];
        if (l === 0) continue;
        const g = [own.begin[0] + z, own.begin[1] + y, own.begin[2] + x];
        if (ids[l] === 0) ids[l] = (g[0] * cellGrid[1] + g[1]) * cellGrid[2] + g[2] + 1;
        for (let a = 0; a < 3; a++) {
          if (g[a] < lo[3 * l + a]) lo[3 * l + a] = g[a];
          if (g[a] + 1 > hi[3 * l + a]) hi[3 * l + a] = g[a] + 1;
        }
        mass[l] += pooled.sum[row + x];
        tiles[l].add(cellTiles[0][z], cellTiles[1][y], cellTiles[2][x]);
      }
    }
  }
  const voxelVolume = o.factor[0] * o.factor[1] * o.factor[2];
  const lowVol = boxOfShape(o.lowVolume);
  const fragments: Fragment[] = [];
  for (let l = 1; l <= count; l++) {
    const cells = box([lo[3 * l], lo[3 * l + 1], lo[3 * l + 2]], [hi[3 * l], hi[3 * l + 1], hi[3 * l + 2]]);
    const b = cellsToBox(cells, pd, lowVol, { ...o, minShape: [0, 0, 0] });
    // Own cells lie in the volume, so their box is never empty.
    if (!b) throw new RangeError(`fragment ${ids[l]} of block ${block.join(',')} has an empty box`);
    fragments.push({ id: ids[l], block, cells, box: b, score: mass[l] * voxelVolume, tiles: tiles[l].list() });
  }
  const border = borderSections(new Uint32Array(labels.buffer, labels.byteOffset, labels.length), ids, mask, oshape);
  return { fragments: fragments.sort((a, b) => a.id - b.id), border };
}

/** Per cell of one axis of the block's own cells, the tile range its box meets (cellsToBox's mapping, one axis). */
function axisTiles(first: number, n: number, a: number, pd: Vec3, o: FragmentOptions): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let i = 0; i < n; i++) {
    const lb = (first + i) * pd[a];
    const le = Math.min((first + i + 1) * pd[a], o.lowVolume[a]);
    const fb = Math.max(Math.floor(lb * o.factor[a]) - o.margin[a], o.bounds.begin[a]);
    const fe = Math.min(Math.ceil(le * o.factor[a]) + o.margin[a], o.bounds.end[a]);
    out.push(le <= lb ? [0, 0] : tileRange(fb, fe, o.lattice[a]));
  }
  return out;
}
