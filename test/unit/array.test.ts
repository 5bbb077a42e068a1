import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Box, type Vec3, box, isEmpty, shapeOf, volumeOf } from '../../shared/geometry/box.ts';
import { type Array3, array3, copyRegion, crop, zeros } from '../../shared/array/array3.ts';
import { foregroundRows } from '../../shared/pipeline/instances.ts';
import { downShape, downsampleMax, downsampleMean, downsampleMode, resizeLinear, resizeNearest } from '../../shared/array/resample.ts';
import { pyramidFactors } from '../../shared/volume/ome.ts';
import { type Connectivity, label } from '../../shared/array/components.ts';
import { BufferPool } from '../../shared/array/pool.ts';
import { randInt, rng } from '../helpers/rng.ts';

const idx = (s: Vec3, z: number, y: number, x: number) => (z * s[1] + y) * s[2] + x;

function randomArray(r: () => number, shape: Vec3, scale = 100): Array3<Float32Array> {
  const a = zeros(shape);
  for (let i = 0; i < a.data.length; i++) a.data[i] = Math.round(r() * scale * 8) / 8; // exact in float32
  return a;
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what = ''): void {
  assert.equal(actual.length, expected.length, `${what} length`);
  for (let i = 0; i < actual.length; i++) {
    if (!(Math.abs(actual[i] - expected[i]) <= tol * Math.max(1, Math.abs(expected[i])))) {
      assert.fail(`${what}[${i}] = ${actual[i]}, expected ${expected[i]} (±${tol})`);
    }
  }
}

// ---------------------------------------------------------------- array3.ts

test('array3: refuses data whose length does not match the shape', () => {
  assert.throws(() => array3(new Float32Array(7), [2, 2, 2]), RangeError);
  assert.deepEqual(array3(new Uint8Array(24), [2, 3, 4]).shape, [2, 3, 4]);
});

/** Reference copy: voxel by voxel over a frame large enough to hold everything. */
function copyReference(src: Array3, so: Vec3, dst: Array3, dOrigin: Vec3, region: Box): { data: number[]; copied: number } {
  const out = Array.from(dst.data);
  let copied = 0;
  for (let z = -40; z < 40; z++) for (let y = -40; y < 40; y++) for (let x = -40; x < 40; x++) {
    const inR = z >= region.begin[0] && z < region.end[0] && y >= region.begin[1] && y < region.end[1] && x >= region.begin[2] && x < region.end[2];
    const s = [z - so[0], y - so[1], x - so[2]];
    const d = [z - dOrigin[0], y - dOrigin[1], x - dOrigin[2]];
    const inS = s.every((v, a) => v >= 0 && v < src.shape[a]);
    const inD = d.every((v, a) => v >= 0 && v < dst.shape[a]);
    if (inR && inS && inD) {
      out[idx(dst.shape, d[0], d[1], d[2])] = src.data[idx(src.shape, s[0], s[1], s[2])];
      copied++;
    }
  }
  return { data: out, copied };
}

test('copyRegion: hand case — copies exactly the overlap of region, src and dst', () => {
  const src = array3(Float32Array.from({ length: 27 }, (_, i) => i + 1), [3, 3, 3]);
  const dst = array3(new Float32Array(16).fill(-1), [1, 4, 4]);
  // src covers [10,13)^3; dst covers z [11,12), y [9,13), x [12,16); region is everything.
  const r = copyRegion(src, [10, 10, 10], dst, [11, 9, 12], box([0, 0, 0], [100, 100, 100]));
  assert.deepEqual(r, box([11, 10, 12], [12, 13, 13]));
  // dst row y=9 is outside src → untouched; rows y=10..12, x=12 (dst x 0) ← src z1, y0..2, x2.
  const expected = [
    -1, -1, -1, -1,
    src.data[idx([3, 3, 3], 1, 0, 2)], -1, -1, -1,
    src.data[idx([3, 3, 3], 1, 1, 2)], -1, -1, -1,
    src.data[idx([3, 3, 3], 1, 2, 2)], -1, -1, -1,
  ];
  assert.deepEqual(Array.from(dst.data), expected);
});

test('copyRegion: random placements agree with a voxel-by-voxel reference', () => {
  const r = rng(101);
  for (let t = 0; t < 60; t++) {
    const ss: Vec3 = [randInt(r, 1, 7), randInt(r, 1, 7), randInt(r, 1, 7)];
    const ds: Vec3 = [randInt(r, 1, 7), randInt(r, 1, 7), randInt(r, 1, 7)];
    const src = randomArray(r, ss);
    const dst = array3(new Float32Array(ds[0] * ds[1] * ds[2]).fill(-7), ds);
    const so: Vec3 = [randInt(r, -6, 6), randInt(r, -6, 6), randInt(r, -6, 6)];
    const dOrigin: Vec3 = [randInt(r, -6, 6), randInt(r, -6, 6), randInt(r, -6, 6)];
    const rb = [randInt(r, -8, 8), randInt(r, -8, 8), randInt(r, -8, 8)];
    const region = box(rb as unknown as Vec3, rb.map((v) => v + randInt(r, 0, 12)) as unknown as Vec3);
    const ref = copyReference(src, so, dst, dOrigin, region);
    const got = copyRegion(src, so, dst, dOrigin, region);
    assert.deepEqual(Array.from(dst.data), ref.data);
    assert.equal(isEmpty(got) ? 0 : volumeOf(got), ref.copied);
  }
});

test('crop: inside, partially outside (zeros there), dtype kept', () => {
  const shape: Vec3 = [4, 5, 6];
  const src = array3(Uint16Array.from({ length: 120 }, (_, i) => 1000 + i), shape);
  const origin: Vec3 = [2, 0, -3];
  const region = box([1, 3, -5], [4, 7, 0]); // z 1..3 (src z -1..1), y 3..6 (src 3..6), x -5..-1 (src -2..2)
  const c = crop(src, origin, region);
  assert.ok(c.data instanceof Uint16Array);
  assert.deepEqual(c.shape, shapeOf(region));
  for (let z = 0; z < 3; z++) for (let y = 0; y < 4; y++) for (let x = 0; x < 5; x++) {
    const sz = region.begin[0] + z - origin[0], sy = region.begin[1] + y - origin[1], sx = region.begin[2] + x - origin[2];
    const inside = sz >= 0 && sz < 4 && sy >= 0 && sy < 5 && sx >= 0 && sx < 6;
    assert.equal(c.data[idx(c.shape, z, y, x)], inside ? 1000 + idx(shape, sz, sy, sx) : 0, `${z},${y},${x}`);
  }
  // Entirely outside → all zeros, of the region's shape.
  const far = crop(src, origin, box([50, 50, 50], [52, 53, 54]));
  assert.deepEqual(far.shape, [2, 3, 4]);
  assert.ok(far.data.every((v) => v === 0));
});

// ---------------------------------------------------------------- resample.ts

function poolReference(src: Array3, f: Vec3, op: 'mean' | 'max'): { shape: Vec3; data: number[] } {
  const out: Vec3 = [Math.ceil(src.shape[0] / f[0]), Math.ceil(src.shape[1] / f[1]), Math.ceil(src.shape[2] / f[2])];
  const data: number[] = [];
  for (let oz = 0; oz < out[0]; oz++) for (let oy = 0; oy < out[1]; oy++) for (let ox = 0; ox < out[2]; ox++) {
    let sum = 0, n = 0, max = -Infinity;
    for (let z = oz * f[0]; z < Math.min((oz + 1) * f[0], src.shape[0]); z++) {
      for (let y = oy * f[1]; y < Math.min((oy + 1) * f[1], src.shape[1]); y++) {
        for (let x = ox * f[2]; x < Math.min((ox + 1) * f[2], src.shape[2]); x++) {
          const v = src.data[idx(src.shape, z, y, x)];
          sum += v; n++; max = Math.max(max, v);
        }
      }
    }
    data.push(op === 'mean' ? sum / n : max);
  }
  return { shape: out, data };
}

test('downShape: ceil(shape / factor)', () => {
  assert.deepEqual(downShape([5, 8, 9], [2, 4, 4]), [3, 2, 3]);
});

test('downsampleMean / downsampleMax: hand case with partial edge blocks', () => {
  // One row x = [1, 2, 3, 4, 5] with factor 2 → blocks {1,2}, {3,4}, {5}.
  const a = array3(Float32Array.from([1, 2, 3, 4, 5]), [1, 1, 5]);
  assert.deepEqual(Array.from(downsampleMean(a, [1, 1, 2]).data), [1.5, 3.5, 5]);
  assert.deepEqual(Array.from(downsampleMax(a, [1, 1, 2]).data), [2, 4, 5]);
  // Negative values: max of {-3, -1} is -1 (not 0).
  const n = array3(Float32Array.from([-3, -1, -8]), [1, 1, 3]);
  assert.deepEqual(Array.from(downsampleMax(n, [1, 1, 2]).data), [-1, -8]);
});

test('downsampleMean / downsampleMax agree with brute force, partial edge blocks included', () => {
  const r = rng(7);
  const cases: Array<[Vec3, Vec3]> = [
    [[5, 7, 9], [2, 3, 4]], [[4, 8, 8], [1, 4, 4]], [[3, 10, 11], [3, 3, 3]], [[6, 6, 6], [1, 1, 1]], [[2, 5, 3], [4, 2, 5]],
  ];
  for (const [shape, f] of cases) {
    const a = randomArray(r, shape);
    const mean = downsampleMean(a, f);
    const max = downsampleMax(a, f);
    const rm = poolReference(a, f, 'mean');
    const rx = poolReference(a, f, 'max');
    assert.deepEqual(mean.shape, rm.shape);
    assert.deepEqual(max.shape, rx.shape);
    assert.ok(mean.data instanceof Float32Array);
    assertClose(mean.data, rm.data, 1e-6, `mean ${shape}/${f}`);
    assert.deepEqual(Array.from(max.data), rx.data, `max ${shape}/${f}`);
  }
  // Integer input → float output with exact means.
  const u = array3(Uint8Array.from([0, 255, 1, 2, 3, 4, 5, 6]), [2, 2, 2]);
  assert.deepEqual(Array.from(downsampleMean(u, [2, 2, 2]).data), [276 / 8]);
});

test('downsampleMean: two [1,2,2] steps equal one [1,4,4] step when shapes divide by 4', () => {
  const r = rng(8);
  const a = randomArray(r, [3, 16, 12]);
  const twice = downsampleMean(downsampleMean(a, [1, 2, 2]), [1, 2, 2]);
  const once = downsampleMean(a, [1, 4, 4]);
  assert.deepEqual(twice.shape, [3, 4, 3]);
  assert.deepEqual(once.shape, [3, 4, 3]);
  assertClose(twice.data, once.data, 1e-6, 'pyramid');
});

/** align_corners=false sample position of output voxel o (n in, m out), clamped. */
function srcPos(o: number, n: number, m: number): number {
  return Math.min(Math.max((o + 0.5) * (n / m) - 0.5, 0), n - 1);
}

test('resizeLinear: identity when the shape is unchanged', () => {
  const a = randomArray(rng(12), [4, 5, 6]);
  const b = resizeLinear(a, [4, 5, 6]);
  assert.deepEqual(Array.from(b.data), Array.from(a.data));
});

test('resizeLinear: a constant stays constant at any shape', () => {
  const v = Math.fround(3.7);
  const a = array3(new Float32Array(3 * 4 * 5).fill(v), [3, 4, 5]);
  for (const s of [[1, 1, 1], [6, 8, 10], [2, 7, 3], [5, 1, 9]] as Vec3[]) {
    const b = resizeLinear(a, s);
    assert.deepEqual(b.shape, s);
    assert.ok(b.data.every((x) => x === v), `shape ${s}`);
  }
});

test('resizeLinear: align_corners=false positions on 1D cases, by hand', () => {
  const row = array3(Float32Array.from([0, 10, 20, 30]), [1, 1, 4]);
  // ×2: positions o/2 - 1/4, clamped to [0, 3].
  assert.deepEqual(Array.from(resizeLinear(row, [1, 1, 8]).data), [0, 2.5, 7.5, 12.5, 17.5, 22.5, 27.5, 30]);
  // ÷2: positions 0.5 and 2.5 (block centres).
  assert.deepEqual(Array.from(resizeLinear(row, [1, 1, 2]).data), [5, 25]);
  // 4 → 3: positions 1/6, 3/2, 17/6.
  assertClose(resizeLinear(row, [1, 1, 3]).data, [10 / 6, 15, 170 / 6], 1e-6, '4→3');
  // The same along z and y.
  const col = array3(Float32Array.from([0, 10, 20, 30]), [4, 1, 1]);
  assert.deepEqual(Array.from(resizeLinear(col, [8, 1, 1]).data), [0, 2.5, 7.5, 12.5, 17.5, 22.5, 27.5, 30]);
  const ycol = array3(Float32Array.from([0, 10, 20, 30]), [1, 4, 1]);
  assert.deepEqual(Array.from(resizeLinear(ycol, [1, 2, 1]).data), [5, 25]);
});

test('resizeLinear: reproduces a linear function at the clamped align_corners=false positions', () => {
  const r = rng(13);
  for (let t = 0; t < 20; t++) {
    const n: Vec3 = [randInt(r, 1, 7), randInt(r, 1, 7), randInt(r, 1, 7)];
    const m: Vec3 = [randInt(r, 1, 11), randInt(r, 1, 11), randInt(r, 1, 11)];
    const [cz, cy, cx, c0] = [r() * 4 - 2, r() * 4 - 2, r() * 4 - 2, r() * 10];
    const f = (z: number, y: number, x: number) => cz * z + cy * y + cx * x + c0;
    const a = zeros(n);
    for (let z = 0; z < n[0]; z++) for (let y = 0; y < n[1]; y++) for (let x = 0; x < n[2]; x++) a.data[idx(n, z, y, x)] = f(z, y, x);
    const b = resizeLinear(a, m);
    const expected: number[] = [];
    for (let z = 0; z < m[0]; z++) for (let y = 0; y < m[1]; y++) for (let x = 0; x < m[2]; x++) {
      expected.push(f(srcPos(z, n[0], m[0]), srcPos(y, n[1], m[1]), srcPos(x, n[2], m[2])));
    }
    assertClose(b.data, expected, 1e-4, `${n}→${m}`);
  }
});

test('resizeNearest: voxel centres aligned, identity, labels kept', () => {
  const row = array3(Float32Array.from([0, 10, 20, 30]), [1, 1, 4]);
  // Source index floor((o + 0.5) · n / m).
  assert.deepEqual(Array.from(resizeNearest(row, [1, 1, 8]).data), [0, 0, 10, 10, 20, 20, 30, 30]);
  assert.deepEqual(Array.from(resizeNearest(row, [1, 1, 2]).data), [10, 30]);
  assert.deepEqual(Array.from(resizeNearest(row, [1, 1, 3]).data), [0, 20, 30]);
  const lab = array3(Uint8Array.from({ length: 60 }, (_, i) => (i * 7) % 5), [3, 4, 5]);
  assert.deepEqual(Array.from(resizeNearest(lab, [3, 4, 5]).data), Array.from(lab.data));
  const big = resizeNearest(lab, [7, 9, 2]);
  const values = new Set(lab.data);
  assert.ok(big.data.every((v) => values.has(v)), 'nearest never invents values');
  for (let z = 0; z < 7; z++) for (let y = 0; y < 9; y++) for (let x = 0; x < 2; x++) {
    const sz = Math.floor((z + 0.5) * 3 / 7), sy = Math.floor((y + 0.5) * 4 / 9), sx = Math.floor((x + 0.5) * 5 / 2);
    assert.equal(big.data[idx([7, 9, 2], z, y, x)], lab.data[idx([3, 4, 5], sz, sy, sx)]);
  }
});

// ---------------------------------------------------------------- components.ts

function maskOf(shape: Vec3, on: Vec3[]): Uint8Array {
  const m = new Uint8Array(shape[0] * shape[1] * shape[2]);
  for (const p of on) m[idx(shape, p[0], p[1], p[2])] = 1;
  return m;
}

test('label: corner, edge and face neighbours under 6, 18 and 26 connectivity', () => {
  const s: Vec3 = [2, 2, 2];
  const corner = maskOf(s, [[0, 0, 0], [1, 1, 1]]);
  assert.equal(label(corner, s, 6).count, 2);
  assert.equal(label(corner, s, 18).count, 2);
  assert.equal(label(corner, s, 26).count, 1);
  const edge = maskOf(s, [[0, 0, 0], [0, 1, 1]]);
  assert.equal(label(edge, s, 6).count, 2);
  assert.equal(label(edge, s, 18).count, 1);
  assert.equal(label(edge, s, 26).count, 1);
  const face = maskOf(s, [[0, 0, 0], [1, 0, 0]]);
  assert.equal(label(face, s, 6).count, 1);
  // Anti-diagonal: the later voxel's earlier neighbour is "up-right" in raster order.
  const anti = maskOf([1, 2, 2], [[0, 0, 1], [0, 1, 0]]);
  assert.equal(label(anti, [1, 2, 2], 6).count, 2);
  assert.equal(label(anti, [1, 2, 2], 26).count, 1);
  const zanti = maskOf([2, 2, 2], [[0, 1, 1], [1, 0, 0]]);
  assert.equal(label(zanti, [2, 2, 2], 26).count, 1);
  assert.equal(label(zanti, [2, 2, 2], 18).count, 2);
  // Default is 26.
  assert.equal(label(corner, s).count, 1);
});

test('label: components are numbered in raster order of their first voxel, merges included', () => {
  // z = 0 slice, 6-connected:
  //   1 0 1 0 1
  //   1 0 1 0 0
  //   1 1 1 0 1
  // The U (cols 0 and 2 joined by the bottom row) is found as two provisional labels first.
  const s: Vec3 = [1, 3, 5];
  const m = Uint8Array.from([1, 0, 1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1]);
  const c = label(m, s, 6);
  assert.equal(c.count, 3);
  assert.deepEqual(Array.from(c.labels), [1, 0, 1, 0, 2, 1, 0, 1, 0, 0, 1, 1, 1, 0, 3]);
  // A component whose first voxel comes later in raster order gets the higher number, even
  // if its voxels reach further back in later rows.
  const s2: Vec3 = [1, 3, 4];
  const m2 = Uint8Array.from([0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 1, 1]);
  // (0,3) first → 1; (1,0) → 2; (1,3),(2,2),(2,3) join 1; (2,0) joins 2 — 6-connected
  assert.deepEqual(Array.from(label(m2, s2, 6).labels), [0, 0, 0, 1, 2, 0, 0, 1, 2, 0, 1, 1]);
});

test('label: empty and full masks', () => {
  const s: Vec3 = [3, 4, 5];
  const e = label(new Uint8Array(60), s);
  assert.equal(e.count, 0);
  assert.ok(e.labels.every((v) => v === 0));
  const f = label(new Uint8Array(60).fill(1), s, 6);
  assert.equal(f.count, 1);
  assert.ok(f.labels.every((v) => v === 1));
});

function bfsLabel(mask: ArrayLike<number>, s: Vec3, conn: Connectivity): { labels: Int32Array; count: number } {
  const offs: Vec3[] = [];
  for (let dz = -1; dz <= 1; dz++) for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
    const n = Math.abs(dz) + Math.abs(dy) + Math.abs(dx);
    if (n === 0 || (conn === 6 && n > 1) || (conn === 18 && n > 2)) continue;
    offs.push([dz, dy, dx]);
  }
  const labels = new Int32Array(s[0] * s[1] * s[2]);
  let count = 0;
  for (let z = 0; z < s[0]; z++) for (let y = 0; y < s[1]; y++) for (let x = 0; x < s[2]; x++) {
    const i = idx(s, z, y, x);
    if (!mask[i] || labels[i]) continue;
    count++;
    labels[i] = count;
    const queue: Vec3[] = [[z, y, x]];
    while (queue.length) {
      const [cz, cy, cx] = queue.pop()!;
      for (const [dz, dy, dx] of offs) {
        const nz = cz + dz, ny = cy + dy, nx = cx + dx;
        if (nz < 0 || ny < 0 || nx < 0 || nz >= s[0] || ny >= s[1] || nx >= s[2]) continue;
        const j = idx(s, nz, ny, nx);
        if (mask[j] && !labels[j]) { labels[j] = count; queue.push([nz, ny, nx]); }
      }
    }
  }
  return { labels, count };
}

test('label: random masks agree with a BFS reference (6, 18, 26)', () => {
  const r = rng(2024);
  for (let t = 0; t < 30; t++) {
    const s: Vec3 = [randInt(r, 1, 8), randInt(r, 1, 10), randInt(r, 1, 12)];
    const density = 0.2 + r() * 0.4;
    const m = Uint8Array.from({ length: s[0] * s[1] * s[2] }, () => (r() < density ? 1 : 0));
    for (const conn of [6, 18, 26] as Connectivity[]) {
      const got = label(m, s, conn);
      const ref = bfsLabel(m, s, conn);
      assert.equal(got.count, ref.count, `count, shape ${s}, ${conn}`);
      assert.deepEqual(got.labels, ref.labels, `labels, shape ${s}, ${conn}`);
    }
  }
});

test('label: accepts any numeric mask (non-zero = foreground)', () => {
  const s: Vec3 = [1, 1, 5];
  const c = label(Float32Array.from([0.5, 0, -1, 2, 0]), s, 6);
  assert.equal(c.count, 2);
  assert.deepEqual(Array.from(c.labels), [1, 0, 2, 2, 0]);
});

/** The most frequent label of block (oz, oy, ox) of `a` by factor `f`, ties to the larger, counted in a Map; and how many labels it holds. */
function modeOf(a: Array3, f: Vec3, oz: number, oy: number, ox: number): { best: number; labels: number } {
  const shape = a.shape;
  const n = new Map<number, number>();
  for (let z = oz * f[0]; z < Math.min(shape[0], (oz + 1) * f[0]); z++) for (let y = oy * f[1]; y < Math.min(shape[1], (oy + 1) * f[1]); y++) for (let x = ox * f[2]; x < Math.min(shape[2], (ox + 1) * f[2]); x++) {
    const v = a.data[idx(shape, z, y, x)];
    n.set(v, (n.get(v) ?? 0) + 1);
  }
  return { best: [...n.entries()].sort((p, q) => q[1] - p[1] || q[0] - p[0])[0][0], labels: n.size };
}

test('downsampleMode: the most frequent label per block, ties to the larger label, partial edge blocks count what they hold', () => {
  const r = rng(3);
  for (const [shape, f] of [[[3, 7, 9], [1, 2, 2]], [[4, 4, 5], [2, 2, 2]], [[1, 5, 5], [1, 3, 3]]] as Array<[Vec3, Vec3]>) {
    const a = array3(Uint8Array.from({ length: shape[0] * shape[1] * shape[2] }, () => (r() < 0.6 ? 0 : randInt(r, 1, 4))), shape);
    const d = downsampleMode(a, f);
    assert.deepEqual(d.shape, downShape(shape, f));
    for (let oz = 0; oz < d.shape[0]; oz++) for (let oy = 0; oy < d.shape[1]; oy++) for (let ox = 0; ox < d.shape[2]; ox++) {
      assert.equal(d.data[idx(d.shape, oz, oy, ox)], modeOf(a, f, oz, oy, ox).best);
    }
  }
  // Half a 2×2 block foreground: the cleft stays.
  assert.deepEqual([...downsampleMode(array3(Uint8Array.from([0, 1, 0, 1]), [1, 2, 2]), [1, 2, 2]).data], [1]);
});

test('downsampleMode: sparse labels (uniform rows and blocks take the one-scan paths) agree with counting every block', () => {
  const r = rng(8);
  for (const [shape, f] of [[[5, 37, 41], [1, 2, 2]], [[6, 33, 40], [1, 4, 4]], [[7, 20, 23], [2, 3, 3]]] as Array<[Vec3, Vec3]>) {
    // Background, a slab of label 2 filling whole rows, and a few blobs of mixed labels.
    const a = array3(new Uint8Array(shape[0] * shape[1] * shape[2]), shape);
    for (let y = 4; y < 8; y++) for (let x = 0; x < shape[2]; x++) a.data[idx(shape, 1, y, x)] = 2;
    for (let k = 0; k < 12; k++) {
      const [cz, cy, cx] = [randInt(r, 0, shape[0]), randInt(r, 0, shape[1]), randInt(r, 0, shape[2])];
      for (let z = cz; z < Math.min(shape[0], cz + 2); z++) for (let y = cy; y < Math.min(shape[1], cy + 5); y++) for (let x = cx; x < Math.min(shape[2], cx + 5); x++) a.data[idx(shape, z, y, x)] = randInt(r, 0, 256);
    }
    const d = downsampleMode(a, f);
    // With the rows' nonzero ranges (as paste hands them over), the same result.
    assert.deepEqual(downsampleMode(a, f, foregroundRows(a.data as Uint8Array, shape[0] * shape[1], shape[2])).data, d.data, `${shape} by ${f} with row ranges`);
    let mixed = 0;
    for (let oz = 0; oz < d.shape[0]; oz++) for (let oy = 0; oy < d.shape[1]; oy++) for (let ox = 0; ox < d.shape[2]; ox++) {
      const { best, labels } = modeOf(a, f, oz, oy, ox);
      if (labels > 1) mixed++;
      assert.equal(d.data[idx(d.shape, oz, oy, ox)], best, `${shape} by ${f} at ${oz},${oy},${ox}`);
    }
    assert.ok(mixed > 5, `${shape} by ${f}: mixed blocks ${mixed}`);
  }
});

test('pyramidFactors: anisotropic EM halves y and x first; levels stop where a chunk no longer maps to whole storage chunks or a level fits one', () => {
  // EM 40×4×4 nm, chunk 32×512×512, storage 16×128×128: (1,2,2), (1,4,4); (1,8,8) would cut a chunk into 64-wide pieces.
  assert.deepEqual(pyramidFactors([40, 4, 4], [32, 512, 512], [16, 128, 128], [64, 4096, 4096]), [[1, 2, 2], [1, 4, 4]]);
  // With room: y and x reach z's 40 nm at 8×, then all three halve.
  assert.deepEqual(pyramidFactors([40, 4, 4], [256, 4096, 4096], [16, 64, 64], [4096, 65536, 65536]), [[1, 2, 2], [1, 4, 4], [1, 8, 8], [2, 16, 16], [4, 32, 32], [8, 64, 64]]);
  // Isotropic: every axis halves; a small volume stops once a level fits one storage chunk.
  assert.deepEqual(pyramidFactors([1, 1, 1], [128, 128, 128], [32, 32, 32], [64, 64, 64]), [[2, 2, 2]]);
  // A chunk equal to the storage chunk: no level can be owned by one task.
  assert.deepEqual(pyramidFactors([40, 4, 4], [16, 128, 128], [16, 128, 128], [64, 1024, 1024]), []);
});

// ---------------------------------------------------------------- pool.ts

test('BufferPool: a buffer given back is handed out again (smaller requests too, as a prefix view), kinds apart, within the byte limit', () => {
  const pool = new BufferPool(3 * 4 * 1000);
  const big = pool.f32(1000);
  const small = pool.f32(10);
  assert.notEqual(big.buffer, small.buffer);
  pool.give(big);
  // The smallest buffer that holds the request: `big` for 500 elements, a fresh one for 2000.
  const half = pool.f32(500);
  assert.equal(half.buffer, big.buffer);
  assert.equal(half.length, 500);
  assert.ok(half.every((v) => v === 0));
  assert.notEqual(pool.f32(2000).buffer, big.buffer);
  pool.give(half);
  pool.give(small);
  assert.equal(pool.f32(8).buffer, small.buffer, 'the smaller of two that fit');
  assert.equal(pool.f32(8).buffer, big.buffer);
  // A Uint8Array never gets a float buffer, and a pool at its limit drops what is given.
  pool.give(big);
  assert.notEqual(pool.u8(100).buffer, big.buffer);
  // Labels (uint32) share the 4-byte buffers, both ways.
  const labels = pool.u32(1000);
  assert.equal(labels.buffer, big.buffer);
  pool.give(labels);
  assert.equal(pool.f32(1000).buffer, big.buffer);
  const tiny = new BufferPool(100);
  const a = tiny.u8(200);
  tiny.give(a);
  assert.notEqual(tiny.u8(200).buffer, a.buffer);
  // New buffers hold at least minElements: an edge chunk's buffer serves a whole chunk next.
  const chunked = new BufferPool(1e6, 1000);
  const edge = chunked.f32(300);
  assert.equal(edge.length, 300);
  assert.equal(edge.buffer.byteLength, 4000);
  chunked.give(edge);
  assert.equal(chunked.f32(1000).buffer, edge.buffer);
});
