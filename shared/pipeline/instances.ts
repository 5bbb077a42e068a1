// Global instance ids across chunks, the pure part. Each chunk is labelled by its own task, so
// ids are first local (1..count per chunk); a chunk also keeps its outer one-voxel layer (its
// Shell), and objects continuing across a border are found by comparing the shells of two
// touching chunks, never the chunks themselves. The pairs found are joined with a union-find
// over global ids (chunk offset + local id, the smallest id of a set wins) and each chunk's
// labels are rewritten once. Nothing here does I/O, so every step is testable on small arrays
// and each runs where its data already is (a chunk task, or the merge step with shells only).
//
// Connectivity is 26 everywhere, and only voxels of one class join: an object is one thing of
// one kind, and a synapse touching a vesicle cloud is still two objects.
import { type Box, type Vec3, box, shapeOf, volumeOf } from '../geometry/box.ts';
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
 */
export function labelObjects(seg: Array3<Uint8Array>, origin: Vec3, probs?: readonly Array3<Float32Array>[]): LocalObjects {
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
  const labels = new Uint32Array(n);
  const YX = Y * X;
  const delta = new Int32Array(13);
  for (let k = 0; k < 13; k++) delta[k] = BACK_DZ[k] * YX + BACK_DY[k] * X + BACK_DX[k];

  // First pass: provisional labels, equivalences in `parent` (grown by doubling).
  let parent = new Uint32Array(1024);
  let next = 1;
  for (let z = 0; z < Z; z++) {
    for (let y = 0; y < Y; y++) {
      const row = (z * Y + y) * X;
      for (let x = 0; x < X; x++) {
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
  for (let z = 0; z < Z; z++) {
    for (let y = 0; y < Y; y++) {
      const row = (z * Y + y) * X;
      for (let x = 0; x < X; x++) {
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
  return { labels, count, objects };
}

// ---------------------------------------------------------------- shells

/**
 * The outer one-voxel layer of a chunk's labels and classes: what neighbours need to find
 * objects continuing across the border. Compact typed arrays (six faces; edges/corners are
 * contained in faces).
 *
 * `labels` and `classes` hold the six faces one after the other, in the order z-begin, z-end,
 * y-begin, y-end, x-begin, x-end (the planes z = box.begin[0], z = box.end[0] − 1, …). Each face
 * is C-ordered over its two other axes in [z, y, x] order: a z face is [y][x], a y face [z][x],
 * an x face [z][y]. Faces are stored whole even where they share edges or coincide (a chunk one
 * voxel thick), so any border voxel is read from the one face named by the border at hand. An
 * empty box has no faces.
 */
export interface Shell {
  box: Box;
  /** Local ids on the faces (0 = background). */
  labels: Uint32Array;
  /** Classes on the faces (0 = background); needed because ids of two chunks say nothing about kind. */
  classes: Uint8Array;
}

/** Face starts in `labels`/`classes` (7 entries: the six faces' starts and the total). */
function faceOffsets(shape: Vec3): number[] {
  const [Z, Y, X] = shape;
  if (Z <= 0 || Y <= 0 || X <= 0) return [0, 0, 0, 0, 0, 0, 0];
  const zf = Y * X, yf = Z * X, xf = Z * Y;
  return [0, zf, 2 * zf, 2 * zf + yf, 2 * zf + 2 * yf, 2 * zf + 2 * yf + xf, 2 * zf + 2 * yf + 2 * xf];
}

function otherAxes(k: number): [number, number] {
  return k === 0 ? [1, 2] : k === 1 ? [0, 2] : [0, 1];
}

export function shellOf(local: LocalObjects, seg: Array3<Uint8Array>, bx: Box): Shell {
  const shape = shapeOf(bx);
  const n = volumeOf(bx);
  if (seg.shape[0] !== shape[0] || seg.shape[1] !== shape[1] || seg.shape[2] !== shape[2] || seg.data.length !== n) {
    throw new RangeError(`segmentation ${seg.shape.join('x')} does not match box ${shape.join('x')}`);
  }
  if (local.labels.length !== n) throw new RangeError(`labels of ${local.labels.length} voxels do not match box ${shape.join('x')}`);
  const off = faceOffsets(shape);
  const labels = new Uint32Array(off[6]);
  const classes = new Uint8Array(off[6]);
  if (n === 0) return { box: box(bx.begin, bx.end), labels, classes };
  const stride = [shape[1] * shape[2], shape[2], 1];
  for (let f = 0; f < 6; f++) {
    const k = f >> 1;
    const [u, v] = otherAxes(k);
    const base = (f & 1 ? shape[k] - 1 : 0) * stride[k];
    const su = stride[u], sv = stride[v], nu = shape[u], nv = shape[v];
    let o = off[f];
    for (let pu = 0; pu < nu; pu++) {
      const rowBase = base + pu * su;
      for (let pv = 0; pv < nv; pv++, o++) {
        const i = rowBase + pv * sv;
        labels[o] = local.labels[i];
        classes[o] = seg.data[i];
      }
    }
  }
  return { box: box(bx.begin, bx.end), labels, classes };
}

// Binary shell, little-endian:
//   0  4 bytes  magic "TSHL"
//   4  u32      version (1)
//   8  6 × f64  box.begin[0..2], box.end[0..2] (safe integers, end ≥ begin)
//  56  u32      n = number of face voxels (must equal what the box implies)
//  60  n × u32  labels
//      n × u8   classes
// Nothing follows. Offsets keep the u32 block 4-aligned; f64 coordinates put no limit on
// where a chunk sits in a volume.
const SHELL_MAGIC = 0x4c485354; // "TSHL" read as little-endian u32
const SHELL_VERSION = 1;
const SHELL_HEADER = 60;
const LITTLE_ENDIAN_HOST = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

export function encodeShell(s: Shell): Uint8Array {
  const n = checkShell(s);
  const out = new Uint8Array(SHELL_HEADER + 5 * n);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, SHELL_MAGIC, true);
  dv.setUint32(4, SHELL_VERSION, true);
  for (let a = 0; a < 3; a++) {
    dv.setFloat64(8 + 8 * a, s.box.begin[a], true);
    dv.setFloat64(32 + 8 * a, s.box.end[a], true);
  }
  dv.setUint32(56, n, true);
  if (LITTLE_ENDIAN_HOST) out.set(new Uint8Array(s.labels.buffer, s.labels.byteOffset, 4 * n), SHELL_HEADER);
  else for (let i = 0; i < n; i++) dv.setUint32(SHELL_HEADER + 4 * i, s.labels[i], true);
  out.set(s.classes, SHELL_HEADER + 4 * n);
  return out;
}

export function decodeShell(b: Uint8Array): Shell {
  if (b.length < SHELL_HEADER) throw new RangeError(`shell of ${b.length} bytes is shorter than its ${SHELL_HEADER}-byte header`);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (dv.getUint32(0, true) !== SHELL_MAGIC) throw new RangeError('not a shell (bad magic)');
  const version = dv.getUint32(4, true);
  if (version !== SHELL_VERSION) throw new RangeError(`shell version ${version} is not supported (expected ${SHELL_VERSION})`);
  const begin: number[] = [];
  const end: number[] = [];
  for (let a = 0; a < 3; a++) {
    begin.push(dv.getFloat64(8 + 8 * a, true));
    end.push(dv.getFloat64(32 + 8 * a, true));
  }
  const bx = box(begin as unknown as Vec3, end as unknown as Vec3);
  checkBox(bx);
  const n = dv.getUint32(56, true);
  const expected = faceOffsets(shapeOf(bx))[6];
  if (n !== expected) throw new RangeError(`shell says ${n} face voxels, its box implies ${expected}`);
  if (b.length !== SHELL_HEADER + 5 * n) throw new RangeError(`shell of ${b.length} bytes, expected ${SHELL_HEADER + 5 * n}`);
  const labels = new Uint32Array(n);
  if (LITTLE_ENDIAN_HOST) new Uint8Array(labels.buffer).set(b.subarray(SHELL_HEADER, SHELL_HEADER + 4 * n));
  else for (let i = 0; i < n; i++) labels[i] = dv.getUint32(SHELL_HEADER + 4 * i, true);
  const classes = b.slice(SHELL_HEADER + 4 * n, SHELL_HEADER + 5 * n);
  return { box: bx, labels, classes };
}

function checkBox(bx: Box): void {
  for (let a = 0; a < 3; a++) {
    if (!Number.isSafeInteger(bx.begin[a]) || !Number.isSafeInteger(bx.end[a]) || bx.end[a] < bx.begin[a]) {
      throw new RangeError(`shell box ${bx.begin.join(',')} → ${bx.end.join(',')} is not a box of integer voxels`);
    }
  }
}

/** Validates a shell's arrays against its box; returns the face voxel count. */
function checkShell(s: Shell): number {
  checkBox(s.box);
  const n = faceOffsets(shapeOf(s.box))[6];
  if (s.labels.length !== n || s.classes.length !== n) {
    throw new RangeError(`shell arrays (${s.labels.length}, ${s.classes.length}) do not match its box (${n} face voxels)`);
  }
  return n;
}

/**
 * Pairs [idInA, idInB] of objects of the same class that are 26-adjacent across the border
 * between two chunks whose boxes touch (share a face, an edge or a corner; boxes do not
 * overlap). Deduplicated, sorted. Empty when the boxes do not touch.
 *
 * Overlapping boxes throw a RangeError: they would mean the chunking is not a partition, and
 * joining by shells could then silently miss or invent contacts.
 */
export function borderEdges(a: Shell, b: Shell): Array<[number, number]> {
  checkShell(a);
  checkShell(b);
  const sa = shapeOf(a.box), sb = shapeOf(b.box);
  if (volumeOf(a.box) === 0 || volumeOf(b.box) === 0) return [];
  // Per axis: where a's voxel p may lie, and which offsets q − p reach b.
  const pLo = [0, 0, 0], pHi = [0, 0, 0], dLo = [0, 0, 0], dHi = [0, 0, 0];
  let across = -1; // an axis along which the boxes are adjacent (its face is read)
  let acrossEnd = false; // a's face on that axis is its end side
  for (let k = 0; k < 3; k++) {
    const a0 = a.box.begin[k], a1 = a.box.end[k], b0 = b.box.begin[k], b1 = b.box.end[k];
    if (a0 < b1 && b0 < a1) {
      pLo[k] = Math.max(a0, b0 - 1); pHi[k] = Math.min(a1, b1 + 1); dLo[k] = -1; dHi[k] = 1;
    } else if (a1 === b0) {
      pLo[k] = a1 - 1; pHi[k] = a1; dLo[k] = dHi[k] = 1;
      if (across < 0) { across = k; acrossEnd = true; }
    } else if (b1 === a0) {
      pLo[k] = a0; pHi[k] = a0 + 1; dLo[k] = dHi[k] = -1;
      if (across < 0) { across = k; acrossEnd = false; }
    } else {
      return [];
    }
  }
  if (across < 0) throw new RangeError('shell boxes overlap: chunks must partition the volume');

  const [u, v] = otherAxes(across);
  const offA = faceOffsets(sa)[2 * across + (acrossEnd ? 1 : 0)];
  const offB = faceOffsets(sb)[2 * across + (acrossEnd ? 0 : 1)];
  const aU0 = a.box.begin[u], aV0 = a.box.begin[v], bU0 = b.box.begin[u], bV0 = b.box.begin[v];
  const bU1 = b.box.end[u], bV1 = b.box.end[v];
  const aNv = sa[v], bNv = sb[v];
  const pairs = new Map<number, Set<number>>();
  let lastA = 0, lastB = 0; // contacts come in runs of one pair: skip the map for repeats
  for (let pu = pLo[u]; pu < pHi[u]; pu++) {
    for (let pv = pLo[v]; pv < pHi[v]; pv++) {
      const ia = offA + (pu - aU0) * aNv + (pv - aV0);
      const idA = a.labels[ia];
      if (idA === 0) continue;
      const cA = a.classes[ia];
      for (let du = dLo[u]; du <= dHi[u]; du++) {
        const qu = pu + du;
        if (qu < bU0 || qu >= bU1) continue;
        for (let dv = dLo[v]; dv <= dHi[v]; dv++) {
          const qv = pv + dv;
          if (qv < bV0 || qv >= bV1) continue;
          const ib = offB + (qu - bU0) * bNv + (qv - bV0);
          const idB = b.labels[ib];
          if (idB === 0 || b.classes[ib] !== cA) continue;
          if (idA === lastA && idB === lastB) continue;
          lastA = idA; lastB = idB;
          let set = pairs.get(idA);
          if (!set) { set = new Set(); pairs.set(idA, set); }
          set.add(idB);
        }
      }
    }
  }
  const out: Array<[number, number]> = [];
  for (const idA of [...pairs.keys()].sort((x, y) => x - y)) {
    for (const idB of [...pairs.get(idA)!].sort((x, y) => x - y)) out.push([idA, idB]);
  }
  return out;
}

// ---------------------------------------------------------------- global ids

/**
 * Union-find over safe-integer ids, sparse (a Map): find() returns the smallest id of the set;
 * deterministic whatever the order of unions.
 *
 * Sparse because global ids run to the total object count of the volume while only objects
 * touching a chunk border ever enter it. The smallest id wins because it is an order-free rule:
 * the merge can take border pairs in any order (or from any number of workers) and still
 * produce the same ids.
 */
export class UnionFind {
  private readonly parent = new Map<number, number>();

  union(a: number, b: number): void {
    checkId(a);
    checkId(b);
    if (!this.parent.has(a)) this.parent.set(a, a);
    if (!this.parent.has(b)) this.parent.set(b, b);
    const ra = this.find(a);
    const rb = this.find(b);
    // Each root is its set's minimum, so the smaller root is the minimum of the union.
    if (ra < rb) this.parent.set(rb, ra);
    else if (rb < ra) this.parent.set(ra, rb);
  }

  /** An id never united is its own set (and is not stored). */
  find(a: number): number {
    const p = this.parent;
    let x = a;
    let px = p.get(x);
    if (px === undefined) return a;
    while (px !== x) {
      const gp = p.get(px)!;
      p.set(x, gp); // path halving
      x = gp;
      px = p.get(x)!;
    }
    return x;
  }

  /** Whether `a` was ever united with another id (an object that spans chunks). */
  has(a: number): boolean {
    return this.parent.has(a);
  }

  /** Number of ids ever united (members of some union), not the number of sets. */
  get size(): number {
    return this.parent.size;
  }

  /** Every stored id that is not its set's smallest, mapped to it: the `remap` relabel takes. */
  remap(): Map<number, number> {
    const out = new Map<number, number>();
    for (const id of [...this.parent.keys()].sort((x, y) => x - y)) {
      const r = this.find(id);
      if (r !== id) out.set(id, r);
    }
    return out;
  }
}

function checkId(a: number): void {
  if (!Number.isSafeInteger(a)) throw new RangeError(`id ${a} is not a safe integer`);
}

/**
 * Labels → global ids: id ↦ remap.get(offset + id) ?? offset + id (0 stays 0). Writes into a
 * Uint32Array; throws RangeError if an id exceeds 2^32−1.
 *
 * Local ids are dense (1..count), so the map is consulted once per id through a lookup table,
 * not once per voxel (a Map cache stands in when ids are too large for a table). The Uint32
 * ceiling is the label volume's dtype; going past it must fail loudly rather than wrap into
 * another object's id.
 */
export function relabel(labels: Uint32Array, offset: number, remap: ReadonlyMap<number, number>): Uint32Array {
  if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`offset ${offset} is not a non-negative safe integer`);
  const globalOf = (l: number): number => {
    const g = offset + l;
    const r = remap.get(g) ?? g;
    if (!Number.isSafeInteger(r) || r < 1 || r > 0xffffffff) {
      throw new RangeError(`global id ${r} (local ${l}, offset ${offset}) does not fit a uint32 label`);
    }
    return r;
  };
  let max = 0;
  for (let i = 0; i < labels.length; i++) if (labels[i] > max) max = labels[i];
  const out = new Uint32Array(labels.length);
  if (max <= labels.length) {
    // 0 in the table = not seen yet (a global id is never 0), so only ids present are checked.
    const table = new Uint32Array(max + 1);
    for (let i = 0; i < labels.length; i++) {
      const l = labels[i];
      if (l === 0) continue;
      let g = table[l];
      if (g === 0) g = table[l] = globalOf(l);
      out[i] = g;
    }
  } else {
    const cache = new Map<number, number>();
    for (let i = 0; i < labels.length; i++) {
      const l = labels[i];
      if (l === 0) continue;
      let g = cache.get(l);
      if (g === undefined) { g = globalOf(l); cache.set(l, g); }
      out[i] = g;
    }
  }
  return out;
}
