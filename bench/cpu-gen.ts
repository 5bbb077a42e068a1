// Generated instance data for the CPU-side simulation (bench/cpu-sim.ts): what `labelChunk`
// (shared/tasks/instances.ts) would have left in `.work` for a chunk of a huge volume, built from
// box-shaped objects without materialising the chunk's voxels (a FAFB chunk holds 10⁸).
//
// The objects are a hard-core point field, so that each generated box is exactly one
// 26-connected object, as the real labelling would see it:
//
// - candidates: per chunk, a Poisson number of boxes (the chunk's begin corners drawn uniformly,
//   extents uniform in [lo, hi] per axis), each with a random priority; everything a chunk's
//   candidates are is a pure function of (seed, chunk), so any chunk is generated without the rest;
// - kept: a candidate survives when no candidate of higher priority (lower mark) overlaps or
//   touches it (26-adjacency: boxes grown by one voxel meet) — Matérn's type II process, which
//   needs only the 26 neighbour chunks' candidates (a box is shorter than a chunk on every axis);
// - parts: a chunk's part of an object is the object's box cut by the chunk's write box; its id
//   is 1 + the raster index of its first voxel in the volume (the part box's begin corner), the
//   id rule of shared/pipeline/merge.ts. An object's id is its box's begin corner's.
//
// From a chunk's parts, the real encoders give the three files: the objects table
// (`label/<c>.json`), the border (`border/<c>.bin`: six faces as runs via `encodeFace`, twelve
// edge lines as `packColumns`) and the label runs (`runs/<c>.bin`). test/unit/cpu-gen.test.ts
// checks them, byte for byte, against labelObjects / borderSections / labelRuns of the same
// objects rasterised on small chunks.
import { type Box, type Vec3, box } from '../shared/geometry/box.ts';
import { chunkBox, range3, type Range3 } from '../shared/geometry/grid.ts';
import { hashInts, mulberry32 } from '../shared/synth/random.ts';
import { type FaceRuns, encodeFace, otherAxes } from '../shared/pipeline/border.ts';
import { packColumns } from '../shared/array/columns.ts';
import type { LabelResult, LabelRow } from '../shared/tasks/instances.ts';

export interface FieldOptions {
  /** Volume shape and chunk shape, [z, y, x] voxels. */
  volume: Vec3;
  chunk: Vec3;
  seed: number;
  /** Objects per voxel wanted after the hard core (candidates are drawn denser to make up for it). */
  density: number;
  /** Box extents, uniform integers in [lo, hi] per axis (each < the chunk). */
  lo: Vec3;
  hi: Vec3;
  /** Chunks cached (candidates and kept lists each): a raster sweep revisits a few planes. */
  cache?: number;
}

/** A generated object: its box (clipped to the volume), id and mean probability. */
export interface GenObject {
  box: Box;
  /** 1 + raster index of the box's begin corner in the volume. */
  id: number;
  /** Mean foreground probability, k/256: exact in float32, so a rasterised test reproduces it. */
  p: number;
}

/** A chunk's part of an object. */
export interface Part {
  box: Box;
  anchor: number;
  object: GenObject;
}

interface Candidates {
  /** 6 per candidate: begin z, y, x, end z, y, x (clipped to the volume). */
  b: Int32Array;
  mark: Float64Array;
  p: Float64Array;
  /** The chunk's key: with the position, it breaks ties between equal marks. */
  chunk: number;
}

/** Poisson draw (Knuth below a mean of 30, a rounded normal above: chunks hold hundreds). */
function poisson(r: () => number, mean: number): number {
  if (mean <= 0) return 0;
  if (mean < 30) {
    const l = Math.exp(-mean);
    let k = 0;
    let t = r();
    while (t > l) { k++; t *= r(); }
    return k;
  }
  const g = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  return Math.max(0, Math.round(mean + Math.sqrt(mean) * g));
}

/** Whether boxes a and b (6 numbers each, half-open) overlap or touch (26-adjacency). */
function touches(a: Int32Array, i: number, b: Int32Array, j: number): boolean {
  for (let ax = 0; ax < 3; ax++) {
    if (a[6 * i + ax] > b[6 * j + 3 + ax] || b[6 * j + ax] > a[6 * i + 3 + ax]) return false;
  }
  return true;
}

export class ObjectField {
  readonly grid: Vec3;
  readonly bounds: Box;
  /** Candidates per voxel, chosen so that the kept density is `density` (see candidateDensity). */
  readonly candidates: number;
  private readonly cand = new Map<number, Candidates>();
  private readonly kept = new Map<number, GenObject[]>();
  private readonly cap: number;

  readonly o: FieldOptions;
  constructor(o: FieldOptions) {
    this.o = o;
    this.grid = o.volume.map((v, a) => Math.ceil(v / o.chunk[a])) as unknown as Vec3;
    this.bounds = box([0, 0, 0], o.volume);
    if (o.hi.some((h, a) => h >= o.chunk[a] || o.lo[a] < 1 || o.lo[a] > h)) throw new RangeError('object extents must lie in [1, chunk)');
    this.candidates = candidateDensity(o.density, o.lo, o.hi);
    this.cap = o.cache ?? 4096;
  }

  private key(c: Vec3): number {
    return (c[0] * this.grid[1] + c[1]) * this.grid[2] + c[2];
  }

  private inGrid(c: Vec3): boolean {
    return c.every((v, a) => v >= 0 && v < this.grid[a]);
  }

  /** 1 + raster index of voxel p in the volume. */
  idOf(p: ArrayLike<number>): number {
    return (p[0] * this.o.volume[1] + p[1]) * this.o.volume[2] + p[2] + 1;
  }

  private remember<T>(m: Map<number, T>, k: number, v: T): T {
    if (m.size >= this.cap) m.delete(m.keys().next().value!);
    m.set(k, v);
    return v;
  }

  /** The candidates anchored in chunk c (begin corner inside its write box). */
  private candidatesOf(c: Vec3): Candidates {
    const k = this.key(c);
    const hit = this.cand.get(k);
    if (hit) return hit;
    const w = chunkBox(c, this.o.chunk, this.bounds);
    const vox = (w.end[0] - w.begin[0]) * (w.end[1] - w.begin[1]) * (w.end[2] - w.begin[2]);
    const r = mulberry32(hashInts(this.o.seed, c[0], c[1], c[2]));
    const n = poisson(r, this.candidates * vox);
    const b = new Int32Array(6 * n);
    const mark = new Float64Array(n);
    const p = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      for (let a = 0; a < 3; a++) {
        const begin = w.begin[a] + Math.floor(r() * (w.end[a] - w.begin[a]));
        const size = this.o.lo[a] + Math.floor(r() * (this.o.hi[a] - this.o.lo[a] + 1));
        b[6 * i + a] = begin;
        b[6 * i + 3 + a] = Math.min(this.o.volume[a], begin + size);
      }
      mark[i] = r();
      p[i] = (128 + Math.floor(r() * 128)) / 256;
    }
    return this.remember(this.cand, k, { b, mark, p, chunk: k });
  }

  /** The objects anchored in chunk c: its candidates that no higher-priority neighbour touches. */
  objectsOf(c: Vec3): GenObject[] {
    const k = this.key(c);
    const hit = this.kept.get(k);
    if (hit) return hit;
    const mine = this.candidatesOf(c);
    const n = mine.mark.length;
    const out: GenObject[] = [];
    // Neighbours' candidates that come within one voxel of this chunk's candidates' hull.
    const hull = new Int32Array(6);
    const w = chunkBox(c, this.o.chunk, this.bounds);
    for (let a = 0; a < 3; a++) { hull[a] = w.begin[a] - 1; hull[3 + a] = Math.min(this.o.volume[a], w.end[a] + this.o.hi[a]) + 1; }
    const near: Candidates[] = [];
    const nearIdx: number[][] = [];
    for (let dz = -1; dz <= 1; dz++) for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
      const nc: Vec3 = [c[0] + dz, c[1] + dy, c[2] + dx];
      if (!this.inGrid(nc)) continue;
      const cs = this.candidatesOf(nc);
      const idx: number[] = [];
      for (let j = 0; j < cs.mark.length; j++) if (touches(cs.b, j, hull, 0)) idx.push(j);
      near.push(cs);
      nearIdx.push(idx);
    }
    for (let i = 0; i < n; i++) {
      let keep = true;
      for (let s = 0; s < near.length && keep; s++) {
        const cs = near[s];
        for (const j of nearIdx[s]) {
          const first = cs.mark[j] < mine.mark[i] || (cs.mark[j] === mine.mark[i] && (cs.chunk < mine.chunk || (cs.chunk === mine.chunk && j < i)));
          if (first && touches(mine.b, i, cs.b, j)) { keep = false; break; }
        }
      }
      if (!keep) continue;
      const b = mine.b.subarray(6 * i, 6 * i + 6);
      const bx = box([b[0], b[1], b[2]], [b[3], b[4], b[5]]);
      out.push({ box: bx, id: this.idOf(bx.begin), p: mine.p[i] });
    }
    return this.remember(this.kept, k, out);
  }

  /** Chunk c's parts, in the order the labelling numbers them (raster order of first voxels). */
  partsOf(c: Vec3): Part[] {
    const w = chunkBox(c, this.o.chunk, this.bounds);
    const out: Part[] = [];
    // Objects reach at most one chunk forward: those meeting c are anchored in c − {0, 1}³.
    for (let dz = -1; dz <= 0; dz++) for (let dy = -1; dy <= 0; dy++) for (let dx = -1; dx <= 0; dx++) {
      const nc: Vec3 = [c[0] + dz, c[1] + dy, c[2] + dx];
      if (!this.inGrid(nc)) continue;
      for (const obj of this.objectsOf(nc)) {
        const lo = [0, 1, 2].map((a) => Math.max(obj.box.begin[a], w.begin[a])) as unknown as Vec3;
        const hi = [0, 1, 2].map((a) => Math.min(obj.box.end[a], w.end[a])) as unknown as Vec3;
        if (lo.some((v, a) => v >= hi[a])) continue;
        out.push({ box: box(lo, hi), anchor: this.idOf(lo), object: obj });
      }
    }
    return out.sort((a, b) => a.anchor - b.anchor);
  }

  /** The object holding voxel v (undefined: background). */
  objectAt(v: Vec3): GenObject | undefined {
    const c = v.map((x, a) => Math.floor(x / this.o.chunk[a])) as unknown as Vec3;
    for (let dz = -1; dz <= 0; dz++) for (let dy = -1; dy <= 0; dy++) for (let dx = -1; dx <= 0; dx++) {
      const nc: Vec3 = [c[0] + dz, c[1] + dy, c[2] + dx];
      if (!this.inGrid(nc)) continue;
      for (const obj of this.objectsOf(nc)) if (v.every((x, a) => x >= obj.box.begin[a] && x < obj.box.end[a])) return obj;
    }
    return undefined;
  }

  /** The voxel of id (1 + raster index). */
  voxelOf(id: number): Vec3 {
    const i = id - 1;
    const YX = this.o.volume[1] * this.o.volume[2];
    const z = Math.floor(i / YX);
    const y = Math.floor((i - z * YX) / this.o.volume[2]);
    return [z, y, i - z * YX - y * this.o.volume[2]];
  }

  /** The write box of chunk c. */
  chunkBox(c: Vec3): Box {
    return chunkBox(c, this.o.chunk, this.bounds);
  }

  /** All chunks of the grid, as a range. */
  all(): Range3 {
    return range3([0, 0, 0], this.grid);
  }
}

/**
 * Candidates per voxel for a kept density: Matérn II keeps a candidate with probability
 * (1 − e^{−λV})/(λV), V the volume of begin corners that would touch it: (e1 + e2 + 1) per axis
 * for extents e1, e2, averaged over the extents. Solved for λ.
 */
export function candidateDensity(density: number, lo: Vec3, hi: Vec3): number {
  if (density <= 0) return 0;
  let v = 1;
  for (let a = 0; a < 3; a++) v *= (lo[a] + hi[a]) + 1; // E[e1 + e2] + 1 with means (lo + hi) / 2
  const x = density * v; // = 1 − e^{−λV}
  if (x >= 1) throw new RangeError(`density ${density} is beyond the hard core's limit for boxes up to ${hi.join('×')}`);
  return -Math.log(1 - x) / v;
}

// ------------------------------------------------------------------------------ the encoders

/** The objects table labelChunk writes: rows in labelling order, key order as labelObjects builds them. */
export function labelTable(parts: readonly Part[]): LabelResult {
  const objects: LabelRow[] = parts.map((p, i) => ({
    id: i + 1, class: 1, box: box(p.box.begin, p.box.end), voxels: volume(p.box), meanProbability: p.object.p, anchor: p.anchor,
  }));
  return { count: parts.length, objects };
}

function volume(b: Box): number {
  return (b.end[0] - b.begin[0]) * (b.end[1] - b.begin[1]) * (b.end[2] - b.begin[2]);
}

/** The 18 border sections of a chunk (borderSections' layout), from its parts. */
export function borderOfParts(parts: readonly Part[], w: Box): Uint8Array[] {
  const shape = [0, 1, 2].map((a) => w.end[a] - w.begin[a]);
  const out: Uint8Array[] = [];
  for (let a = 0; a < 3; a++) {
    for (let side = 0; side < 2; side++) {
      const on = parts.filter((p) => (side ? p.box.end[a] === w.end[a] : p.box.begin[a] === w.begin[a]));
      out.push(encodeFace(faceOf(on, a, w, shape)));
    }
  }
  for (let a = 0; a < 3; a++) {
    const [u, v] = otherAxes(a);
    for (let su = 0; su < 2; su++) {
      for (let sv = 0; sv < 2; sv++) {
        const id = new Float64Array(shape[a]);
        const cls = new Uint8Array(shape[a]);
        for (const p of parts) {
          if ((su ? p.box.end[u] !== w.end[u] : p.box.begin[u] !== w.begin[u]) || (sv ? p.box.end[v] !== w.end[v] : p.box.begin[v] !== w.begin[v])) continue;
          for (let t = p.box.begin[a] - w.begin[a]; t < p.box.end[a] - w.begin[a]; t++) { id[t] = p.anchor; cls[t] = 1; }
        }
        out.push(packColumns([id, cls]));
      }
    }
  }
  return out;
}

/** One face as runs: the parts on it are disjoint rectangles with gaps, so one run per part and row. */
function faceOf(on: readonly Part[], a: number, w: Box, shape: number[]): FaceRuns {
  const [u, v] = otherAxes(a);
  const rows = shape[u], cols = shape[v];
  const byCol = [...on].sort((p, q) => p.box.begin[v] - q.box.begin[v]);
  const rowStart = new Uint32Array(rows + 1);
  const start: number[] = [], length: number[] = [], id: number[] = [];
  for (let r = 0; r < rows; r++) {
    rowStart[r] = start.length;
    const y = w.begin[u] + r;
    for (const p of byCol) {
      if (y < p.box.begin[u] || y >= p.box.end[u]) continue;
      start.push(p.box.begin[v] - w.begin[v]);
      length.push(p.box.end[v] - p.box.begin[v]);
      id.push(p.anchor);
    }
  }
  rowStart[rows] = start.length;
  return { rows, cols, rowStart, start: Uint32Array.from(start), length: Uint32Array.from(length), id: Float64Array.from(id), cls: new Uint8Array(start.length).fill(1) };
}

/** The chunk's label runs (labelRuns' layout): [start, length, local label] along x, raster order. */
export function runsOfParts(parts: readonly Part[], w: Box): Uint32Array {
  const Y = w.end[1] - w.begin[1], X = w.end[2] - w.begin[2];
  let n = 0;
  for (const p of parts) n += (p.box.end[0] - p.box.begin[0]) * (p.box.end[1] - p.box.begin[1]);
  const starts = new Float64Array(n);
  const lens = new Uint32Array(n);
  const labels = new Uint32Array(n);
  let k = 0;
  parts.forEach((p, i) => {
    const len = p.box.end[2] - p.box.begin[2];
    for (let z = p.box.begin[0]; z < p.box.end[0]; z++) {
      for (let y = p.box.begin[1]; y < p.box.end[1]; y++) {
        starts[k] = ((z - w.begin[0]) * Y + (y - w.begin[1])) * X + (p.box.begin[2] - w.begin[2]);
        lens[k] = len;
        labels[k++] = i + 1;
      }
    }
  });
  const order = Uint32Array.from({ length: n }, (_, i) => i).sort((i, j) => starts[i] - starts[j]);
  const out = new Uint32Array(3 * n);
  for (let t = 0; t < n; t++) {
    const i = order[t];
    out[3 * t] = starts[i];
    out[3 * t + 1] = lens[i];
    out[3 * t + 2] = labels[i];
  }
  return out;
}
