// Instances of one chunk, the pure part: 26-connected objects per class, numbered locally in
// raster order of their first voxel, with the statistics the objects table needs. What crosses
// chunk borders is joined elsewhere: border.ts (a chunk's faces as runs of global ids) and
// merge.ts (the reduction that gives every object one id across the volume). The chunk's
// labels are kept as runs (labelRuns) until relabel writes them with their global ids, so the
// chunk is labelled once, when it is written.
//
// Connectivity is 26 everywhere, and only voxels of one class join: an object is one thing of
// one kind, and a synapse touching a vesicle cloud is still two objects.
import { type Box, type Vec3, box } from '../geometry/box.ts';
import type { Array3 } from '../array/array3.ts';

export interface ObjectRow {
  /** Local id (1..count) in LocalObjects; a global id once relabelled. */
  id: number;
  /** Class value of the segmentation (1..255). */
  class: number;
  /** Absolute voxel box (origin added), half-open. */
  box: Box;
  voxels: number;
  /** Mean foreground probability of the object's class over its voxels; present when probabilities were given. */
  meanProbability?: number;
}

export interface LocalObjects {
  /** Per voxel of the chunk, 0 = background, else the object's local id. */
  labels: Uint32Array;
  count: number;
  /** objects[k].id === k + 1. */
  objects: ObjectRow[];
  /** first[id]: the chunk-local raster index of the object's first voxel (index 0 unused). */
  first: Float64Array;
  /** Per row (z, y) of the chunk: the x range [lo, hi) holding its foreground (lo = hi: none). */
  rows: RowRanges;
}

/** Per row of a chunk, the x range [lo[r], hi[r]) outside which the row is all background. */
export interface RowRanges {
  lo: Int32Array;
  hi: Int32Array;
}

// The 13 neighbours that come before a voxel in raster order: the first pass has already
// labelled them, so looking back is enough to see every 26-adjacency exactly once.
const BACK_DZ = Int8Array.from([-1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0]);
const BACK_DY = Int8Array.from([-1, -1, -1, 0, 0, 0, 1, 1, 1, -1, -1, -1, 0]);
const BACK_DX = Int8Array.from([-1, 0, 1, -1, 0, 1, -1, 0, 1, -1, 0, 1, -1]);

// Module-level (not closures) so the hot loop calls plain functions on a typed array that may
// be replaced when it grows.
function findRoot(parent: Uint32Array, a: number): number {
  while (parent[a] !== a) {
    parent[a] = parent[parent[a]];
    a = parent[a];
  }
  return a;
}

/** Joins two provisional labels keeping the smaller root, so the final numbering stays raster-ordered. */
function unite(parent: Uint32Array, a: number, b: number): number {
  const ra = findRoot(parent, a);
  const rb = findRoot(parent, b);
  if (ra === rb) return ra;
  if (ra < rb) { parent[rb] = ra; return ra; }
  parent[ra] = rb;
  return rb;
}

/**
 * Local instances of one chunk: 26-connected, per class (voxels of different classes never
 * join), ids 1..count in raster order of each object's first voxel. `probs[c-1]` is the
 * foreground probability of class c (optional).
 *
 * One two-pass union-find over all classes at once (a voxel joins only earlier neighbours of
 * its own class) rather than shared/array/components.ts's `label` once per class: that would
 * read the whole chunk once per class present (up to 255 passes over 16M voxels), and the same
 * raster-order rule makes the result identical to the per-class labelling.
 *
 * `into`: a zeroed array of the chunk's size to write the labels into (a pooled one: a fresh
 * chunk-sized array costs more in page faults than the labelling itself).
 */
export function labelObjects(seg: Array3<Uint8Array>, origin: Vec3, probs?: readonly Array3<Float32Array>[], into?: Uint32Array): LocalObjects {
  const [Z, Y, X] = seg.shape;
  const n = Z * Y * X;
  const s = seg.data;
  if (s.length !== n) throw new RangeError(`segmentation of ${s.length} voxels does not match shape ${seg.shape.join('x')}`);
  if (probs) {
    for (let c = 0; c < probs.length; c++) {
      const p = probs[c];
      if (p.data.length !== n || p.shape[0] !== Z || p.shape[1] !== Y || p.shape[2] !== X) {
        throw new RangeError(`probabilities of class ${c + 1} (${p.shape.join('x')}) do not match the segmentation (${seg.shape.join('x')})`);
      }
    }
  }
  if (into && into.length !== n) throw new RangeError(`a label array of ${into.length} voxels for a chunk of ${n}`);
  const labels = into ?? new Uint32Array(n);
  const YX = Y * X;
  const delta = new Int32Array(13);
  for (let k = 0; k < 13; k++) delta[k] = BACK_DZ[k] * YX + BACK_DY[k] * X + BACK_DX[k];

  // First pass: provisional labels, equivalences in `parent` (grown by doubling). Each row's
  // foreground range is found first (4 bytes at a time: a sparse chunk is mostly empty rows) and
  // kept, so the second pass, the runs and the caller visit only those ranges.
  const rows = foregroundRows(s, Z * Y, X);
  let parent = new Uint32Array(1024);
  let next = 1;
  for (let z = 0; z < Z; z++) {
    for (let y = 0; y < Y; y++) {
      const r = z * Y + y;
      const row = r * X;
      for (let x = rows.lo[r], xe = rows.hi[r]; x < xe; x++) {
        const i = row + x;
        const c = s[i];
        if (c === 0) continue;
        let cur = 0;
        for (let k = 0; k < 13; k++) {
          if (z + BACK_DZ[k] < 0) continue;
          const yy = y + BACK_DY[k];
          if (yy < 0 || yy >= Y) continue;
          const xx = x + BACK_DX[k];
          if (xx < 0 || xx >= X) continue;
          const j = i + delta[k];
          if (s[j] !== c) continue;
          cur = cur === 0 ? labels[j] : unite(parent, cur, labels[j]);
        }
        if (cur === 0) {
          if (next === parent.length) {
            const grown = new Uint32Array(parent.length * 2);
            grown.set(parent);
            parent = grown;
          }
          parent[next] = next;
          cur = next++;
        }
        labels[i] = cur;
      }
    }
  }

  // Roots are the smallest provisional label of their set, i.e. the first created, i.e. the
  // set whose first voxel comes first: numbering roots in increasing order is raster order.
  const remap = new Uint32Array(next);
  let count = 0;
  for (let l = 1; l < next; l++) {
    const r = findRoot(parent, l);
    remap[l] = r === l ? ++count : remap[r];
  }

  // Second pass: final ids and per-object statistics in flat typed arrays.
  const voxels = new Float64Array(count + 1);
  const cls = new Uint8Array(count + 1);
  const lo = new Int32Array(3 * (count + 1)).fill(0x7fffffff);
  const hi = new Int32Array(3 * (count + 1)).fill(-1);
  const psum = probs ? new Float64Array(count + 1) : undefined;
  const first = new Float64Array(count + 1);
  for (let z = 0; z < Z; z++) {
    for (let y = 0; y < Y; y++) {
      const r = z * Y + y;
      const row = r * X;
      for (let x = rows.lo[r], xe = rows.hi[r]; x < xe; x++) {
        const i = row + x;
        const l = labels[i];
        if (l === 0) continue;
        const id = remap[l];
        labels[i] = id;
        voxels[id]++;
        const b = 3 * id;
        if (z < lo[b]) lo[b] = z;
        if (z > hi[b]) hi[b] = z;
        if (y < lo[b + 1]) lo[b + 1] = y;
        if (y > hi[b + 1]) hi[b + 1] = y;
        if (x < lo[b + 2]) lo[b + 2] = x;
        if (x > hi[b + 2]) hi[b + 2] = x;
        if (cls[id] === 0) {
          const c = s[i];
          cls[id] = c;
          first[id] = i;
          // A class without probabilities would silently lose its mean: the caller passed
          // probabilities of another model or fewer channels than the segmentation uses.
          if (probs && c > probs.length) throw new RangeError(`class ${c} has no probabilities (${probs.length} given)`);
        }
        if (psum) psum[id] += probs![s[i] - 1].data[i];
      }
    }
  }

  const objects: ObjectRow[] = new Array(count);
  for (let id = 1; id <= count; id++) {
    const b = 3 * id;
    const row: ObjectRow = {
      id,
      class: cls[id],
      box: box(
        [origin[0] + lo[b], origin[1] + lo[b + 1], origin[2] + lo[b + 2]],
        [origin[0] + hi[b] + 1, origin[1] + hi[b + 1] + 1, origin[2] + hi[b + 2] + 1],
      ),
      voxels: voxels[id],
    };
    if (psum) row.meanProbability = psum[id] / voxels[id];
    objects[id - 1] = row;
  }
  return { labels, count, objects, first, rows };
}

/**
 * The x range of each of `count` rows of `X` bytes of `s` outside which the row is 0: whole
 * 4-byte words compared where the rows are word-aligned, bytes otherwise.
 */
export function foregroundRows(s: Uint8Array, count: number, X: number): RowRanges {
  const lo = new Int32Array(count), hi = new Int32Array(count);
  const words = X % 4 === 0 && s.byteOffset % 4 === 0 ? new Uint32Array(s.buffer, s.byteOffset, (count * X) >> 2) : undefined;
  const W = X >> 2;
  for (let r = 0; r < count; r++) {
    let a: number, b: number;
    if (words) {
      const w0 = r * W;
      let u = w0, v = w0 + W;
      while (u < v && words[u] === 0) u++;
      if (u === v) continue;
      while (words[v - 1] === 0) v--;
      a = (u - w0) * 4; b = (v - w0) * 4;
    } else {
      const row = r * X;
      a = 0; b = X;
      while (a < b && s[row + a] === 0) a++;
      if (a === b) continue;
    }
    // Narrow to the first and last nonzero byte (a word holds up to 3 zero bytes at each end).
    const row = r * X;
    while (s[row + a] === 0) a++;
    while (s[row + b - 1] === 0) b--;
    lo[r] = a; hi[r] = b;
  }
  return { lo, hi };
}


/**
 * The global id of each local object: 1 + the raster index of its first voxel in a volume of
 * `volume` voxels ([Z, Y, X]), the chunk starting at `origin` (see merge.ts for the id rule).
 * ids[0] = 0 (background).
 */
export function anchorIds(local: LocalObjects, origin: Vec3, shape: Vec3, volume: Vec3): Float64Array {
  const ids = new Float64Array(local.count + 1);
  const YX = shape[1] * shape[2];
  for (let id = 1; id <= local.count; id++) {
    const i = local.first[id];
    const z = Math.floor(i / YX), y = Math.floor((i - z * YX) / shape[2]), x = i - z * YX - y * shape[2];
    ids[id] = ((origin[0] + z) * volume[1] + origin[1] + y) * volume[2] + origin[2] + x + 1;
  }
  return ids;
}

// ---------------------------------------------------------------- label runs

/**
 * A chunk's local labels as runs along x: [start, length, label] triples over the chunk's
 * voxels in raster order (runs never cross a row). Sparse labels (clefts, lesions) take a few
 * bytes per object row instead of four per voxel, and relabel writes the chunk's global ids from
 * them without labelling it again.
 */
export function labelRuns(labels: Uint32Array, shape: Vec3, rows?: RowRanges): Uint32Array {
  if (labels.length > 0xffffffff) throw new RangeError(`a chunk of ${labels.length} voxels is too large for label runs`);
  const X = shape[2];
  let out = new Uint32Array(3 * 1024);
  let n = 0;
  for (let r = 0, row = 0; row < labels.length; r++, row += X) {
    // With the rows' foreground ranges (labelObjects'), only those are read.
    const end = rows ? row + rows.hi[r] : row + X;
    for (let i = rows ? row + rows.lo[r] : row; i < end; i++) {
      const l = labels[i];
      if (l === 0) continue;
      let j = i + 1;
      while (j < end && labels[j] === l) j++;
      if (n + 3 > out.length) {
        const grown = new Uint32Array(out.length * 2);
        grown.set(out);
        out = grown;
      }
      out[n++] = i; out[n++] = j - i; out[n++] = l;
      i = j - 1;
    }
  }
  return out.slice(0, n);
}

/**
 * Writes the runs into `out` (zeroed, chunk-sized) with each local label mapped through `ids`
 * (uint64 output for volumes past 2^32 voxels: one BigInt per run, never per voxel).
 */
/**
 * Paint the runs that fall in voxels [lo, lo + out.length) of the chunk into `out` (a slab of
 * whole rows: runs never cross a row), starting at run triple `from`; returns the first run
 * past the slab, where the next slab starts. Runs are in raster order.
 */
export function paintRunsSlab(runs: Uint32Array, ids: ArrayLike<number>, out: Uint32Array | BigUint64Array, lo: number, from = 0): number {
  const hi = lo + out.length;
  let k = from;
  for (; k < runs.length && runs[k] < hi; k += 3) {
    const s = runs[k] - lo, e = s + runs[k + 1], l = runs[k + 2];
    if (s < 0 || e > out.length || l >= ids.length) throw new RangeError(`label run ${k / 3} (${runs[k]}+${runs[k + 1]}, label ${l}) lies outside its slab or the table`);
    if (out instanceof BigUint64Array) out.fill(BigInt(ids[l]), s, e);
    else out.fill(ids[l], s, e);
  }
  return k;
}

export function paintRuns(runs: Uint32Array, ids: ArrayLike<number>, out: Uint32Array | Float64Array | BigUint64Array): void {
  if (runs.length % 3 !== 0) throw new RangeError(`label runs of ${runs.length} numbers are not triples`);
  for (let k = 0; k < runs.length; k += 3) {
    const s = runs[k], e = s + runs[k + 1], l = runs[k + 2];
    if (e > out.length || l >= ids.length) throw new RangeError(`label run ${k / 3} (${s}+${runs[k + 1]}, label ${l}) lies outside the chunk or its table`);
    if (out instanceof BigUint64Array) out.fill(BigInt(ids[l]), s, e);
    else out.fill(ids[l], s, e);
  }
}
