// A chunk's border: what its neighbours need to find the objects that continue across chunk
// faces, edges and corners (26-connectivity), in global object ids, and nothing more.
//
// - Six faces (the chunk's outer voxel planes), each as runs of equal id along its rows: a face
//   of a 96×1024×1024 chunk holds 10⁵–10⁶ voxels, mostly background, so runs make it a few KB.
// - Twelve edges (the lines where two faces meet), dense: a voxel there can touch a voxel of the
//   diagonal neighbour, which shares only that line (and eight corners, the edges' ends).
//
// Every part is stored as its own section of the border file, so the faces task of a chunk
// reads, of each neighbour, only the face or edge the two share (faces.ts). Ids are global and
// chunk-independent (the id of an object's part is 1 + the raster index of its first voxel in
// the volume, instances.ts), so a contact found here is already a pair of global ids.
//
// Section order: faces 0..5 = 2·axis + side (side 0: the plane at box.begin[axis], 1: at
// box.end[axis] − 1); edges 6..17 = 6 + 4·axis + 2·su + sv, the line along `axis` at sides su,
// sv of the other two axes u < v. A face's rows run along its first other axis, its columns
// along the second (a z face is [y][x], a y face [z][x], an x face [z][y]).
import type { Vec3 } from '../geometry/box.ts';
import { packColumns, unpackColumns } from '../array/columns.ts';

/** One face as runs: row r's runs are rowStart[r] .. rowStart[r + 1] − 1, sorted by start. */
export interface FaceRuns {
  rows: number;
  cols: number;
  rowStart: Uint32Array;
  start: Uint32Array;
  length: Uint32Array;
  id: Float64Array;
  cls: Uint8Array;
}

/** One edge line: the id and class of each voxel along it (0 = background). */
export interface EdgeLine {
  id: Float64Array;
  cls: Uint8Array;
}

export const FACES = 6;
export const SECTIONS = 18;

export function faceSection(axis: number, side: number): number {
  return 2 * axis + side;
}

export function edgeSection(axis: number, su: number, sv: number): number {
  return 6 + 4 * axis + 2 * su + sv;
}

export function otherAxes(a: number): [number, number] {
  return a === 0 ? [1, 2] : a === 1 ? [0, 2] : [0, 1];
}

/**
 * The border of a chunk of `shape` from its local labels (1..count, 0 = background), the global
 * id of each local label (`ids[l]`) and the class of each voxel. Returns the 18 sections, encoded.
 */
export function borderSections(labels: Uint32Array, ids: Float64Array, seg: Uint8Array, shape: Vec3): Uint8Array[] {
  const stride = [shape[1] * shape[2], shape[2], 1];
  const out: Uint8Array[] = [];
  for (let a = 0; a < 3; a++) {
    for (let side = 0; side < 2; side++) {
      const [u, v] = otherAxes(a);
      const base = (side ? shape[a] - 1 : 0) * stride[a];
      out.push(encodeFace(faceRuns(labels, ids, seg, base, shape[u], stride[u], shape[v], stride[v])));
    }
  }
  for (let a = 0; a < 3; a++) {
    const [u, v] = otherAxes(a);
    for (let su = 0; su < 2; su++) {
      for (let sv = 0; sv < 2; sv++) {
        const base = (su ? shape[u] - 1 : 0) * stride[u] + (sv ? shape[v] - 1 : 0) * stride[v];
        const n = shape[a];
        const id = new Float64Array(n);
        const cls = new Uint8Array(n);
        for (let t = 0, i = base; t < n; t++, i += stride[a]) {
          const l = labels[i];
          if (l !== 0) { id[t] = ids[l]; cls[t] = seg[i]; }
        }
        out.push(packColumns([id, cls]));
      }
    }
  }
  return out;
}

/**
 * The border of a chunk of `shape` with no object (what borderSections gives for all-zero labels),
 * without a chunk-sized array: a chunk the tissue mask skips.
 */
export function emptyBorderSections(shape: Vec3): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let a = 0; a < 3; a++) {
    const [u, v] = otherAxes(a);
    for (let side = 0; side < 2; side++) {
      out.push(encodeFace({ rows: shape[u], cols: shape[v], rowStart: new Uint32Array(shape[u] + 1), start: new Uint32Array(0), length: new Uint32Array(0), id: new Float64Array(0), cls: new Uint8Array(0) }));
    }
  }
  for (let a = 0; a < 3; a++) for (let k = 0; k < 4; k++) out.push(packColumns([new Float64Array(shape[a]), new Uint8Array(shape[a])]));
  return out;
}

function faceRuns(labels: Uint32Array, ids: Float64Array, seg: Uint8Array, base: number, rows: number, su: number, cols: number, sv: number): FaceRuns {
  const rowStart = new Uint32Array(rows + 1);
  const start: number[] = [];
  const length: number[] = [];
  const id: number[] = [];
  const cls: number[] = [];
  for (let r = 0; r < rows; r++) {
    rowStart[r] = start.length;
    let prev = 0;
    for (let c = 0, i = base + r * su; c < cols; c++, i += sv) {
      const l = labels[i];
      if (l === 0) { prev = 0; continue; }
      if (l === prev) { length[length.length - 1]++; continue; }
      prev = l;
      start.push(c); length.push(1); id.push(ids[l]); cls.push(seg[i]);
    }
  }
  rowStart[rows] = start.length;
  return { rows, cols, rowStart, start: Uint32Array.from(start), length: Uint32Array.from(length), id: Float64Array.from(id), cls: Uint8Array.from(cls) };
}

/** One face as its border section (what borderSections writes for it). */
export function encodeFace(f: FaceRuns): Uint8Array {
  return packColumns([Uint32Array.of(f.rows, f.cols), f.rowStart, f.start, f.length, f.id, f.cls]);
}

export function decodeFace(b: Uint8Array, what: string): FaceRuns {
  const c = unpackColumns(b, what);
  const [dims, rowStart, start, length, id, cls] = c as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Float64Array, Uint8Array];
  const ok = c.length === 6 && dims instanceof Uint32Array && dims.length === 2 && rowStart instanceof Uint32Array
    && rowStart.length === dims[0] + 1 && start instanceof Uint32Array && length instanceof Uint32Array
    && id instanceof Float64Array && cls instanceof Uint8Array && [length, id, cls].every((x) => x.length === start.length)
    && rowStart[dims[0]] === start.length;
  if (!ok) throw new RangeError(`${what}: not a face of runs`);
  return { rows: dims[0], cols: dims[1], rowStart, start, length, id, cls };
}

export function decodeEdge(b: Uint8Array, what: string): EdgeLine {
  const c = unpackColumns(b, what);
  if (c.length !== 2 || !(c[0] instanceof Float64Array) || !(c[1] instanceof Uint8Array) || c[0].length !== c[1].length) {
    throw new RangeError(`${what}: not an edge line`);
  }
  return { id: c[0], cls: c[1] };
}

/** Contacts as pairs of ids, deduplicated and sorted when taken. */
export class Contacts {
  private a: number[] = [];
  private b: number[] = [];

  add(a: number, b: number): void {
    const n = this.a.length;
    // Runs meet their neighbours row after row: skip the repeats in a row cheaply.
    if (n > 0 && this.a[n - 1] === a && this.b[n - 1] === b) return;
    this.a.push(a);
    this.b.push(b);
  }

  /** [a0, b0, a1, b1, …] sorted by a then b, each pair once. */
  pairs(): Float64Array {
    const order = this.a.map((_, i) => i).sort((i, j) => this.a[i] - this.a[j] || this.b[i] - this.b[j]);
    const out: number[] = [];
    for (const i of order) {
      const n = out.length;
      if (n > 0 && out[n - 2] === this.a[i] && out[n - 1] === this.b[i]) continue;
      out.push(this.a[i], this.b[i]);
    }
    return Float64Array.from(out);
  }
}

/**
 * Objects of one class 26-adjacent across two faces that touch (the same rows × cols, one
 * voxel apart): a voxel (r, c) of `a` touches (r ± 1, c ± 1) of `b`. Run against run, so the
 * cost follows the foreground on the faces, not their area.
 */
export function faceContacts(a: FaceRuns, b: FaceRuns, out: Contacts): void {
  if (a.rows !== b.rows || a.cols !== b.cols) throw new RangeError(`faces of ${a.rows}×${a.cols} and ${b.rows}×${b.cols} voxels cannot touch`);
  for (let r = 0; r < a.rows; r++) {
    const a0 = a.rowStart[r], a1 = a.rowStart[r + 1];
    if (a0 === a1) continue;
    for (let rb = Math.max(0, r - 1); rb <= Math.min(b.rows - 1, r + 1); rb++) {
      let j = b.rowStart[rb];
      const b1 = b.rowStart[rb + 1];
      for (let i = a0; i < a1 && j < b1; i++) {
        // a's run [s, e) reaches b's columns [s − 1, e + 1).
        const s = a.start[i] - 1, e = a.start[i] + a.length[i] + 1;
        while (j < b1 && b.start[j] + b.length[j] <= s) j++;
        for (let k = j; k < b1 && b.start[k] < e; k++) {
          if (a.cls[i] === b.cls[k]) out.add(a.id[i], b.id[k]);
        }
      }
    }
  }
}

/** Objects of one class adjacent across two parallel edge lines (diagonal neighbours). */
export function edgeContacts(a: EdgeLine, b: EdgeLine, out: Contacts): void {
  if (a.id.length !== b.id.length) throw new RangeError(`edges of ${a.id.length} and ${b.id.length} voxels cannot touch`);
  const n = a.id.length;
  for (let t = 0; t < n; t++) {
    if (a.id[t] === 0) continue;
    for (let u = Math.max(0, t - 1); u <= Math.min(n - 1, t + 1); u++) {
      if (b.id[u] !== 0 && b.cls[u] === a.cls[t]) out.add(a.id[t], b.id[u]);
    }
  }
}

/** The 13 neighbour offsets after a chunk in raster order: each pair of chunks is looked at once. */
export const FORWARD: readonly Vec3[] = (() => {
  const out: Vec3[] = [];
  for (let dz = -1; dz <= 1; dz++) for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
    if (dz > 0 || (dz === 0 && (dy > 0 || (dy === 0 && dx > 0)))) out.push([dz, dy, dx]);
  }
  return out;
})();

/**
 * Which section of the first chunk and which of its neighbour at offset `d` hold the voxels that
 * can touch, and how to compare them: two faces, two edge lines, or the two ends of edge lines
 * (a corner neighbour: the z-edge lines, at the corner's end of each).
 */
export type Touch =
  | { kind: 'face'; mine: number; theirs: number }
  | { kind: 'edge'; mine: number; theirs: number }
  | { kind: 'corner'; mine: number; theirs: number; mineAt: 'first' | 'last'; theirsAt: 'first' | 'last' };

export function touchOf(d: Vec3): Touch {
  const on = [0, 1, 2].filter((a) => d[a] !== 0);
  const side = (a: number) => (d[a] > 0 ? 1 : 0);
  if (on.length === 1) {
    const a = on[0];
    return { kind: 'face', mine: faceSection(a, side(a)), theirs: faceSection(a, 1 - side(a)) };
  }
  if (on.length === 2) {
    const a = [0, 1, 2].find((x) => d[x] === 0)!;
    const [u, v] = otherAxes(a);
    return { kind: 'edge', mine: edgeSection(a, side(u), side(v)), theirs: edgeSection(a, 1 - side(u), 1 - side(v)) };
  }
  if (on.length === 3) {
    return {
      kind: 'corner', mine: edgeSection(0, side(1), side(2)), theirs: edgeSection(0, 1 - side(1), 1 - side(2)),
      mineAt: side(0) ? 'last' : 'first', theirsAt: side(0) ? 'first' : 'last',
    };
  }
  throw new RangeError(`offset ${d.join(',')} is not a neighbour`);
}

/** The contacts between a chunk and its neighbour at offset `d`, from the two sections `touchOf(d)` names. */
export function contactsAcross(d: Vec3, mine: Uint8Array, theirs: Uint8Array, out: Contacts, what: string): void {
  const t = touchOf(d);
  if (t.kind === 'face') {
    faceContacts(decodeFace(mine, `${what} (this chunk's face)`), decodeFace(theirs, `${what} (neighbour's face)`), out);
    return;
  }
  const a = decodeEdge(mine, `${what} (this chunk's edge)`);
  const b = decodeEdge(theirs, `${what} (neighbour's edge)`);
  if (t.kind === 'edge') {
    edgeContacts(a, b, out);
    return;
  }
  const i = t.mineAt === 'last' ? a.id.length - 1 : 0;
  const j = t.theirsAt === 'last' ? b.id.length - 1 : 0;
  if (i >= 0 && j >= 0 && a.id[i] !== 0 && b.id[j] !== 0 && a.cls[i] === b.cls[j]) out.add(a.id[i], b.id[j]);
}

