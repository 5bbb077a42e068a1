import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Box, type Vec3, box, shapeOf } from '../../shared/geometry/box.ts';
import { type Array3, array3, copyRegion, crop, zerosU8 } from '../../shared/array/array3.ts';
import { label } from '../../shared/array/components.ts';
import { type LocalObjects, anchorIds, foregroundRows, labelObjects, labelRuns, paintRuns, paintRunsSlab } from '../../shared/pipeline/instances.ts';
import { mulberry32 } from '../../shared/synth/random.ts';
import { Contacts, FORWARD, borderSections, contactsAcross, decodeFace, edgeSection, faceSection, touchOf } from '../../shared/pipeline/border.ts';
import { type Decisions, type Down, type PartRow, type Rows, type Summary, chunkSummary, joinRegion, settleRegion } from '../../shared/pipeline/merge.ts';
import { decodeDecisions, decodeDown, decodeSummary, encodeDecisions, encodeDown, encodeSummary } from '../../shared/tasks/merge.ts';
import { packColumns, unpackColumns } from '../../shared/array/columns.ts';
import { blocksMeeting, forEachIndex, inRange, indexId, indexOf, parseIndexId, range3 } from '../../shared/geometry/grid.ts';
import { carriedFaces, levelBlock, openFaces, regionChildren, regionChunks, treeLevels } from '../../shared/geometry/tree.ts';
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

test('foregroundRows: each row\'s range is exactly its first to last nonzero byte, aligned (words) or not (bytes); labelObjects the same either way', () => {
  const r = rng(31);
  for (let t = 0; t < 40; t++) {
    // X a multiple of 4 (word scan) or not; the data at byte offset 0 or 1 (word scan refused).
    const X = 4 * randInt(r, 1, 9) + (t % 3 === 0 ? randInt(r, 1, 4) : 0);
    const s: Vec3 = [randInt(r, 1, 4), randInt(r, 1, 6), X];
    const n = s[0] * s[1] * s[2];
    const at = t % 2;
    const buf = new Uint8Array(n + at);
    const seg = buf.subarray(at);
    // Sparse rows: most empty, some with a byte or two anywhere (word ends included).
    for (let row = 0; row < s[0] * s[1]; row++) if (r() < 0.4) for (let k = randInt(r, 1, 3); k > 0; k--) seg[row * X + randInt(r, 0, X)] = randInt(r, 1, 3);
    const rows = foregroundRows(seg, s[0] * s[1], X);
    for (let row = 0; row < s[0] * s[1]; row++) {
      const line = Array.from(seg.subarray(row * X, (row + 1) * X));
      const lo = line.findIndex((v) => v !== 0);
      const want = lo < 0 ? [0, 0] : [lo, X - [...line].reverse().findIndex((v) => v !== 0)];
      assert.deepEqual([rows.lo[row], rows.hi[row]], want, `case ${t}, row ${row}`);
    }
    const a = labelObjects(array3(seg, s), [0, 0, 0]);
    const b = labelObjects(array3(Uint8Array.from(seg), s), [0, 0, 0]);
    assert.deepEqual(a.labels, b.labels);
    assert.deepEqual(a.objects, b.objects);
    assert.deepEqual(labelRuns(a.labels, s, a.rows), labelRuns(a.labels, s));
  }
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
  /** Global ids per voxel of the whole volume. */
  global: Float64Array;
  boxes: Box[];
  locals: LocalObjects[];
  /** Contacts found by each chunk with the chunks after it: "i,j" → [a0, b0, …]. */
  edges: Map<string, number[]>;
}

/**
 * The whole pipeline on one machine, through the encoded forms the tasks write: cut `seg` at
 * `cuts` (per axis, the inner boundaries), label each chunk alone, write its border, find the
 * contacts between neighbours from the sections they share, reduce over a tree of regions of
 * `fanIn` chunks (up, then down), paint each chunk's labels with their final ids.
 */
function chunkedGlobal(seg: Array3<Uint8Array>, cuts: [number[], number[], number[]], fanIn: Vec3 = [2, 2, 2]): Chunked {
  const S = seg.shape;
  const bounds = cuts.map((c, a) => [0, ...c, S[a]]);
  const grid: Vec3 = [bounds[0].length - 1, bounds[1].length - 1, bounds[2].length - 1];
  const run = range3([0, 0, 0], grid);
  const at = (g: Vec3) => (g[0] * grid[1] + g[1]) * grid[2] + g[2];
  const boxes: Box[] = [];
  const locals: LocalObjects[] = [];
  const borders: Uint8Array[][] = [];
  const rows: Array<Array<PartRow & { id: number }>> = [];
  forEachIndex(run, (g) => {
    const b = box([bounds[0][g[0]], bounds[1][g[1]], bounds[2][g[2]]], [bounds[0][g[0] + 1], bounds[1][g[1] + 1], bounds[2][g[2] + 1]]);
    const part = crop(seg, [0, 0, 0], b);
    const lo = labelObjects(part, b.begin);
    const ids = anchorIds(lo, b.begin, shapeOf(b), S);
    boxes.push(b);
    locals.push(lo);
    borders.push(borderSections(lo.labels, ids, part.data, shapeOf(b)));
    rows.push(lo.objects.map((o) => ({ ...o, anchor: ids[o.id] })));
  });
  const edges = new Map<string, number[]>();
  const leaves: Summary[] = [];
  forEachIndex(run, (g) => {
    const out = new Contacts();
    for (const d of FORWARD) {
      const n: Vec3 = [g[0] + d[0], g[1] + d[1], g[2] + d[2]];
      if (!inRange(run, n)) continue;
      const t = touchOf(d);
      const before = out.pairs().length;
      contactsAcross(d, borders[at(g)][t.mine], borders[at(n)][t.theirs], out, 'test');
      if (out.pairs().length > before) edges.set(`${at(g)},${at(n)}`, Array.from(out.pairs()));
    }
    leaves.push(chunkSummary(rows[at(g)], boxes[at(g)], openFaces(range3(g, [g[0] + 1, g[1] + 1, g[2] + 1]), run), out.pairs()));
  });
  // The chunk of a voxel's raster index, by the cuts.
  const chunkOf = (id: number): Vec3 => {
    const i = id - 1;
    const p = [Math.floor(i / (S[1] * S[2])), Math.floor(i / S[2]) % S[1], i % S[2]];
    return p.map((v, a) => bounds[a].findIndex((b, k) => v >= b && v < bounds[a][k + 1])) as unknown as Vec3;
  };
  const levels = treeLevels(run, fanIn);
  // Up: summaries of each level's regions; decisions kept for the way down.
  let below = new Map<string, Summary>(leaves.map((l, i) => [indexId(indexOf(run, i)), l]));
  const decided: Array<Map<string, Decisions>> = [new Map()];
  for (let l = 1; l <= levels; l++) {
    const here = new Map<string, Summary>();
    const dec = new Map<string, Decisions>();
    forEachIndex(blocksMeeting(run, levelBlock(fanIn, l)), (b) => {
      const region = regionChunks(b, l, fanIn, run);
      const kids = regionChildren(b, l, fanIn, run);
      const { summary, decisions } = joinRegion(kids.map((k) => decodeSummary(encodeSummary(below.get(indexId(k))!), 'test')), {
        carry: kids.map((k) => carriedFaces(regionChunks(k, l - 1, fanIn, run), region, run)),
        inside: (id) => inRange(region, chunkOf(id)),
        what: `region ${l}/${indexId(b)}`,
      });
      here.set(indexId(b), summary);
      dec.set(indexId(b), decodeDecisions(encodeDecisions(decisions), 'test'));
    });
    decided.push(dec);
    below = here;
  }
  // Down: each region's lists for its children.
  let downs = new Map<string, Down>();
  for (let l = levels; l >= 1; l--) {
    const next = new Map<string, Down>();
    for (const [id, d] of decided[l]) {
      const b = parseIndexId(id)!;
      const kids = regionChildren(b, l, fanIn, run);
      settleRegion(d, l === levels ? undefined : downs.get(id), `region ${l}/${id}`).forEach((x, k) => next.set(indexId(kids[k]), decodeDown(encodeDown(x), 'test')));
    }
    downs = next;
  }
  const global = new Float64Array(seg.data.length);
  forEachIndex(run, (g) => {
    const i = at(g);
    const down = downs.get(indexId(g))!;
    const final = new Float64Array(locals[i].count + 1);
    for (const r of rows[i]) {
      const k = down.key.indexOf(r.anchor);
      final[r.id] = k < 0 ? r.anchor : down.final[k];
    }
    const s = shapeOf(boxes[i]);
    const ids = new Float64Array(locals[i].labels.length);
    paintRuns(labelRuns(locals[i].labels, s), final, ids);
    copyRegion(array3(ids, s), boxes[i].begin, array3(global, S), [0, 0, 0], boxes[i]);
  });
  return { global, boxes, locals, edges };
}

/** What the chunked pipeline must give: each object's id is 1 + the raster index of its first voxel. */
function wholeIds(seg: Array3<Uint8Array>): Float64Array {
  const whole = labelObjects(seg, [0, 0, 0]);
  const ids = anchorIds(whole, [0, 0, 0], seg.shape, seg.shape);
  return Float64Array.from(whole.labels, (l) => ids[l]);
}

test('chunked: 2×2×2 chunks of random sparse volumes give every object the id of its first voxel, as labelling the whole volume', () => {
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

    const got = chunkedGlobal(seg, [[cz], [cy], [cx]]);
    assert.deepEqual(got.global, wholeIds(seg), `step ${t}`);

    const at = (p: readonly number[]) => got.global[idx(S, p[0], p[1], p[2])];
    if (t % 2 === 0) {
      assert.ok(corner.every((p) => at(p) === at(corner[0])), 'the 8-chunk object has one id');
      // Every chunk holds a piece of it: each chunk sees it with every chunk after it (28 pairs).
      assert.equal(got.edges.size, 28);
    } else {
      assert.equal(at(corner[0]), at(corner[1]), 'corner-only contact joins (chunks 0 and 7)');
      assert.equal(at(corner[2]), at(corner[3]), 'corner-only contact joins (chunks 1 and 6)');
      assert.notEqual(at(corner[0]), at(corner[2]), 'touching objects of other classes stay apart');
      assert.ok(got.edges.has('0,7'), 'chunks 0 and 7 touch only at the corner, and the contact is found');
    }
    for (const e of [edgeX, edgeY, edgeZ]) assert.equal(at(e[0]), at(e[1]), `edge-only contact joins at ${e[0]}`);
  }
});

test('chunked: random grids (up to 4×4×4 chunks, some one voxel thick; fan-in 2 and 3) equal labelling the whole volume', () => {
  const r = rng(99);
  for (let t = 0; t < 40; t++) {
    const S: Vec3 = [randInt(r, 2, 10), randInt(r, 2, 12), randInt(r, 2, 12)];
    const cuts = S.map((n) => {
      const k = randInt(r, 0, Math.min(4, n));
      const set = new Set<number>();
      while (set.size < k) set.add(randInt(r, 1, n));
      return [...set].sort((a, b) => a - b);
    }) as [number[], number[], number[]];
    const seg = randomSeg(r, S, 0.1 + r() * 0.3, 1 + randInt(r, 0, 3));
    const fanIn: Vec3 = t % 2 ? [2, 2, 2] : [3, 2, 3];
    const got = chunkedGlobal(seg, cuts, fanIn);
    assert.deepEqual(got.global, wholeIds(seg), `shape ${S}, cuts ${JSON.stringify(cuts)}, fan-in ${fanIn}`);
  }
});

// ---------------------------------------------------------------- border

/** The 18 sections of a chunk's border, from its segmentation placed at `begin` in a volume of `volume`. */
function borderFrom(seg: Array3<Uint8Array>, begin: Vec3, volume: Vec3): Uint8Array[] {
  const lo = labelObjects(seg, begin);
  return borderSections(lo.labels, anchorIds(lo, begin, seg.shape, volume), seg.data, seg.shape);
}

function contacts(d: Vec3, a: Uint8Array[], b: Uint8Array[]): number[] {
  const out = new Contacts();
  const t = touchOf(d);
  contactsAcross(d, a[t.mine], b[t.theirs], out, 'test');
  return Array.from(out.pairs());
}

test('border: face, edge and corner contacts in global ids; classes kept apart; pairs sorted, each once', () => {
  const V: Vec3 = [10, 10, 10];
  const id = (z: number, y: number, x: number) => (z * V[1] + y) * V[2] + x + 1;
  const s: Vec3 = [2, 3, 3];
  // A at [0,2)×[0,3)×[0,3). Its x-end face (x = 2) holds an object of class 1 (two voxels) and
  // one of class 2.
  const A = borderFrom(segOf(s, [[0, 0, 2, 1], [0, 1, 2, 1], [1, 2, 2, 2]]), [0, 0, 0], V);
  // B next to it along x, at [0,2)×[0,3)×[3,6): a class-1 object facing A's class-1 voxels, and
  // diagonal to A's class-2 voxel (another class: no pair).
  const B = borderFrom(segOf(s, [[0, 0, 0, 1], [1, 1, 0, 1]]), [0, 0, 3], V);
  assert.deepEqual(contacts([0, 0, 1], A, B), [id(0, 0, 2), id(0, 0, 3)]);
  // Several objects each side: sorted by the first id, then the second.
  const a2 = borderFrom(segOf([1, 3, 1], [[0, 0, 0, 4], [0, 2, 0, 4]]), [5, 5, 5], V);
  const b3 = borderFrom(segOf([1, 3, 1], [[0, 1, 0, 4]]), [5, 5, 6], V); // touches both diagonally
  assert.deepEqual(contacts([0, 0, 1], a2, b3), [id(5, 5, 5), id(5, 6, 6), id(5, 7, 5), id(5, 6, 6)]);
  // Edge neighbours (two axes) and corner neighbours (three), one voxel each side at the corner.
  const one = (p: Vec3) => borderFrom(segOf([1, 1, 1], [[0, 0, 0, 9]]), p, V);
  assert.deepEqual(contacts([1, 1, 0], one([0, 0, 0]), one([1, 1, 0])), [id(0, 0, 0), id(1, 1, 0)]);
  assert.deepEqual(contacts([0, 1, -1], one([0, 0, 1]), one([0, 1, 0])), [id(0, 0, 1), id(0, 1, 0)]);
  assert.deepEqual(contacts([1, 1, 1], one([0, 0, 0]), one([1, 1, 1])), [id(0, 0, 0), id(1, 1, 1)]);
  assert.deepEqual(contacts([1, -1, 1], one([0, 1, 0]), one([1, 0, 1])), [id(0, 1, 0), id(1, 0, 1)]);
  // Voxels two apart along a shared face give nothing; one apart, a pair.
  const p = (x: number) => segOf([1, 1, 4], [[0, 0, x, 1]]);
  assert.deepEqual(contacts([1, 0, 0], borderFrom(p(0), [0, 0, 0], V), borderFrom(p(2), [1, 0, 0], V)), []);
  assert.deepEqual(contacts([1, 0, 0], borderFrom(p(0), [0, 0, 0], V), borderFrom(p(1), [1, 0, 0], V)), [id(0, 0, 0), id(1, 0, 1)]);
  // Along an edge line, the same: diagonal neighbours whose voxels are two apart along z.
  const col = (z: number) => segOf([4, 1, 1], [[z, 0, 0, 1]]);
  assert.deepEqual(contacts([0, 1, 1], borderFrom(col(0), [0, 0, 0], V), borderFrom(col(2), [0, 1, 1], V)), []);
  assert.deepEqual(contacts([0, 1, 1], borderFrom(col(1), [0, 0, 0], V), borderFrom(col(2), [0, 1, 1], V)), [id(1, 0, 0), id(2, 1, 1)]);
  // Faces of different shapes cannot touch.
  assert.throws(() => contacts([0, 0, 1], A, a2), RangeError);
});

test('border: a face is runs (its size follows its foreground), decoded sections are checked', () => {
  const V: Vec3 = [64, 64, 64];
  const seg = zerosU8([8, 64, 64]);
  for (let x = 10; x < 50; x++) seg.data[idx(seg.shape, 7, 20, x)] = 1; // one run on the z-end face
  const b = borderFrom(seg, [0, 0, 0], V);
  const face = decodeFace(b[faceSection(0, 1)], 'test');
  assert.equal(face.rows, 64);
  assert.equal(face.cols, 64);
  assert.deepEqual([...face.start], [10]);
  assert.deepEqual([...face.length], [40]);
  assert.deepEqual([...face.id], [7 * 64 * 64 + 20 * 64 + 10 + 1]);
  assert.ok(b[faceSection(0, 1)].byteLength < 400, `a face of 4096 voxels with one run takes ${b[faceSection(0, 1)].byteLength} bytes`);
  assert.equal(decodeFace(b[faceSection(0, 0)], 'test').start.length, 0);
  assert.throws(() => decodeFace(b[edgeSection(0, 0, 0)], 'edge read as a face'), /not a face/);
  assert.throws(() => decodeFace(b[faceSection(0, 1)].subarray(0, 40), 'cut short'), /cut short/);
});

test('label runs: painted with a table they give back the labels; a run outside the chunk is refused', () => {
  const r = rng(5);
  const s: Vec3 = [3, 7, 9];
  const lo = labelObjects(randomSeg(r, s, 0.3, 2), [0, 0, 0]);
  const runs = labelRuns(lo.labels, s);
  const back = new Uint32Array(lo.labels.length);
  paintRuns(runs, Float64Array.from({ length: lo.count + 1 }, (_, i) => i), back);
  assert.deepEqual(back, lo.labels);
  for (let k = 0; k < runs.length; k += 3) assert.equal(Math.floor(runs[k] / s[2]), Math.floor((runs[k] + runs[k + 1] - 1) / s[2]), 'a run stays in its row');
  assert.throws(() => paintRuns(Uint32Array.of(180, 10, 1), [0, 1], new Uint32Array(189)), /outside/);
});

test('columns: round trip of every type; truncated or foreign bytes refused', () => {
  const cols = [Uint8Array.of(1, 2, 3), Int32Array.of(-5, 7), Uint32Array.of(2 ** 32 - 1), Float64Array.of(0.5, 2 ** 50 + 1), new Float64Array(0)];
  const b = packColumns(cols);
  const back = unpackColumns(b, 'test');
  assert.deepEqual(back.map((c) => [c.constructor.name, Array.from(c)]), cols.map((c) => [c.constructor.name, Array.from(c)]));
  // An unaligned copy decodes the same.
  const shifted = new Uint8Array(b.length + 3);
  shifted.set(b, 3);
  assert.deepEqual(unpackColumns(shifted.subarray(3), 'test').map((c) => Array.from(c)), cols.map((c) => Array.from(c)));
  assert.throws(() => unpackColumns(b.subarray(0, b.length - 8), 'cut'), /cut: column 3/);
  assert.throws(() => unpackColumns(Uint8Array.of(1, 2), 'short'), /short/);
});

// ---------------------------------------------------------------- reduction

test('joinRegion/settleRegion: the same ids whatever the order of the children and of their contacts', () => {
  const r = rng(31);
  const S: Vec3 = [6, 24, 24];
  const seg = randomSeg(r, S, 0.25, 2);
  const want = wholeIds(seg);
  // Regions of 3 and of 2 chunks per axis, over chunks of 2×6×6 and of 3×4×8: the same ids.
  assert.deepEqual(chunkedGlobal(seg, [[2, 4], [6, 12, 18], [6, 12, 18]], [3, 3, 3]).global, want);
  assert.deepEqual(chunkedGlobal(seg, [[3], [4, 8, 12, 16, 20], [8, 16]], [2, 2, 2]).global, want);
});

test('joinRegion: a contact to a part the region holds but no child lists is refused, naming the region', () => {
  const rows = (anchor: number): Rows => ({ key: Float64Array.of(anchor), cls: Uint8Array.of(1), box: Float64Array.of(0, 0, 0, 1, 1, 1), voxels: Float64Array.of(1), mass: Float64Array.of(NaN) });
  const child = (anchor: number, edgeTo: number[]): Summary => ({
    open: rows(anchor), part: Float64Array.of(anchor), partKey: Float64Array.of(anchor), partMask: Uint8Array.of(0b100000),
    edgeA: Float64Array.from(edgeTo.map(() => anchor)), edgeB: Float64Array.from(edgeTo),
  });
  const g = { carry: [0, 0], inside: () => true, what: 'merge1 0_0_0' };
  assert.throws(() => joinRegion([child(5, [99]), child(7, [])], g), /merge1 0_0_0: contact 5–99: part 99 lies here but no child lists it/);
  const { summary, decisions } = joinRegion([child(5, [7]), child(7, [])], g);
  assert.equal(summary.open.key.length, 0, 'nothing open where no face is carried up');
  assert.deepEqual([...decisions.closed.key], [5]);
  assert.deepEqual([...decisions.root], [5, 5]);
  assert.deepEqual([...decisions.closed.voxels], [2]);
  assert.ok(Number.isNaN(decisions.closed.mass[0]), 'no probabilities, no mean');
  const downs = settleRegion(decisions, undefined, 'top');
  assert.deepEqual(downs.map((d) => [...d.final]), [[5], [5]]);
  assert.deepEqual(downs.map((d) => d.row.cls[0]), [1, 0], 'the summed row goes to the child holding the first voxel');
  // An object left open at the top (its parent says nothing of it) is an error, not a wrong id.
  const open = joinRegion([child(5, [])], { carry: [0b100000], inside: () => true, what: 'r' });
  assert.throws(() => settleRegion(open.decisions, undefined, 'resolve2 0_0_0'), /resolve2 0_0_0: object 5 is open here but its parent says nothing of it/);
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

test('paintRunsSlab: slab after slab (any depth) paints what paintRuns paints on the whole chunk, uint32 and uint64', () => {
  const r = mulberry32(17);
  const shape: [number, number, number] = [7, 5, 9];
  const labels = new Uint32Array(shape[0] * shape[1] * shape[2]);
  for (let i = 0; i < labels.length; i++) labels[i] = r() < 0.3 ? 0 : 1 + Math.floor(r() * 6);
  const runs = labelRuns(labels, shape);
  const ids = [0, 11, 2 ** 33 + 5, 7, 2 ** 40, 3, 9];
  const whole = new BigUint64Array(labels.length);
  paintRuns(runs, ids, whole);
  const plane = shape[1] * shape[2];
  for (const depth of [1, 2, 3, 7]) {
    const got = new BigUint64Array(labels.length);
    let from = 0;
    for (let z = 0; z < shape[0]; z += depth) {
      const slab = new BigUint64Array(Math.min(depth, shape[0] - z) * plane);
      from = paintRunsSlab(runs, ids, slab, z * plane, from);
      got.set(slab, z * plane);
    }
    assert.equal(from, runs.length, `depth ${depth}: every run painted`);
    assert.deepEqual(got, whole, `depth ${depth}`);
  }
  const small = ids.map((v) => v % 2 ** 32);
  const w32 = new Uint32Array(labels.length);
  paintRuns(runs, small, w32);
  const s32 = new Uint32Array(3 * plane);
  const next = paintRunsSlab(runs, small, s32, 0, 0);
  assert.deepEqual(s32, w32.subarray(0, 3 * plane));
  assert.ok(next < runs.length && runs[next] >= 3 * plane, 'stops at the first run past the slab');
});
