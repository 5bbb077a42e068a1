import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Box, type Vec3, box, shapeOf } from '../../shared/geometry/box.ts';
import { type Array3, array3, copyRegion, crop, zerosU8 } from '../../shared/array/array3.ts';
import { label } from '../../shared/array/components.ts';
import {
  type LocalObjects, type Shell, UnionFind, borderEdges, decodeShell, encodeShell, labelObjects, relabel, shellOf,
} from '../../shared/pipeline/instances.ts';
import { randInt, rng } from '../helpers/rng.ts';
import { Lru, readAhead } from '../../shared/cache.ts';

const idx = (s: Vec3, z: number, y: number, x: number) => (z * s[1] + y) * s[2] + x;

function segOf(shape: Vec3, on: Array<[number, number, number, number]>): Array3<Uint8Array> {
  const a = zerosU8(shape);
  for (const [z, y, x, c] of on) a.data[idx(shape, z, y, x)] = c;
  return a;
}

function randomSeg(r: () => number, shape: Vec3, density: number, classes: number): Array3<Uint8Array> {
  const a = zerosU8(shape);
  for (let i = 0; i < a.data.length; i++) if (r() < density) a.data[i] = 1 + Math.floor(r() * classes);
  return a;
}

/** Asserts the two labellings split the voxels into the same objects (ids may differ). */
function assertSamePartition(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  assert.equal(got.length, want.length);
  const g2w = new Map<number, number>();
  const w2g = new Map<number, number>();
  for (let i = 0; i < got.length; i++) {
    const g = got[i], w = want[i];
    if ((g === 0) !== (w === 0)) assert.fail(`${what}: voxel ${i} is background in one labelling only (${g}, ${w})`);
    if (g === 0) continue;
    if ((g2w.get(g) ?? w) !== w) assert.fail(`${what}: id ${g} covers two objects (${g2w.get(g)}, ${w}) — a false join`);
    if ((w2g.get(w) ?? g) !== g) assert.fail(`${what}: object ${w} got two ids (${w2g.get(w)}, ${g}) — a missed join`);
    g2w.set(g, w);
    w2g.set(w, g);
  }
}

// ---------------------------------------------------------------- labelObjects

test('labelObjects: two classes touching each other stay separate objects', () => {
  // A 1×2×3 slab: class 1 on the left, class 2 on the right, face to face.
  const seg = segOf([1, 2, 3], [[0, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 2], [0, 1, 1, 2], [0, 1, 2, 2]]);
  const lo = labelObjects(seg, [0, 0, 0]);
  assert.equal(lo.count, 2);
  assert.deepEqual(Array.from(lo.labels), [1, 2, 0, 1, 2, 2]);
  assert.deepEqual(lo.objects.map((o) => [o.id, o.class, o.voxels]), [[1, 1, 2], [2, 2, 3]]);
  // The same layout with one class is one object.
  const one = labelObjects(array3(seg.data.map((v) => (v ? 7 : 0)), seg.shape), [0, 0, 0]);
  assert.equal(one.count, 1);
});

test('labelObjects: 26-connectivity — corner, edge and anti-diagonal contacts join', () => {
  const s: Vec3 = [2, 2, 2];
  assert.equal(labelObjects(segOf(s, [[0, 0, 0, 3], [1, 1, 1, 3]]), [0, 0, 0]).count, 1); // corner
  assert.equal(labelObjects(segOf(s, [[0, 1, 1, 3], [1, 0, 0, 3]]), [0, 0, 0]).count, 1); // corner, anti
  assert.equal(labelObjects(segOf(s, [[0, 0, 1, 3], [1, 1, 0, 3]]), [0, 0, 0]).count, 1); // corner, anti
  assert.equal(labelObjects(segOf(s, [[0, 0, 0, 3], [0, 1, 1, 3]]), [0, 0, 0]).count, 1); // edge
  assert.equal(labelObjects(segOf(s, [[0, 1, 0, 3], [1, 0, 1, 3]]), [0, 0, 0]).count, 1); // corner
  // A corner contact of different classes does not join; nor does a gap of one voxel.
  assert.equal(labelObjects(segOf(s, [[0, 0, 0, 3], [1, 1, 1, 4]]), [0, 0, 0]).count, 2);
  assert.equal(labelObjects(segOf([1, 1, 3], [[0, 0, 0, 1], [0, 0, 2, 1]]), [0, 0, 0]).count, 2);
});

test('labelObjects: ids in raster order of each object\'s first voxel, merges included', () => {
  // z = 0 slice (x fastest):
  //   0 0 0 1        class 1 starts at (0,3) → 1
  //   2 0 0 1        class 2 starts at (1,0) → 2, although its last voxel comes after
  //   2 0 1 1        class 1's
  //   0 2 0 0
  // A V shape of class 5 whose arms meet only on the last row: two provisional labels, one id.
  const seg = segOf([1, 4, 4], [
    [0, 0, 3, 1], [0, 1, 3, 1], [0, 2, 2, 1], [0, 2, 3, 1],
    [0, 1, 0, 2], [0, 2, 0, 2], [0, 3, 1, 2],
  ]);
  const lo = labelObjects(seg, [0, 0, 0]);
  assert.deepEqual(Array.from(lo.labels), [0, 0, 0, 1, 2, 0, 0, 1, 2, 0, 1, 1, 0, 2, 0, 0]);
  const v = segOf([1, 3, 5], [[0, 0, 0, 5], [0, 0, 4, 5], [0, 1, 1, 5], [0, 1, 3, 5], [0, 2, 2, 5], [0, 1, 2, 6]]);
  const lv = labelObjects(v, [0, 0, 0]);
  assert.equal(lv.count, 2);
  // V (class 5) first voxel (0,0) → 1; the class-6 voxel in its middle → 2.
  assert.deepEqual(Array.from(lv.labels), [1, 0, 0, 0, 1, 0, 1, 2, 1, 0, 0, 0, 1, 0, 0]);
  assert.ok(lv.objects.every((o, k) => o.id === k + 1));
});

test('labelObjects: box, voxels and meanProbability on a hand-made volume, origin added', () => {
  const s: Vec3 = [3, 4, 5];
  const seg = segOf(s, [
    // object 1 (class 2): an L from (0,1,1) to (1,2,3)
    [0, 1, 1, 2], [0, 1, 2, 2], [1, 2, 3, 2],
    // object 2 (class 1): a single voxel
    [0, 3, 4, 1],
    // object 3 (class 1): two voxels along z
    [1, 0, 0, 1], [2, 0, 0, 1],
  ]);
  const p1 = array3(new Float32Array(60), s);
  const p2 = array3(new Float32Array(60), s);
  p1.data[idx(s, 0, 3, 4)] = 0.75;
  p1.data[idx(s, 1, 0, 0)] = 0.5;
  p1.data[idx(s, 2, 0, 0)] = 0.25;
  p1.data[idx(s, 0, 1, 1)] = 0.125; // class-1 probability under a class-2 voxel: must not count
  p2.data[idx(s, 0, 1, 1)] = 1;
  p2.data[idx(s, 0, 1, 2)] = 0.5;
  p2.data[idx(s, 1, 2, 3)] = 0.75;
  const lo = labelObjects(seg, [100, -20, 7], [p1, p2]);
  assert.equal(lo.count, 3);
  assert.deepEqual(lo.objects, [
    { id: 1, class: 2, box: box([100, -19, 8], [102, -17, 11]), voxels: 3, meanProbability: 0.75 },
    { id: 2, class: 1, box: box([100, -17, 11], [101, -16, 12]), voxels: 1, meanProbability: 0.75 },
    { id: 3, class: 1, box: box([101, -20, 7], [103, -19, 8]), voxels: 2, meanProbability: 0.375 },
  ]);
  // Without probabilities the field is absent, not undefined-valued.
  const plain = labelObjects(seg, [0, 0, 0]);
  assert.ok(plain.objects.every((o) => !('meanProbability' in o)));
  // Probabilities for fewer classes than present, or of another shape, are refused.
  assert.throws(() => labelObjects(seg, [0, 0, 0], [p1]), RangeError);
  assert.throws(() => labelObjects(seg, [0, 0, 0], [p1, array3(new Float32Array(60), [3, 5, 4])]), RangeError);
  assert.throws(() => labelObjects({ data: new Uint8Array(5), shape: [1, 2, 3] }, [0, 0, 0]), RangeError);
});

test('labelObjects: empty volumes', () => {
  const e = labelObjects(zerosU8([3, 4, 5]), [1, 2, 3]);
  assert.equal(e.count, 0);
  assert.deepEqual(e.objects, []);
  assert.equal(e.labels.length, 60);
  assert.ok(e.labels.every((v) => v === 0));
  const z = labelObjects(zerosU8([0, 4, 5]), [0, 0, 0]);
  assert.equal(z.count, 0);
  assert.equal(z.labels.length, 0);
});

test('labelObjects: random multi-class volumes equal per-class `label` (26) renumbered in raster order', () => {
  const r = rng(7);
  for (let t = 0; t < 25; t++) {
    const s: Vec3 = [randInt(r, 1, 9), randInt(r, 1, 11), randInt(r, 1, 13)];
    const classes = randInt(r, 1, 5);
    const seg = randomSeg(r, s, 0.2 + r() * 0.5, classes);
    const got = labelObjects(seg, [0, 0, 0]);
    // Reference: each class separately, then ids by first appearance in raster order.
    const perClass = new Map<number, Int32Array>();
    for (let c = 1; c <= classes; c++) perClass.set(c, label(seg.data.map((v) => (v === c ? 1 : 0)), s, 26).labels);
    const first = new Map<string, number>();
    const want = new Uint32Array(seg.data.length);
    const voxels: number[] = [];
    for (let i = 0; i < seg.data.length; i++) {
      const c = seg.data[i];
      if (!c) continue;
      const key = `${c}:${perClass.get(c)![i]}`;
      if (!first.has(key)) first.set(key, first.size + 1);
      const id = first.get(key)!;
      want[i] = id;
      voxels[id - 1] = (voxels[id - 1] ?? 0) + 1;
    }
    assert.equal(got.count, first.size, `count, shape ${s}`);
    assert.deepEqual(got.labels, want, `labels, shape ${s}`);
    assert.deepEqual(got.objects.map((o) => o.voxels), voxels);
  }
});

// ---------------------------------------------------------------- chunked → global

interface Chunked {
  global: Uint32Array;
  boxes: Box[];
  shells: Shell[];
  locals: LocalObjects[];
  offsets: number[];
  edges: Map<string, Array<[number, number]>>;
}

/**
 * The whole pipeline on one machine: cut `seg` at `cuts` (per axis, the inner boundaries),
 * label each chunk alone, pass shells through their binary form, join across every pair of
 * chunks, relabel, paste back.
 */
function chunkedGlobal(seg: Array3<Uint8Array>, cuts: [number[], number[], number[]]): Chunked {
  const bounds = cuts.map((c, a) => [0, ...c, seg.shape[a]]);
  const boxes: Box[] = [];
  for (let i = 0; i + 1 < bounds[0].length; i++) {
    for (let j = 0; j + 1 < bounds[1].length; j++) {
      for (let k = 0; k + 1 < bounds[2].length; k++) {
        boxes.push(box([bounds[0][i], bounds[1][j], bounds[2][k]], [bounds[0][i + 1], bounds[1][j + 1], bounds[2][k + 1]]));
      }
    }
  }
  const locals: LocalObjects[] = [];
  const shells: Shell[] = [];
  const offsets: number[] = [];
  let offset = 0;
  for (const b of boxes) {
    const part = crop(seg, [0, 0, 0], b);
    const lo = labelObjects(part, b.begin);
    locals.push(lo);
    shells.push(decodeShell(encodeShell(shellOf(lo, part, b))));
    offsets.push(offset);
    offset += lo.count;
  }
  const uf = new UnionFind();
  const edges = new Map<string, Array<[number, number]>>();
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const e = borderEdges(shells[i], shells[j]);
      edges.set(`${i},${j}`, e);
      for (const [a, b] of e) uf.union(offsets[i] + a, offsets[j] + b);
    }
  }
  const remap = uf.remap();
  const global = array3(new Uint32Array(seg.data.length), seg.shape);
  for (let i = 0; i < boxes.length; i++) {
    const g = relabel(locals[i].labels, offsets[i], remap);
    copyRegion(array3(g, shapeOf(boxes[i])), boxes[i].begin, global, [0, 0, 0], boxes[i]);
  }
  return { global: global.data, boxes, shells, locals, offsets, edges };
}

function distinct(a: ArrayLike<number>): number {
  const s = new Set<number>();
  for (let i = 0; i < a.length; i++) if (a[i]) s.add(a[i]);
  return s.size;
}

test('chunked: 2×2×2 chunks of random sparse volumes joined by shells equal labelling the whole volume', () => {
  const r = rng(4242);
  const S: Vec3 = [13, 15, 17];
  for (let t = 0; t < 12; t++) {
    const seg = randomSeg(r, S, [0.05, 0.15, 0.3][t % 3], 3);
    const cut: Vec3 = [randInt(r, 4, S[0] - 3), randInt(r, 4, S[1] - 3), randInt(r, 4, S[2] - 3)];
    const [cz, cy, cx] = cut;
    // Far from the central corner along each axis, for the edge plants.
    const far = cut.map((c, a) => (c >= S[a] / 2 ? 1 : S[a] - 2)) as unknown as Vec3;
    const plants: Array<[number, number, number, number]> = [];
    const corner = t % 2 === 0
      // One object (class 2) of all eight voxels around the corner shared by all eight chunks.
      ? [[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1], [1, 0, 0], [1, 0, 1], [1, 1, 0], [1, 1, 1]].map(([a, b, c]) => [cz - 1 + a, cy - 1 + b, cx - 1 + c, 2] as [number, number, number, number])
      // Two diagonals crossing at that corner, touching each other: class 1 joins chunks 0 and 7
      // by the corner alone; class 3 joins chunks (0,0,1) and (1,1,0) by the corner alone.
      : [[cz - 1, cy - 1, cx - 1, 1], [cz, cy, cx, 1], [cz - 1, cy - 1, cx, 3], [cz, cy, cx - 1, 3]] as Array<[number, number, number, number]>;
    plants.push(...corner);
    // Diagonal-only contacts across each of the three edge directions (class 1).
    const edgeX: Array<[number, number, number, number]> = [[cz - 1, cy - 1, far[2], 1], [cz, cy, far[2], 1]];
    const edgeY: Array<[number, number, number, number]> = [[cz - 1, far[1], cx - 1, 1], [cz, far[1], cx, 1]];
    const edgeZ: Array<[number, number, number, number]> = [[far[0], cy, cx - 1, 1], [far[0], cy - 1, cx, 1]]; // anti-diagonal
    plants.push(...edgeX, ...edgeY, ...edgeZ);
    // Clear each plant's neighbourhood so only the planted contacts can join its voxels.
    for (const [z, y, x] of plants) {
      for (let dz = -1; dz <= 1; dz++) for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
        const p = [z + dz, y + dy, x + dx];
        if (p.every((v, a) => v >= 0 && v < S[a])) seg.data[idx(S, p[0], p[1], p[2])] = 0;
      }
    }
    for (const [z, y, x, c] of plants) seg.data[idx(S, z, y, x)] = c;

    const whole = labelObjects(seg, [0, 0, 0]);
    const got = chunkedGlobal(seg, [[cz], [cy], [cx]]);
    assert.equal(distinct(got.global), whole.count, `object count, seed step ${t}`);
    assertSamePartition(got.global, whole.labels, `step ${t}`);
    // Global ids stay within the running sum of local counts.
    const total = got.locals.reduce((n, l) => n + l.count, 0);
    assert.ok(got.global.every((v) => v <= total));

    const at = (p: readonly number[]) => got.global[idx(S, p[0], p[1], p[2])];
    if (t % 2 === 0) {
      assert.ok(corner.every((p) => at(p) === at(corner[0])), 'the 8-chunk object has one id');
      // Every chunk holds a piece of it, so all 28 pairs see it.
      assert.equal(got.edges.size, 28);
      for (const e of got.edges.values()) assert.ok(e.length > 0);
    } else {
      assert.equal(at(corner[0]), at(corner[1]), 'corner-only contact joins (chunks 0 and 7)');
      assert.equal(at(corner[2]), at(corner[3]), 'corner-only contact joins (chunks 1 and 6)');
      assert.notEqual(at(corner[0]), at(corner[2]), 'touching objects of other classes stay apart');
      // Chunks 0 and 7 touch only at the corner: the planted diagonal is their one contact there.
      const l0 = got.locals[0].labels[got.locals[0].labels.length - 1];
      const l7 = got.locals[7].labels[0];
      assert.ok(got.edges.get('0,7')!.some(([a, b]) => a === l0 && b === l7));
    }
    for (const e of [edgeX, edgeY, edgeZ]) assert.equal(at(e[0]), at(e[1]), `edge-only contact joins at ${e[0]}`);
  }
});

test('chunked: random grids (up to 3×3×3, chunks one voxel thick) equal labelling the whole volume', () => {
  const r = rng(99);
  for (let t = 0; t < 40; t++) {
    const S: Vec3 = [randInt(r, 2, 10), randInt(r, 2, 10), randInt(r, 2, 10)];
    const cuts = S.map((n) => {
      const k = randInt(r, 0, Math.min(3, n));
      const set = new Set<number>();
      while (set.size < k) set.add(randInt(r, 1, n));
      return [...set].sort((a, b) => a - b);
    }) as [number[], number[], number[]];
    const seg = randomSeg(r, S, 0.1 + r() * 0.3, 1 + randInt(r, 0, 3));
    const whole = labelObjects(seg, [0, 0, 0]);
    const got = chunkedGlobal(seg, cuts);
    assert.equal(distinct(got.global), whole.count, `count, shape ${S}, cuts ${JSON.stringify(cuts)}`);
    assertSamePartition(got.global, whole.labels, `shape ${S}, cuts ${JSON.stringify(cuts)}`);
  }
});

// ---------------------------------------------------------------- borderEdges

function shellFrom(seg: Array3<Uint8Array>, begin: Vec3): Shell {
  const b = box(begin, [begin[0] + seg.shape[0], begin[1] + seg.shape[1], begin[2] + seg.shape[2]]);
  return shellOf(labelObjects(seg, begin), seg, b);
}

test('borderEdges: face, edge and corner contacts; classes; dedup, sort and symmetry', () => {
  const s: Vec3 = [2, 3, 3];
  // A at [0,2)×[0,3)×[0,3). Its x-end face (x = 2) holds ids 1 (class 1, two voxels) and 2 (class 2).
  const A = segOf(s, [[0, 0, 2, 1], [0, 1, 2, 1], [1, 2, 2, 2]]);
  // B next to it along x: [0,2)×[0,3)×[3,6). Class-1 voxel facing both id-1 voxels; class-1 voxel
  // diagonal to A's class-2 voxel (different class → no pair).
  const B = segOf(s, [[0, 0, 0, 1], [1, 1, 0, 1]]);
  const a = shellFrom(A, [0, 0, 0]);
  const b = shellFrom(B, [0, 0, 3]);
  // B's voxels (0,0,0) and (1,1,0) are corner-adjacent in B: one object, id 1.
  assert.deepEqual(borderEdges(a, b), [[1, 1]]);
  assert.deepEqual(borderEdges(b, a), [[1, 1]]);
  // Several objects each side: sorted by A id, then B id.
  const A2 = segOf([1, 3, 1], [[0, 0, 0, 4], [0, 2, 0, 4]]);
  const B2 = segOf([1, 3, 1], [[0, 0, 0, 4], [0, 2, 0, 4]]);
  const a2 = shellFrom(A2, [5, 5, 5]);
  const b2 = shellFrom(B2, [5, 5, 6]);
  assert.deepEqual(borderEdges(a2, b2), [[1, 1], [2, 2]]);
  const B3 = segOf([1, 3, 1], [[0, 1, 0, 4]]); // touches both A2 objects diagonally
  assert.deepEqual(borderEdges(a2, shellFrom(B3, [5, 5, 6])), [[1, 1], [2, 1]]);
  assert.deepEqual(borderEdges(shellFrom(B3, [5, 5, 6]), a2), [[1, 1], [1, 2]]);
  // Edge contact (boxes adjacent along z and y) and corner contact (along all three).
  const one = segOf([1, 1, 1], [[0, 0, 0, 9]]);
  const c0 = shellFrom(one, [0, 0, 0]);
  assert.deepEqual(borderEdges(c0, shellFrom(one, [1, 1, 0])), [[1, 1]]);
  assert.deepEqual(borderEdges(c0, shellFrom(one, [-1, 1, -1])), [[1, 1]]);
  assert.deepEqual(borderEdges(c0, shellFrom(one, [1, -1, 1])), [[1, 1]]);
  // Boxes that do not touch: a gap along one axis, or offset by two along another.
  assert.deepEqual(borderEdges(c0, shellFrom(one, [2, 0, 0])), []);
  assert.deepEqual(borderEdges(c0, shellFrom(one, [1, 2, 0])), []);
  // Touching boxes (sharing a z face, shifted in x) whose border voxels are two apart give
  // nothing; one apart, a pair.
  const p = segOf([1, 1, 4], [[0, 0, 0, 1]]);
  assert.deepEqual(borderEdges(shellFrom(p, [0, 0, 0]), shellFrom(p, [1, 0, 2])), []);
  assert.deepEqual(borderEdges(shellFrom(p, [0, 0, 0]), shellFrom(p, [1, 0, 1])), [[1, 1]]);
  assert.deepEqual(borderEdges(shellFrom(p, [1, 0, 1]), shellFrom(p, [0, 0, 0])), [[1, 1]]);
  // Overlapping boxes are not a chunking.
  assert.throws(() => borderEdges(c0, c0), RangeError);
});

test('borderEdges: misaligned neighbours (different extents) find contacts past each other\'s range', () => {
  // A spans y [0,4); B (above it in z) spans y [4,8): they touch along an edge (z and y adjacent).
  const A = segOf([2, 4, 1], [[1, 3, 0, 1]]);
  const B = segOf([2, 4, 1], [[0, 0, 0, 1]]);
  assert.deepEqual(borderEdges(shellFrom(A, [0, 0, 0]), shellFrom(B, [2, 4, 0])), [[1, 1]]);
  // B shifted to y [2,6): now they share a z face over y [2,4); A's voxel at y 3 reaches B's at y 4.
  const B2 = segOf([2, 4, 1], [[0, 2, 0, 1]]);
  assert.deepEqual(borderEdges(shellFrom(A, [0, 0, 0]), shellFrom(B2, [2, 2, 0])), [[1, 1]]);
  // And A's voxel at y 1, below B2's range, reaches B2's at y 2.
  const A3 = segOf([2, 4, 1], [[1, 1, 0, 1]]);
  const B3 = segOf([2, 4, 1], [[0, 0, 0, 1]]);
  assert.deepEqual(borderEdges(shellFrom(A3, [0, 0, 0]), shellFrom(B3, [2, 2, 0])), [[1, 1]]);
  assert.deepEqual(borderEdges(shellFrom(A3, [0, 0, 0]), shellFrom(B2, [2, 2, 0])), []);
});

// ---------------------------------------------------------------- shells

test('shellOf: faces in the documented order and layout', () => {
  const s: Vec3 = [2, 3, 4];
  const seg = array3(Uint8Array.from({ length: 24 }, (_, i) => 1 + (i % 3)), s);
  const lo: LocalObjects = { labels: Uint32Array.from({ length: 24 }, (_, i) => i + 1), count: 24, objects: [] };
  const sh = shellOf(lo, seg, box([10, 20, 30], [12, 23, 34]));
  const z0 = [], z1 = [], y0 = [], y1 = [], x0 = [], x1 = [];
  for (let y = 0; y < 3; y++) for (let x = 0; x < 4; x++) { z0.push(idx(s, 0, y, x) + 1); z1.push(idx(s, 1, y, x) + 1); }
  for (let z = 0; z < 2; z++) for (let x = 0; x < 4; x++) { y0.push(idx(s, z, 0, x) + 1); y1.push(idx(s, z, 2, x) + 1); }
  for (let z = 0; z < 2; z++) for (let y = 0; y < 3; y++) { x0.push(idx(s, z, y, 0) + 1); x1.push(idx(s, z, y, 3) + 1); }
  const want = [...z0, ...z1, ...y0, ...y1, ...x0, ...x1];
  assert.deepEqual(Array.from(sh.labels), want);
  assert.deepEqual(Array.from(sh.classes), want.map((v) => 1 + ((v - 1) % 3)));
  assert.deepEqual(sh.box, box([10, 20, 30], [12, 23, 34]));
  assert.throws(() => shellOf(lo, seg, box([0, 0, 0], [2, 4, 3])), RangeError);
});

test('encodeShell/decodeShell: round trip; malformed bytes are refused', () => {
  const r = rng(5);
  const seg = randomSeg(r, [5, 6, 7], 0.3, 4);
  const sh = shellFrom(seg, [-3, 1_000_000, 2 ** 40]);
  const bytes = encodeShell(sh);
  assert.equal(bytes.length, 60 + 5 * sh.labels.length);
  assert.equal(new TextDecoder().decode(bytes.subarray(0, 4)), 'TSHL');
  const back = decodeShell(bytes);
  assert.deepEqual(back, sh);
  // Decodes from an unaligned view too (bytes inside a larger buffer).
  const padded = new Uint8Array(bytes.length + 3);
  padded.set(bytes, 1);
  assert.deepEqual(decodeShell(padded.subarray(1, 1 + bytes.length)), sh);
  // Empty box: header only.
  const empty = { box: box([4, 4, 4], [4, 9, 9]), labels: new Uint32Array(0), classes: new Uint8Array(0) };
  assert.deepEqual(decodeShell(encodeShell(empty)), empty);

  for (const n of [0, 3, 59, 60, bytes.length - 1]) assert.throws(() => decodeShell(bytes.subarray(0, n)), RangeError, `truncated to ${n}`);
  const longer = new Uint8Array(bytes.length + 1);
  longer.set(bytes);
  assert.throws(() => decodeShell(longer), RangeError, 'trailing byte');
  const mutate = (at: number, f: (dv: DataView) => void) => {
    const c = bytes.slice();
    f(new DataView(c.buffer));
    assert.throws(() => decodeShell(c), RangeError, `mutated at ${at}`);
  };
  mutate(0, (dv) => dv.setUint8(0, 0x58)); // magic
  mutate(4, (dv) => dv.setUint32(4, 2, true)); // version
  mutate(8, (dv) => dv.setFloat64(8, 0.5, true)); // non-integer coordinate
  mutate(32, (dv) => dv.setFloat64(32, -10, true)); // end before begin
  mutate(56, (dv) => dv.setUint32(56, sh.labels.length - 1, true)); // count disagrees with the box
  // Shells whose arrays disagree with their box are not encoded.
  assert.throws(() => encodeShell({ ...sh, classes: sh.classes.subarray(1) }), RangeError);
});

// ---------------------------------------------------------------- UnionFind and relabel

test('UnionFind: the smallest id is the root whatever the order of unions', () => {
  const pairs: Array<[number, number]> = [[10, 4], [7, 10], [2 ** 40, 7], [30, 31], [31, 12], [99, 99]];
  const r = rng(11);
  for (let t = 0; t < 30; t++) {
    const order = pairs.map((p) => (r() < 0.5 ? [p[1], p[0]] : p) as [number, number]);
    for (let i = order.length - 1; i > 0; i--) {
      const j = randInt(r, 0, i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    const uf = new UnionFind();
    for (const [a, b] of order) uf.union(a, b);
    for (const id of [4, 7, 10, 2 ** 40]) assert.equal(uf.find(id), 4);
    for (const id of [12, 30, 31]) assert.equal(uf.find(id), 12);
    assert.equal(uf.find(99), 99);
    assert.equal(uf.find(5), 5); // never seen
    assert.equal(uf.size, 8);
    assert.deepEqual([...uf.remap()], [[7, 4], [10, 4], [30, 12], [31, 12], [2 ** 40, 4]]);
  }
  assert.throws(() => new UnionFind().union(1.5, 2), RangeError);
  assert.throws(() => new UnionFind().union(1, 2 ** 53), RangeError);
});

test('relabel: offset plus remap, background kept, uint32 overflow refused', () => {
  const labels = Uint32Array.from([0, 1, 2, 3, 0, 2]);
  assert.deepEqual(Array.from(relabel(labels, 10, new Map([[12, 4], [99, 1]]))), [0, 11, 4, 13, 0, 4]);
  assert.deepEqual(Array.from(relabel(labels, 0, new Map())), [0, 1, 2, 3, 0, 2]);
  assert.notEqual(relabel(labels, 0, new Map()), labels); // a new array, input untouched
  assert.throws(() => relabel(labels, 2 ** 32 - 3, new Map()), RangeError);
  assert.deepEqual(Array.from(relabel(labels, 2 ** 32 - 3, new Map([[2 ** 32 - 1, 5], [2 ** 32, 6]]))), [0, 4294967294, 5, 6, 0, 5]);
  // A remap entry for an id the labels do not hold is not checked.
  assert.deepEqual(Array.from(relabel(labels, 0, new Map([[7, -1]]))), [0, 1, 2, 3, 0, 2]);
  assert.throws(() => relabel(labels, -1, new Map()), RangeError);
  // Sparse large ids take the Map path and give the same answer.
  const big = Uint32Array.from([0, 4_000_000_000, 7, 4_000_000_000]);
  assert.deepEqual(Array.from(relabel(big, 5, new Map([[12, 3]]))), [0, 4_000_000_005, 3, 4_000_000_005]);
});

test('readAhead (the merger\'s per-chunk reads) yields in order, at most `depth` in flight, a failed load at its turn', async () => {
  let inFlight = 0;
  let most = 0;
  const load = async (i: number) => {
    inFlight++;
    most = Math.max(most, inFlight);
    await new Promise((r) => setTimeout(r, (7 * i) % 5));
    inFlight--;
    if (i === 12) throw new Error('chunk 12 unreadable');
    return i * i;
  };
  const got: number[] = [];
  await assert.rejects(async () => {
    for await (const [i, v] of readAhead(Array.from({ length: 20 }, (_, i) => i), load, 4)) { assert.equal(v, i * i); got.push(i); }
  }, /chunk 12 unreadable/);
  assert.deepEqual(got, Array.from({ length: 12 }, (_, i) => i));
  assert.ok(most <= 4 && most > 1, `loads in flight at most ${most}`);
});

test('Lru with a cost known only once loaded (stage-two results in bytes) evicts the oldest when the total passes capacity', async () => {
  const lru = new Lru<Uint8Array>(100);
  let loads = 0;
  const get = (k: string, n: number) => lru.get(k, async () => { loads++; return new Uint8Array(n); }, (v) => v.length);
  await get('a', 40); await get('b', 40);
  await get('a', 40); // a hit refreshes a: b is now the oldest
  assert.equal(loads, 2);
  await get('c', 40); // 120 > 100: b goes, a and c stay
  await get('a', 40); await get('c', 40);
  assert.equal(loads, 3);
  await get('b', 40); // b was evicted: loaded again
  assert.equal(loads, 4);
  const big = await get('huge', 500); // the newest stays even alone over capacity
  assert.equal(big.length, 500);
  await get('huge', 500);
  assert.equal(loads, 5);
});
