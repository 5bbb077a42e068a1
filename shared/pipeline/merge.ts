// Global instance ids across chunks without whole-volume state: a reduction over regions of
// chunks, up then down. Pure: tables in, tables out; the tasks (tasks/merge.ts) read and write
// them.
//
// The id rule. An object's id is 1 + the raster index (z·Y·X + y·X + x over the volume) of its
// first voxel in raster order. A chunk knows the first voxel of each of its parts (labelObjects
// numbers them in that order), and an object's first voxel is the smallest of its parts' first
// voxels, so the id is the minimum over its parts: a rule that needs no counting, no offsets
// and no order — the same ids whatever the chunking, the fan-in, the worker count or the order
// in which tasks finish. Ids need up to ⌈log2(Z·Y·X + 1)⌉ bits (uint32 up to 4.3·10⁹ voxels,
// uint64 beyond, as for FAFB).
//
// Up (joinRegion, task `merge<l>`): a region of fanIn³ children (chunks at level 1) joins the
// objects its children left open across their shared faces. An object is *open* at a region
// while one of its parts touches one of the region's open faces (a face with a neighbour in the
// run); it keeps the smallest id of its parts as its key. A region hands up only what is open
// (bounded by its surface, not its volume): its open objects with their rows summed, their
// parts on its open faces (where a contact from outside can land), and the contacts that leave
// it. An object no longer open is closed: its key is its final id.
//
// Down (settleRegion, task `resolve<l>`): from the top, each region learns the final id of each
// of its open objects (and the summed row of those whose first voxel it holds), and tells each
// child the final id of each of the child's open objects. At level 1 the children are chunks:
// relabel reads its chunk's list.
import type { Box } from '../geometry/box.ts';

/** Object rows: id key, class, box (6 numbers: begin z, y, x, end z, y, x), voxels, probability mass. */
export interface Rows {
  key: Float64Array;
  cls: Uint8Array;
  box: Float64Array;
  voxels: Float64Array;
  /** Σ meanProbability × voxels over the parts; NaN when the parts had no probabilities. */
  mass: Float64Array;
}

/** What a region hands its parent. */
export interface Summary {
  /** Objects open at the region's open faces. */
  open: Rows;
  /** Parts of open objects lying on an open face: id, their object's key, the open faces they touch (bit 2·axis + side). */
  part: Float64Array;
  partKey: Float64Array;
  partMask: Uint8Array;
  /** Contacts [a, b] from a part in the region to a part outside it, not yet joined. */
  edgeA: Float64Array;
  edgeB: Float64Array;
}

/** What a region decided, for the way down. */
export interface Decisions {
  /** Open objects per child, in child order; their keys, child after child; each one's root here. */
  childCounts: Uint32Array;
  childKey: Float64Array;
  root: Float64Array;
  /** Objects closed here; `key` is the final id. */
  closed: Rows;
}

/** Final ids for one child's open objects (every one of them, in the child's order). */
export interface Down {
  key: Float64Array;
  final: Float64Array;
  /** The summed row of the object, where its first voxel lies in this child (final = key); class 0 elsewhere. */
  row: Rows;
}

export function emptyRows(n = 0): Rows {
  return { key: new Float64Array(n), cls: new Uint8Array(n), box: new Float64Array(6 * n), voxels: new Float64Array(n), mass: new Float64Array(n) };
}

/** A part as a chunk labels it: its id (1 + first voxel's raster index), class, box, voxels, mean probability. */
export interface PartRow {
  anchor: number;
  class: number;
  box: Box;
  voxels: number;
  meanProbability?: number;
}

/**
 * A chunk as a leaf of the reduction: its parts that touch one of its open faces (`openFaces`,
 * bits 2·axis + side) are its open objects, each its own part; `edges` are its contacts with the
 * chunks after it ([a0, b0, a1, b1, …], faces task). Parts touching no open face are closed at
 * the chunk: their id is final and nothing above ever sees them.
 */
export function chunkSummary(rows: readonly PartRow[], chunk: Box, openFaces: number, edges: Float64Array): Summary {
  const masks = new Uint8Array(rows.length);
  let n = 0;
  for (let i = 0; i < rows.length; i++) {
    masks[i] = faceMask(rows[i].box, chunk) & openFaces;
    if (masks[i] !== 0) n++;
  }
  const open = emptyRows(n);
  const partMask = new Uint8Array(n);
  for (let i = 0, k = 0; i < rows.length; i++) {
    if (masks[i] === 0) continue;
    const r = rows[i];
    open.key[k] = r.anchor;
    open.cls[k] = r.class;
    for (let a = 0; a < 3; a++) { open.box[6 * k + a] = r.box.begin[a]; open.box[6 * k + 3 + a] = r.box.end[a]; }
    open.voxels[k] = r.voxels;
    open.mass[k] = r.meanProbability === undefined ? NaN : r.meanProbability * r.voxels;
    partMask[k++] = masks[i];
  }
  const edgeA = new Float64Array(edges.length / 2);
  const edgeB = new Float64Array(edges.length / 2);
  for (let e = 0; e < edgeA.length; e++) { edgeA[e] = edges[2 * e]; edgeB[e] = edges[2 * e + 1]; }
  return { open, part: open.key.slice(), partKey: open.key.slice(), partMask, edgeA, edgeB };
}

/** The faces of `outer` that box `b` touches (bit 2·axis + side). */
export function faceMask(b: Box, outer: Box): number {
  let m = 0;
  for (let a = 0; a < 3; a++) {
    if (b.begin[a] === outer.begin[a]) m |= 1 << (2 * a);
    if (b.end[a] === outer.end[a]) m |= 1 << (2 * a + 1);
  }
  return m;
}

/**
 * Ids → slots in typed arrays, open addressing: a JS Map keyed by ids past 2^30 (heap numbers)
 * costs several times more per entry, and a region of FAFB holds 10⁵–10⁶ of them. Ids are ≥ 1,
 * so 0 marks an empty bucket. The capacity is fixed at construction (twice the entries at most).
 */
export class IdIndex {
  private readonly keys: Float64Array;
  private readonly vals: Int32Array;
  private readonly mask: number;

  constructor(entries: number) {
    let cap = 16;
    while (cap < 2 * entries) cap *= 2;
    this.keys = new Float64Array(cap);
    this.vals = new Int32Array(cap);
    this.mask = cap - 1;
  }

  private bucket(id: number): number {
    let h = Math.imul((id >>> 0) ^ Math.imul(Math.floor(id / 4294967296), 0x27d4eb2d), 0x9e3779b1);
    h ^= h >>> 15;
    let i = h & this.mask;
    while (this.keys[i] !== 0 && this.keys[i] !== id) i = (i + 1) & this.mask;
    return i;
  }

  /** Sets `id` → `slot`; false when `id` was there already (its slot unchanged). */
  add(id: number, slot: number): boolean {
    if (!(id >= 1)) throw new RangeError(`id ${id} is not a positive id`);
    const i = this.bucket(id);
    if (this.keys[i] === id) return false;
    this.keys[i] = id;
    this.vals[i] = slot;
    return true;
  }

  /** The slot of `id`, or −1. */
  get(id: number): number {
    const i = this.bucket(id);
    return this.keys[i] === id ? this.vals[i] : -1;
  }
}

/** Union-find over slots whose root is the slot of the smallest key (the order-free rule). */
class MinKeyUnion {
  readonly parent: Int32Array;
  private readonly key: Float64Array;
  constructor(key: Float64Array) {
    this.key = key;
    this.parent = new Int32Array(key.length);
    for (let i = 0; i < key.length; i++) this.parent[i] = i;
  }

  find(i: number): number {
    const p = this.parent;
    while (p[i] !== i) { p[i] = p[p[i]]; i = p[i]; }
    return i;
  }

  union(a: number, b: number): void {
    const ra = this.find(a), rb = this.find(b);
    if (ra === rb) return;
    if (this.key[ra] < this.key[rb]) this.parent[rb] = ra;
    else this.parent[ra] = rb;
  }
}

export interface JoinGeometry {
  /** Per child: the child's open faces that lie on the region's open faces (bit 2·axis + side). */
  carry: readonly number[];
  /** Whether the part with this id lies in the region (its first voxel's chunk does). */
  inside: (id: number) => boolean;
  /** Names the region in errors. */
  what: string;
}

/** One region's join of its children's summaries (children in a fixed order: the sums are bit-stable). */
export function joinRegion(children: readonly Summary[], g: JoinGeometry): { summary: Summary; decisions: Decisions } {
  const fail = (why: string): never => { throw new RangeError(`${g.what}: ${why}`); };
  const n = children.reduce((s, c) => s + c.open.key.length, 0);
  const key = new Float64Array(n);
  const slotOf = new IdIndex(n);
  let at = 0;
  for (const c of children) {
    for (let i = 0; i < c.open.key.length; i++, at++) {
      key[at] = c.open.key[i];
      if (!slotOf.add(key[at], at)) fail(`object ${key[at]} is open in two children`);
    }
  }
  const uf = new MinKeyUnion(key);
  const partSlot = new IdIndex(children.reduce((s, c) => s + c.part.length, 0));
  const onFace = new Uint8Array(n); // slot has a part on one of the region's open faces
  children.forEach((c, ci) => {
    for (let p = 0; p < c.part.length; p++) {
      const s = slotOf.get(c.partKey[p]);
      if (s < 0) fail(`part ${c.part[p]} names object ${c.partKey[p]}, which its child does not hold`);
      partSlot.add(c.part[p], s);
      if (c.partMask[p] & g.carry[ci]) onFace[s] = 1;
    }
  });
  const outA: number[] = [];
  const outB: number[] = [];
  for (const c of children) {
    for (let e = 0; e < c.edgeA.length; e++) {
      const a = c.edgeA[e], b = c.edgeB[e];
      const sa = partSlot.get(a);
      if (sa < 0) fail(`contact ${a}–${b}: part ${a} is not on its child's faces`);
      const sb = partSlot.get(b);
      if (sb >= 0) uf.union(sa, sb);
      else if (g.inside(b)) fail(`contact ${a}–${b}: part ${b} lies here but no child lists it`);
      else { outA.push(a); outB.push(b); }
    }
  }
  return finishJoin(children, g, uf, key, onFace, partSlot, Float64Array.from(outA), Float64Array.from(outB));
}

function finishJoin(
  children: readonly Summary[], g: JoinGeometry, uf: MinKeyUnion, key: Float64Array, onFace: Uint8Array,
  partSlot: IdIndex, edgeA: Float64Array, edgeB: Float64Array,
): { summary: Summary; decisions: Decisions } {
  const n = key.length;
  const root = new Int32Array(n);
  const open = new Uint8Array(n);
  for (let s = 0; s < n; s++) {
    root[s] = uf.find(s);
    if (onFace[s]) open[root[s]] = 1;
  }
  // Rows summed per root, slot by slot in child order.
  const sum = emptyRows(n);
  let s = 0;
  for (const c of children) {
    for (let i = 0; i < c.open.key.length; i++, s++) addRow(sum, root[s], c.open, i);
  }
  const isRoot = (t: number) => root[t] === t;
  const openSlots: number[] = [];
  const closedSlots: number[] = [];
  for (let t = 0; t < n; t++) if (isRoot(t)) (open[t] ? openSlots : closedSlots).push(t);
  for (const t of [...openSlots, ...closedSlots]) sum.key[t] = key[t];
  const summaryParts: number[] = [];
  children.forEach((c, ci) => {
    for (let p = 0; p < c.part.length; p++) if (c.partMask[p] & g.carry[ci]) summaryParts.push(ci, p);
  });
  const part = new Float64Array(summaryParts.length / 2);
  const partKey = new Float64Array(part.length);
  const partMask = new Uint8Array(part.length);
  for (let k = 0; k < part.length; k++) {
    const c = children[summaryParts[2 * k]];
    const p = summaryParts[2 * k + 1];
    part[k] = c.part[p];
    partKey[k] = key[root[partSlot.get(part[k])]];
    partMask[k] = c.partMask[p] & g.carry[summaryParts[2 * k]];
  }
  const rootKey = new Float64Array(n);
  for (let t = 0; t < n; t++) rootKey[t] = key[root[t]];
  return {
    summary: { open: pickRows(sum, openSlots), part, partKey, partMask, edgeA, edgeB },
    decisions: { childCounts: Uint32Array.from(children.map((c) => c.open.key.length)), childKey: key, root: rootKey, closed: pickRows(sum, closedSlots) },
  };
}

/** Adds row `i` of `from` into row `r` of `to` (box union, voxels and mass summed). */
function addRow(to: Rows, r: number, from: Rows, i: number): void {
  if (to.cls[r] === 0) {
    to.cls[r] = from.cls[i];
    for (let a = 0; a < 6; a++) to.box[6 * r + a] = from.box[6 * i + a];
  } else {
    for (let a = 0; a < 3; a++) {
      to.box[6 * r + a] = Math.min(to.box[6 * r + a], from.box[6 * i + a]);
      to.box[6 * r + 3 + a] = Math.max(to.box[6 * r + 3 + a], from.box[6 * i + 3 + a]);
    }
  }
  to.voxels[r] += from.voxels[i];
  to.mass[r] += from.mass[i];
}

function pickRows(from: Rows, slots: readonly number[]): Rows {
  const out = emptyRows(slots.length);
  slots.forEach((t, k) => copyRow(out, k, from, t));
  return out;
}

function copyRow(to: Rows, k: number, from: Rows, t: number): void {
  to.key[k] = from.key[t];
  to.cls[k] = from.cls[t];
  for (let a = 0; a < 6; a++) to.box[6 * k + a] = from.box[6 * t + a];
  to.voxels[k] = from.voxels[t];
  to.mass[k] = from.mass[t];
}

/**
 * One region's way down: from its decisions and what its parent says of its open objects
 * (`fromParent`; none at the top, where nothing is open), the final ids of each child's open
 * objects.
 */
export function settleRegion(d: Decisions, fromParent: Down | undefined, what: string): Down[] {
  const closedAt = new IdIndex(d.closed.key.length);
  for (let i = 0; i < d.closed.key.length; i++) closedAt.add(d.closed.key[i], i);
  const parentAt = new IdIndex(fromParent?.key.length ?? 0);
  if (fromParent) for (let i = 0; i < fromParent.key.length; i++) parentAt.add(fromParent.key[i], i);
  const out: Down[] = [];
  let at = 0;
  for (const count of d.childCounts) {
    const down: Down = { key: d.childKey.slice(at, at + count), final: new Float64Array(count), row: emptyRows(count) };
    for (let k = 0; k < count; k++, at++) {
      const key = d.childKey[at], r = d.root[at];
      const c = closedAt.get(r);
      if (c >= 0) {
        down.final[k] = r;
        if (key === r) copyRow(down.row, k, d.closed, c);
        continue;
      }
      const p = parentAt.get(r);
      if (p < 0 || !fromParent) throw new RangeError(`${what}: object ${r} is open here but its parent says nothing of it`);
      down.final[k] = fromParent.final[p];
      if (key === fromParent.final[p]) {
        if (fromParent.row.cls[p] === 0) throw new RangeError(`${what}: object ${key} has its first voxel here but no row came down`);
        copyRow(down.row, k, fromParent.row, p);
      }
    }
    out.push(down);
  }
  return out;
}
