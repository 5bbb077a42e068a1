import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  type Box, type Vec3, box, boxAt, boxOfShape, boxToString, contains, equals, grow, growTo, intersect,
  intersectionOverSmaller, iou, isEmpty, parseBox, shapeOf, snapOut, union, unionVolume, volumeOf,
} from '../../shared/geometry/box.ts';
import { chunkId, planGrid } from '../../shared/geometry/grid.ts';
import { lowShape, scaleFactor, toFull, toLow } from '../../shared/geometry/scale.ts';
import { randInt, rng } from '../helpers/rng.ts';

const b = (z0: number, y0: number, x0: number, z1: number, y1: number, x1: number): Box => box([z0, y0, x0], [z1, y1, x1]);

function randomBox(r: () => number, lo: number, hi: number, maxLen: number): Box {
  const begin = [0, 1, 2].map(() => randInt(r, lo, hi));
  const end = begin.map((v) => v + randInt(r, 1, maxLen + 1));
  return box(begin as unknown as Vec3, end as unknown as Vec3);
}

// ---------------------------------------------------------------- box.ts

test('intersect: overlapping, nested, disjoint and touching (half-open) boxes', () => {
  const a = b(0, 0, 0, 4, 6, 8);
  assert.deepEqual(intersect(a, b(2, -3, 5, 10, 3, 9)), b(2, 0, 5, 4, 3, 8));
  assert.deepEqual(intersect(a, b(1, 1, 1, 2, 2, 2)), b(1, 1, 1, 2, 2, 2));
  assert.ok(isEmpty(intersect(a, b(10, 10, 10, 12, 12, 12))));
  assert.equal(volumeOf(intersect(a, b(10, 10, 10, 12, 12, 12))), 0);
  // Sharing only a face: half-open boxes do not overlap.
  const touching = intersect(a, b(4, 0, 0, 6, 6, 8));
  assert.ok(isEmpty(touching));
  assert.equal(volumeOf(touching), 0);
  // Commutative.
  assert.deepEqual(intersect(b(2, -3, 5, 10, 3, 9), a), intersect(a, b(2, -3, 5, 10, 3, 9)));
});

test('intersect/union agree with a voxel-set reference on random boxes', () => {
  const r = rng(11);
  for (let t = 0; t < 200; t++) {
    const p = randomBox(r, -4, 4, 5);
    const q = randomBox(r, -4, 4, 5);
    const i = intersect(p, q);
    const u = union(p, q);
    let inBoth = 0;
    for (let z = -5; z < 10; z++) for (let y = -5; y < 10; y++) for (let x = -5; x < 10; x++) {
      const inP = z >= p.begin[0] && z < p.end[0] && y >= p.begin[1] && y < p.end[1] && x >= p.begin[2] && x < p.end[2];
      const inQ = z >= q.begin[0] && z < q.end[0] && y >= q.begin[1] && y < q.end[1] && x >= q.begin[2] && x < q.end[2];
      if (inP && inQ) inBoth++;
    }
    assert.equal(volumeOf(i), inBoth);
    assert.ok(contains(u, p) && contains(u, q));
    // Union is the smallest such box: every face touches p or q.
    for (let a = 0; a < 3; a++) {
      assert.equal(u.begin[a], Math.min(p.begin[a], q.begin[a]));
      assert.equal(u.end[a], Math.max(p.end[a], q.end[a]));
    }
  }
});

test('union: smallest box holding both, even when disjoint', () => {
  assert.deepEqual(union(b(0, 0, 0, 1, 1, 1), b(5, -2, 3, 6, 0, 4)), b(0, -2, 0, 6, 1, 4));
  assert.deepEqual(union(b(0, 0, 0, 4, 4, 4), b(1, 1, 1, 2, 2, 2)), b(0, 0, 0, 4, 4, 4));
});

test('grow: positive margin grows every side, negative shrinks', () => {
  assert.deepEqual(grow(b(10, 20, 30, 12, 24, 40), [1, 2, 3]), b(9, 18, 27, 13, 26, 43));
  assert.deepEqual(grow(b(10, 20, 30, 20, 30, 40), [-1, -2, -3]), b(11, 22, 33, 19, 28, 37));
  assert.deepEqual(shapeOf(grow(b(0, 0, 0, 2, 2, 2), [-2, 0, 0])), [0, 2, 2]); // over-shrunk → empty
  assert.ok(isEmpty(grow(b(0, 0, 0, 2, 2, 2), [-2, 0, 0])));
});

test('growTo: boxes already large enough are unchanged', () => {
  const x = b(3, 4, 5, 13, 14, 15);
  assert.deepEqual(growTo(x, [4, 10, 2]), x);
  assert.deepEqual(growTo(x, [4, 10, 2], b(0, 0, 0, 100, 100, 100)), x);
});

test('growTo: symmetric growth, the odd voxel goes to the end', () => {
  // len 2 → 6: extra 4, 2 each side. len 3 → 6: extra 3, floor(3/2)=1 before, 2 after.
  assert.deepEqual(growTo(b(10, 10, 10, 12, 13, 11), [6, 6, 1]), b(8, 9, 10, 14, 15, 11));
});

test('growTo: shifts back inside the bounds at either end', () => {
  const bounds = b(0, 0, 0, 100, 50, 30);
  // Near the start: [0,2) grown to [-2,4) then shifted to [0,6).
  // Near the end: [48,50) grown to [46,52) then shifted to [44,50).
  // x: [29,30) grown to 5 → [27,32) → [25,30).
  assert.deepEqual(growTo(b(0, 48, 29, 2, 50, 30), [6, 6, 5], bounds), b(0, 44, 25, 6, 50, 30));
  // A big-enough box hanging out of the bounds is shifted in, not clipped.
  assert.deepEqual(growTo(b(-5, 45, 0, 5, 55, 30), [4, 4, 4], bounds), b(0, 40, 0, 10, 50, 30));
});

test('growTo: boxes (or minimum shapes) larger than the bounds become the bounds on that axis', () => {
  const bounds = b(0, 10, 20, 8, 18, 30);
  assert.deepEqual(growTo(b(-5, 12, 22, 20, 14, 24), [1, 100, 4], bounds), b(0, 10, 21, 8, 18, 25));
  // minShape equal to the bounds → exactly the bounds.
  assert.deepEqual(growTo(b(3, 13, 25, 4, 14, 26), [8, 8, 10], bounds), bounds);
  // Without bounds the box keeps growing.
  assert.deepEqual(shapeOf(growTo(b(3, 13, 25, 4, 14, 26), [50, 50, 50])), [50, 50, 50]);
});

test('growTo: random boxes inside bounds — contained, containing the input, length min(max(len, min), bounds)', () => {
  const r = rng(5);
  for (let t = 0; t < 500; t++) {
    const bounds = randomBox(r, -10, 10, 30);
    const bs = shapeOf(bounds);
    const begin = [0, 1, 2].map((a) => bounds.begin[a] + randInt(r, 0, bs[a]));
    const end = begin.map((v, a) => v + randInt(r, 1, bounds.end[a] - v + 1));
    const x = box(begin as unknown as Vec3, end as unknown as Vec3);
    const min: Vec3 = [randInt(r, 1, 40), randInt(r, 1, 40), randInt(r, 1, 40)];
    const g = growTo(x, min, bounds);
    assert.ok(contains(bounds, g), `${boxToString(g)} inside ${boxToString(bounds)}`);
    assert.ok(contains(g, x));
    const xs = shapeOf(x);
    for (let a = 0; a < 3; a++) assert.equal(g.end[a] - g.begin[a], Math.min(Math.max(xs[a], min[a]), bs[a]));
  }
});

test('iou and intersectionOverSmaller: hand cases', () => {
  const a = b(0, 0, 0, 2, 2, 2); // 8 voxels
  const c = b(1, 0, 0, 3, 2, 2); // 8 voxels, 4 shared
  assert.equal(iou(a, c), 4 / 12);
  assert.equal(iou(c, a), 4 / 12);
  assert.equal(intersectionOverSmaller(a, c), 4 / 8);
  const big = b(0, 0, 0, 4, 4, 4); // 64
  assert.equal(iou(a, big), 8 / 64);
  assert.equal(intersectionOverSmaller(a, big), 1);
  assert.equal(intersectionOverSmaller(big, a), 1);
  assert.equal(iou(a, a), 1);
  assert.equal(iou(a, b(2, 0, 0, 4, 2, 2)), 0); // touching
  assert.equal(intersectionOverSmaller(a, b(5, 5, 5, 6, 6, 6)), 0);
  assert.equal(iou(a, b(1, 1, 1, 1, 2, 2)), 0); // empty box
  // Different sizes, partial overlap: a=[0,4)^3 (64), d=[2,6)×[0,2)×[0,8) (64): overlap 2×2×4 = 16.
  const d = b(2, 0, 0, 6, 2, 8);
  assert.equal(iou(big, d), 16 / (64 + 64 - 16));
  assert.equal(intersectionOverSmaller(big, b(2, 0, 0, 6, 2, 2)), 8 / 16);
});

test('snapOut: snaps outward to the grid, with an origin, negatives included', () => {
  assert.deepEqual(snapOut(b(3, 8, 17, 17, 16, 18), [8, 8, 8]), b(0, 8, 16, 24, 16, 24));
  assert.deepEqual(snapOut(b(-3, -8, -1, 5, 0, 1), [4, 4, 4]), b(-4, -8, -4, 8, 0, 4));
  assert.deepEqual(snapOut(b(3, 3, 3, 17, 17, 17), [8, 8, 8], [1, 2, 3]), b(1, 2, 3, 17, 18, 19));
  const r = rng(3);
  for (let t = 0; t < 200; t++) {
    const x = randomBox(r, -50, 50, 40);
    const step: Vec3 = [randInt(r, 1, 9), randInt(r, 1, 9), randInt(r, 1, 9)];
    const origin: Vec3 = [randInt(r, -5, 5), randInt(r, -5, 5), randInt(r, -5, 5)];
    const s = snapOut(x, step, origin);
    assert.ok(contains(s, x));
    for (let a = 0; a < 3; a++) {
      assert.equal(((s.begin[a] - origin[a]) % step[a] + step[a]) % step[a], 0);
      assert.equal(((s.end[a] - origin[a]) % step[a] + step[a]) % step[a], 0);
      assert.ok(x.begin[a] - s.begin[a] < step[a] && s.end[a] - x.end[a] < step[a], 'smallest such box');
    }
  }
});

test('parseBox/boxToString: round trip, whitespace, negatives', () => {
  const r = rng(9);
  for (let t = 0; t < 100; t++) {
    const x = randomBox(r, -1000, 1000, 500);
    const s = boxToString(x);
    assert.deepEqual(parseBox(s), x);
  }
  assert.equal(boxToString(b(1, 3, 5, 2, 4, 6)), '1:2,3:4,5:6');
  assert.deepEqual(parseBox(' 1 : 2 ,3:4,  -5:6 '), b(1, 3, -5, 2, 4, 6));
});

test('parseBox: malformed text → undefined', () => {
  for (const s of [
    '', '1:2', '1:2,3:4', '1:2,3:4,5:6,7:8', 'a:b,1:2,3:4', '1.5:2,0:1,0:1', '1:2;3:4;5:6', '1-2,3:4,5:6',
    '1:2,3:4,5:', ':2,3:4,5:6', '1:2:3,4:5,6:7', '0x1:2,3:4,5:6', '1e2:200,0:1,0:1',
  ]) {
    assert.equal(parseBox(s), undefined, JSON.stringify(s));
  }
});

// ---------------------------------------------------------------- grid.ts

/** Paint each chunk's write box into a counter over `frame`; return the counter. */
function paint(chunks: ReturnType<typeof planGrid>, frame: Box): Int32Array {
  const fs = shapeOf(frame);
  const cnt = new Int32Array(fs[0] * fs[1] * fs[2]);
  for (const c of chunks) {
    const w = c.writeBox;
    for (let z = w.begin[0]; z < w.end[0]; z++) for (let y = w.begin[1]; y < w.end[1]; y++) for (let x = w.begin[2]; x < w.end[2]; x++) {
      assert.ok(z >= frame.begin[0] && z < frame.end[0] && y >= frame.begin[1] && y < frame.end[1] && x >= frame.begin[2] && x < frame.end[2],
        `write box ${boxToString(w)} leaves the frame`);
      cnt[((z - frame.begin[0]) * fs[1] + (y - frame.begin[1])) * fs[2] + (x - frame.begin[2])]++;
    }
  }
  return cnt;
}

function checkTiling(region: Box, chunk: Vec3, halo: Vec3): void {
  const chunks = planGrid(region, chunk, halo);
  const frame = grow(region, [3, 3, 3]);
  const cnt = paint(chunks, frame);
  const fs = shapeOf(frame);
  for (let z = frame.begin[0]; z < frame.end[0]; z++) for (let y = frame.begin[1]; y < frame.end[1]; y++) for (let x = frame.begin[2]; x < frame.end[2]; x++) {
    const inside = z >= region.begin[0] && z < region.end[0] && y >= region.begin[1] && y < region.end[1] && x >= region.begin[2] && x < region.end[2];
    const n = cnt[((z - frame.begin[0]) * fs[1] + (y - frame.begin[1])) * fs[2] + (x - frame.begin[2])];
    assert.equal(n, inside ? 1 : 0, `voxel ${z},${y},${x} painted ${n}× (region ${boxToString(region)}, chunk ${chunk})`);
  }
  const ids = new Set<string>();
  for (const c of chunks) {
    assert.ok(!isEmpty(c.writeBox), 'no empty write boxes');
    assert.deepEqual(c.readBox, grow(c.writeBox, halo));
    assert.equal(c.id, `c${c.index[0]}_${c.index[1]}_${c.index[2]}`);
    assert.equal(c.id, chunkId(c.index));
    ids.add(c.id);
    for (let a = 0; a < 3; a++) {
      // Aligned to multiples of the chunk shape from the volume origin: a write box lies in
      // one grid cell and starts on a grid line (or at the region's start).
      const cell = Math.floor(c.writeBox.begin[a] / chunk[a]);
      assert.equal(Math.floor((c.writeBox.end[a] - 1) / chunk[a]), cell);
      assert.ok(c.writeBox.begin[a] % chunk[a] === 0 || c.writeBox.begin[a] === region.begin[a]);
      assert.ok(c.writeBox.end[a] % chunk[a] === 0 || c.writeBox.end[a] === region.end[a]);
      // The index counts grid cells from the one holding the region's start.
      assert.equal(c.index[a], cell - Math.floor(region.begin[a] / chunk[a]));
    }
  }
  assert.equal(ids.size, chunks.length, 'ids unique');
}

test('planGrid: aligned region — whole chunks, exact tiling', () => {
  const chunks = planGrid(boxOfShape([8, 16, 16]), [4, 8, 8], [0, 0, 0]);
  assert.equal(chunks.length, 8);
  assert.ok(chunks.every((c) => equals(c.writeBox, boxAt([c.index[0] * 4, c.index[1] * 8, c.index[2] * 8], [4, 8, 8]))));
  checkTiling(boxOfShape([8, 16, 16]), [4, 8, 8], [1, 2, 2]);
});

test('planGrid: unaligned volume and ROIs tile exactly with no overlap', () => {
  checkTiling(boxOfShape([10, 17, 23]), [4, 8, 8], [2, 4, 4]);
  checkTiling(b(3, 5, 7, 21, 30, 17), [4, 8, 5], [1, 2, 3]);
  checkTiling(b(5, 9, 1, 6, 10, 2), [4, 8, 8], [1, 1, 1]); // one voxel
  checkTiling(b(0, 0, 0, 3, 3, 3), [16, 64, 64], [8, 32, 32]); // region smaller than a chunk
  const r = rng(17);
  for (let t = 0; t < 25; t++) {
    const region = randomBox(r, 0, 30, 25);
    checkTiling(region, [randInt(r, 1, 9), randInt(r, 1, 9), randInt(r, 1, 9)], [randInt(r, 0, 4), randInt(r, 0, 4), randInt(r, 0, 4)]);
  }
});

test('planGrid: readBox is writeBox grown by the halo, reaching outside the volume at the border', () => {
  const chunks = planGrid(boxOfShape([8, 8, 8]), [4, 4, 4], [2, 3, 1]);
  const first = chunks.find((c) => c.id === 'c0_0_0')!;
  assert.deepEqual(first.writeBox, b(0, 0, 0, 4, 4, 4));
  assert.deepEqual(first.readBox, b(-2, -3, -1, 6, 7, 5));
  const last = chunks.find((c) => c.id === 'c1_1_1')!;
  assert.deepEqual(last.readBox, b(2, 1, 3, 10, 11, 9));
});

test('planGrid: ids and boxes are stable across calls, in raster order', () => {
  const region = b(3, 5, 7, 21, 30, 17);
  const p = planGrid(region, [4, 8, 5], [1, 2, 3]);
  const q = planGrid(region, [4, 8, 5], [1, 2, 3]);
  assert.deepEqual(p, q);
  const idx = p.map((c) => c.index);
  const sorted = [...idx].sort((u, v) => u[0] - v[0] || u[1] - v[1] || u[2] - v[2]);
  assert.deepEqual(idx, sorted);
  // z: cells 0..5 (3/4=0 .. ceil(21/4)=6) → 6; y: 0..3 → 4; x: 1..3 → 3.
  assert.equal(p.length, 6 * 4 * 3);
});

test('planGrid: non-positive chunk shape is refused', () => {
  assert.throws(() => planGrid(boxOfShape([4, 4, 4]), [0, 4, 4], [0, 0, 0]), RangeError);
  assert.throws(() => planGrid(boxOfShape([4, 4, 4]), [4, -1, 4], [0, 0, 0]), RangeError);
});

test('planGrid: an empty region has no chunks (aligned)', () => {
  assert.equal(planGrid(b(8, 0, 0, 8, 8, 8), [4, 4, 4], [0, 0, 0]).length, 0);
});

test('planGrid: an empty region has no chunks (unaligned)', () => {
  assert.equal(planGrid(b(7, 0, 0, 7, 8, 8), [4, 4, 4], [0, 0, 0]).length, 0);
});

// ---------------------------------------------------------------- scale.ts

test('scaleFactor and lowShape', () => {
  assert.deepEqual(scaleFactor([40, 4, 4], [40, 16, 16]), [1, 4, 4]);
  assert.deepEqual(scaleFactor([2, 0.5, 0.5], [3, 2, 1]), [1.5, 4, 2]);
  // round(shape / factor), at least 1.
  assert.deepEqual(lowShape([10, 9, 3], [4, 4, 4]), [3, 2, 1]); // 2.5 → 3, 2.25 → 2, 0.75 → 1
  assert.deepEqual(lowShape([1, 1, 100], [4, 4, 1.81]), [1, 1, 55]); // 55.25 → 55
});

test('toLow / toFull: hand cases', () => {
  assert.deepEqual(toLow(b(0, 5, 3, 4, 9, 8), [1, 4, 4]), b(0, 1, 0, 4, 3, 2));
  assert.deepEqual(toFull(b(0, 1, 0, 4, 3, 2), [1, 4, 4]), b(0, 4, 0, 4, 12, 8));
  // Fractional factor: [1,3) × 2.71 = [2.71, 8.13) → [2, 9).
  assert.deepEqual(toFull(b(1, 1, 1, 3, 3, 3), [2.71, 2.71, 2.71]), b(2, 2, 2, 9, 9, 9));
  assert.deepEqual(toLow(b(2, 2, 2, 9, 9, 9), [2.71, 2.71, 2.71]), b(0, 0, 0, 4, 4, 4));
});

test('toLow / toFull map outward: round trips cover the source box', () => {
  const r = rng(23);
  for (let t = 0; t < 500; t++) {
    const x = randomBox(r, 0, 200, 100);
    const f: Vec3 = [1 + r() * 4, 1 + r() * 4, [1, 2, 4, 1.81][randInt(r, 0, 4)]];
    const low = toLow(x, f);
    const back = toFull(low, f);
    assert.ok(contains(back, x), `${boxToString(back)} ⊇ ${boxToString(x)}`);
    // Minimal: low box begins at the low voxel holding x.begin and ends after the one holding x.end-1.
    for (let a = 0; a < 3; a++) {
      assert.ok(low.begin[a] * f[a] <= x.begin[a] && (low.begin[a] + 1) * f[a] > x.begin[a]);
      assert.ok(low.end[a] * f[a] >= x.end[a] && (low.end[a] - 1) * f[a] < x.end[a]);
    }
    const lowBox = randomBox(r, 0, 50, 20);
    assert.ok(contains(toLow(toFull(lowBox, f), f), lowBox));
  }
});

test('unionVolume counts each covered voxel once, on sparse and on crowded boxes', () => {
  const r = rng(5);
  for (const [count, span] of [[0, 8], [1, 8], [3, 12], [12, 10], [60, 6]]) {
    const boxes: Box[] = [];
    for (let i = 0; i < count; i++) {
      const b = [randInt(r, 0, span), randInt(r, 0, span), randInt(r, 0, span)] as Vec3;
      boxes.push(box(b, [b[0] + randInt(r, 0, 5), b[1] + randInt(r, 0, 5), b[2] + randInt(r, 0, 5)]));
    }
    const seen = new Set<string>();
    for (const b of boxes) for (let z = b.begin[0]; z < b.end[0]; z++) for (let y = b.begin[1]; y < b.end[1]; y++) for (let x = b.begin[2]; x < b.end[2]; x++) seen.add(`${z},${y},${x}`);
    assert.equal(unionVolume(boxes), seen.size, `${count} boxes`);
  }
});
