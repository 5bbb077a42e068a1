import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Box, type Vec3, box, boxOfShape, boxToString, contains, grow, intersect, isEmpty, shapeOf, volumeOf } from '../../shared/geometry/box.ts';
import { type Array3, array3, zeros } from '../../shared/array/array3.ts';
import { type CropPrediction, type QuantisedCrop, PasteAccumulator } from '../../shared/pipeline/paste.ts';
import { INV_QUANT, QUANT } from '../../shared/pipeline/quant.ts';
import { BufferPool } from '../../shared/array/pool.ts';
import { argmax, gaussianMap } from '../../shared/infer/sliding.ts';
import { contextBox, halfPatch } from '../../shared/pipeline/context.ts';
import { randInt, rng } from '../helpers/rng.ts';

const idx = (s: Vec3, z: number, y: number, x: number) => (z * s[1] + y) * s[2] + x;
const inBox = (b: Box, z: number, y: number, x: number) =>
  z >= b.begin[0] && z < b.end[0] && y >= b.begin[1] && y < b.end[1] && x >= b.begin[2] && x < b.end[2];

/** The Gaussian weight of voxel (z,y,x) of a box of `shape` (σ = shape/8, centre (n−1)/2, peak 1). */
/** The sliding window's (nnU-Net's) importance map: centred at p // 2, σ = p/8, peak 1. */
function gaussRef(shape: Vec3, z: number, y: number, x: number): number {
  const g = (i: number, p: number) => Math.exp(-((i - Math.floor(p / 2)) ** 2) / (2 * (p / 8) ** 2));
  return g(z, shape[0]) * g(y, shape[1]) * g(x, shape[2]);
}

function constCrop(source: Box, target: Box, ...values: number[]): CropPrediction {
  const s = shapeOf(target);
  const n = s[0] * s[1] * s[2];
  return { source, target, values: values.map((v) => array3(new Float32Array(n).fill(v), s)) };
}

function fnCrop(source: Box, target: Box, f: (z: number, y: number, x: number) => number): CropPrediction {
  const s = shapeOf(target);
  const a = zeros(s);
  for (let z = 0; z < s[0]; z++) for (let y = 0; y < s[1]; y++) for (let x = 0; x < s[2]; x++) {
    a.data[idx(s, z, y, x)] = f(target.begin[0] + z, target.begin[1] + y, target.begin[2] + x);
  }
  return { source, target, values: [a] };
}

/** Visit every voxel of `write` in absolute coordinates with its flat index. */
function each(write: Box, fn: (z: number, y: number, x: number, i: number) => void): void {
  const s = shapeOf(write);
  for (let z = 0; z < s[0]; z++) for (let y = 0; y < s[1]; y++) for (let x = 0; x < s[2]; x++) {
    fn(write.begin[0] + z, write.begin[1] + y, write.begin[2] + x, idx(s, z, y, x));
  }
}

// ---------------------------------------------------------------- PasteAccumulator

test('paste: a single crop gives its own values on its target and background elsewhere', () => {
  const write = box([10, 20, 30], [18, 30, 42]);
  const target = box([12, 23, 34], [16, 28, 39]);
  const value = (z: number, y: number, x: number) => Math.fround(Math.sin(z * 7 + y * 3 + x) * 0.5 + 0.5);
  const acc = new PasteAccumulator(write, 1);
  assert.deepEqual(acc.shape, [8, 10, 12]);
  acc.add(fnCrop(target, target, value));
  assert.equal(acc.covered(), volumeOf(target));
  const [out] = acc.result();
  assert.deepEqual(out.shape, [8, 10, 12]);
  each(write, (z, y, x, i) => {
    if (inBox(target, z, y, x)) {
      // w·v / w: equal up to float32 rounding of one product and one quotient.
      assert.ok(Math.abs(out.data[i] - value(z, y, x)) <= 2 ** -22 * value(z, y, x), `${z},${y},${x}`);
    } else assert.equal(out.data[i], 0);
  });
  // Powers of two come back exactly (w·2^k is exact in float32).
  const exact = new PasteAccumulator(write, 2);
  exact.add(constCrop(target, target, 0.5, 0.125));
  const [c0, c1] = exact.result();
  each(write, (z, y, x, i) => {
    assert.equal(c0.data[i], inBox(target, z, y, x) ? 0.5 : 0);
    assert.equal(c1.data[i], inBox(target, z, y, x) ? 0.125 : 0);
  });
});

test('paste: two overlapping crops blend to a Gaussian-weighted mean strictly between a and b', () => {
  const write = boxOfShape([6, 16, 24]);
  const A = box([0, 0, 0], [6, 12, 12]);
  const B = box([1, 4, 6], [6, 16, 20]);
  const a = 0.2, b = 0.9;
  const fa = Math.fround(a), fb = Math.fround(b);
  const acc = new PasteAccumulator(write, 1);
  acc.add(constCrop(A, A, a));
  acc.add(constCrop(B, B, b));
  const [out] = acc.result();
  const sa = shapeOf(A), sb = shapeOf(B);
  let overlap = 0;
  each(write, (z, y, x, i) => {
    const inA = inBox(A, z, y, x), inB = inBox(B, z, y, x);
    const v = out.data[i];
    if (inA && inB) {
      overlap++;
      assert.ok(v > fa && v < fb, `overlap ${z},${y},${x}: ${v}`);
      const wa = gaussRef(sa, z - A.begin[0], y - A.begin[1], x - A.begin[2]);
      const wb = gaussRef(sb, z - B.begin[0], y - B.begin[1], x - B.begin[2]);
      const want = (wa * fa + wb * fb) / (wa + wb);
      assert.ok(Math.abs(v - want) <= 1e-5, `${z},${y},${x}: ${v} vs ${want}`);
    } else if (inA) assert.ok(Math.abs(v - fa) <= 1e-7);
    else if (inB) assert.ok(Math.abs(v - fb) <= 1e-7);
    else assert.equal(v, 0);
  });
  assert.equal(overlap, volumeOf(intersect(A, B)));
  assert.equal(acc.covered(), volumeOf(A) + volumeOf(B) - overlap);
});

function orderCrops(): CropPrediction[] {
  return [
    constCrop(box([0, 0, 0], [6, 12, 12]), box([0, 0, 0], [6, 12, 12]), 0.2),
    constCrop(box([1, 4, 6], [6, 16, 20]), box([1, 4, 6], [6, 16, 20]), 0.9),
  ];
}

function pasteInOrder(crops: CropPrediction[], order: number[]): Float32Array {
  const acc = new PasteAccumulator(boxOfShape([6, 16, 24]), 1);
  for (const i of order) acc.add(crops[i]);
  return acc.result()[0].data;
}

test('paste: the result does not depend on the order of add() (up to float32 rounding)', () => {
  const crops = orderCrops();
  const run = (order: number[]) => pasteInOrder(crops, order);
  const ab = run([0, 1]), ba = run([1, 0]);
  for (let i = 0; i < ab.length; i++) {
    assert.ok(Math.abs(ab[i] - ba[i]) <= 2 ** -22 * Math.abs(ab[i]), `voxel ${i}: ${ab[i]} vs ${ba[i]}`);
  }
  // Three crops overlapping: every order gives the same blend (up to float32 summation order).
  crops.push(fnCrop(box([2, 2, 8], [5, 14, 24]), box([2, 2, 8], [5, 14, 24]), (z, y, x) => ((z + y + x) % 5) / 5));
  const orders = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
  const ref = run(orders[0]);
  for (const o of orders.slice(1)) {
    const got = run(o);
    for (let i = 0; i < ref.length; i++) assert.ok(Math.abs(got[i] - ref[i]) <= 1e-6, `order ${o} voxel ${i}`);
  }
});


test('paste: weights are centred on the source box, not on the target', () => {
  // Crop A predicts the left half (target) of a wider source box; B covers the same voxels whole.
  const write = boxOfShape([4, 8, 16]);
  const srcA = box([0, 0, 0], [4, 8, 16]);
  const tgtA = box([0, 0, 0], [4, 8, 8]);
  const B = box([0, 0, 4], [4, 8, 12]);
  const acc = new PasteAccumulator(write, 1);
  acc.add(constCrop(srcA, tgtA, 0));
  acc.add(constCrop(B, B, 1));
  const [out] = acc.result();
  each(write, (z, y, x, i) => {
    const inA = inBox(tgtA, z, y, x), inB = inBox(B, z, y, x);
    if (inA && inB) {
      const wa = gaussRef([4, 8, 16], z, y, x);
      const wb = gaussRef([4, 8, 8], z, y, x - 4);
      assert.ok(Math.abs(out.data[i] - wb / (wa + wb)) <= 1e-5, `${z},${y},${x}`);
    } else if (inB) assert.equal(out.data[i], 1);
    else if (inA) assert.equal(out.data[i], 0);
  });
  // The test can tell the two apart: at x = 7, A's target edge but its source centre, a
  // target-centred weight would be tiny and the blend close to B's value.
  const wb7 = gaussRef([4, 8, 8], 2, 4, 3);
  const targetCentred = wb7 / (gaussRef([4, 8, 8], 2, 4, 7) + wb7);
  assert.ok(Math.abs(out.data[idx([4, 8, 16], 2, 4, 7)] - targetCentred) > 0.1);
});

test('paste: a crop partly outside the write box writes only inside it; one fully outside writes nothing', () => {
  const write = box([4, 4, 4], [8, 10, 12]);
  const target = box([2, 2, 6], [6, 14, 9]);
  const acc = new PasteAccumulator(write, 1);
  acc.add(fnCrop(target, target, (z, y, x) => (z * 100 + y * 10 + x) / 1000));
  acc.add(constCrop(box([20, 0, 0], [24, 4, 4]), box([20, 0, 0], [24, 4, 4]), 1));
  acc.add(constCrop(box([0, 0, 0], [4, 10, 12]), box([0, 0, 0], [4, 10, 12]), 1)); // touches, no overlap
  const inside = intersect(target, write);
  assert.equal(acc.covered(), volumeOf(inside));
  const [out] = acc.result();
  each(write, (z, y, x, i) => {
    const want = inBox(inside, z, y, x) ? Math.fround((z * 100 + y * 10 + x) / 1000) : 0;
    assert.ok(Math.abs(out.data[i] - want) <= 1e-6 * Math.max(want, 1e-6), `${z},${y},${x}: ${out.data[i]} vs ${want}`);
  });
});

test('paste: background(c) fills the voxels no crop covered, per channel', () => {
  const write = box([0, 10, 0], [3, 14, 5]);
  const s = shapeOf(write);
  const target = box([1, 11, 1], [3, 13, 4]);
  const acc = new PasteAccumulator(write, 2);
  acc.add(constCrop(target, target, 0.5, 0.25));
  const bgs: Array3<Float32Array>[] = [0, 1].map((c) => array3(Float32Array.from({ length: s[0] * s[1] * s[2] }, (_, i) => c + i / 1000), s));
  const asked: number[] = [];
  const out = acc.result((c) => { asked.push(c); return bgs[c]; });
  assert.deepEqual(asked, [0, 1]);
  for (const c of [0, 1]) {
    each(write, (z, y, x, i) => {
      assert.equal(out[c].data[i], inBox(target, z, y, x) ? [0.5, 0.25][c] : bgs[c].data[i], `c${c} ${z},${y},${x}`);
    });
  }
  // result() leaves the accumulator usable: more crops, new result.
  acc.add(constCrop(write, write, 1, 1));
  assert.equal(acc.covered(), volumeOf(write));
  assert.ok(acc.result()[0].data.every((v) => v > 0));
});

// ---------------------------------------------------------------- contextBox

test('contextBox: interior write boxes get half a patch of context on every side', () => {
  assert.deepEqual(halfPatch([16, 63, 64]), [8, 32, 32]);
  assert.deepEqual(contextBox(box([16, 64, 64], [32, 128, 128]), [16, 64, 64], [100, 500, 500]), box([8, 32, 32], [40, 160, 160]));
});

test('contextBox: clipped at the volume border, grown back to a patch and shifted inside', () => {
  const patch: Vec3 = [16, 64, 64];
  // Start corner: halo clipped away.
  assert.deepEqual(contextBox(box([0, 0, 0], [16, 64, 64]), patch, [100, 500, 500]), box([0, 0, 0], [24, 96, 96]));
  // A tiny write box at the start: [0,10)×[0,34)² grown to one patch, shifted to start at 0.
  assert.deepEqual(contextBox(box([0, 0, 0], [2, 2, 2]), patch, [100, 500, 500]), box([0, 0, 0], [16, 64, 64]));
  // At the far end: clipped [10,20)×[58,100)×[63,100) grown to a patch and shifted back inside.
  assert.deepEqual(contextBox(box([18, 90, 95], [20, 100, 100]), patch, [20, 100, 100]), box([4, 36, 36], [20, 100, 100]));
});

test('contextBox: a volume smaller than a patch is covered whole and padded symmetrically to a patch', () => {
  const ctx = contextBox(box([0, 0, 0], [10, 40, 64]), [16, 64, 64], [10, 40, 200]);
  // z: [0,10) grown by 6 → [-3,13); y: [0,40) grown by 24 → [-12,52); x: [0,96) has context.
  assert.deepEqual(ctx, box([-3, -12, 0], [13, 52, 96]));
});

test('contextBox: random write boxes — contains the write box and its clipped halo, at least a patch, inside where it fits', () => {
  const r = rng(77);
  for (let t = 0; t < 500; t++) {
    const volume: Vec3 = [randInt(r, 1, 60), randInt(r, 1, 60), randInt(r, 1, 60)];
    const patch: Vec3 = [randInt(r, 1, 40), randInt(r, 1, 40), randInt(r, 1, 40)];
    const begin = volume.map((v) => randInt(r, 0, v));
    const end = begin.map((b, a) => b + randInt(r, 1, volume[a] - b + 1));
    const write = box(begin as unknown as Vec3, end as unknown as Vec3);
    const ctx = contextBox(write, patch, volume);
    const vol = boxOfShape(volume);
    const halo = intersect(grow(write, halfPatch(patch)), vol);
    const what = `write ${boxToString(write)} patch ${patch} volume ${volume} → ${boxToString(ctx)}`;
    assert.ok(contains(ctx, write), what);
    assert.ok(contains(ctx, halo), what);
    const cs = shapeOf(ctx);
    const hs = shapeOf(halo);
    for (let a = 0; a < 3; a++) {
      assert.equal(cs[a], Math.max(patch[a], hs[a]), `${what} length on axis ${a}`);
      if (volume[a] >= patch[a]) {
        assert.ok(ctx.begin[a] >= 0 && ctx.end[a] <= volume[a], `${what} inside on axis ${a}`);
      } else {
        // Whole axis covered, padding split with the odd voxel at the end.
        assert.equal(ctx.begin[a] + Math.floor((patch[a] - volume[a]) / 2), 0, `${what} axis ${a}`);
      }
    }
  }
});

// ---------------------------------------------------------------- the kernel against the old accumulator

/**
 * The accumulator as it was before the kernel was rewritten (and the arg-max it was followed
 * by), kept here as the oracle: whole-chunk passes, a Float32Array copy of each dequantised
 * crop, the weight map from gaussianMap.
 */
function oldPaste(write: Box, channels: number, crops: QuantisedCrop[], activation: 'softmax' | 'sigmoid', bg?: Array3<Float32Array>[]) {
  const shape = shapeOf(write);
  const n = volumeOf(write);
  const acc = Array.from({ length: channels }, () => new Float32Array(n));
  const weight = new Float32Array(n);
  for (const p of crops) {
    const ts = shapeOf(p.target);
    const tn = volumeOf(p.target);
    const values = Array.from({ length: channels }, (_, ch) => {
      const f = new Float32Array(tn);
      for (let i = 0; i < tn; i++) f[i] = p.values[ch * tn + i] / QUANT;
      return f;
    });
    const r = intersect(p.target, write);
    if (isEmpty(r)) continue;
    const ss = shapeOf(p.source);
    const g = gaussianMap(ss);
    for (let z = r.begin[0]; z < r.end[0]; z++) for (let y = r.begin[1]; y < r.end[1]; y++) for (let x = r.begin[2]; x < r.end[2]; x++) {
      const w = g[((z - p.source.begin[0]) * ss[1] + (y - p.source.begin[1])) * ss[2] + (x - p.source.begin[2])];
      const o = ((z - write.begin[0]) * shape[1] + (y - write.begin[1])) * shape[2] + (x - write.begin[2]);
      const t = ((z - p.target.begin[0]) * ts[1] + (y - p.target.begin[1])) * ts[2] + (x - p.target.begin[2]);
      weight[o] += w;
      for (let c = 0; c < channels; c++) acc[c][o] += w * values[c][t];
    }
  }
  const probs = acc.map((a, c) => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = weight[i] > 0 ? a[i] / weight[i] : bg ? bg[c].data[i] : 0;
    return array3(out, shape);
  });
  let covered = 0;
  for (let i = 0; i < n; i++) if (weight[i] > 0) covered++;
  return { probs, seg: argmax(probs, activation), covered };
}

/** Random crops around `write`: sources larger than targets, some reaching past it or missing it, values of any 16 bits. */
function randomCrops(r: () => number, write: Box, channels: number, count: number): QuantisedCrop[] {
  const crops: QuantisedCrop[] = [];
  for (let k = 0; k < count; k++) {
    const begin = write.begin.map((b, a) => b - 3 + randInt(r, 0, shapeOf(write)[a] + 3)) as unknown as Vec3;
    const source = box(begin, begin.map((b) => b + randInt(r, 1, 12)) as unknown as Vec3);
    const tb = source.begin.map((b, a) => b + randInt(r, 0, Math.max(1, shapeOf(source)[a] - 1))) as unknown as Vec3;
    const target = box(tb, tb.map((b, a) => Math.min(source.end[a], b + randInt(r, 1, 10))) as unknown as Vec3);
    const values = Uint16Array.from({ length: channels * volumeOf(target) }, () => (r() < 0.1 ? [0, QUANT][randInt(r, 0, 2)] : randInt(r, 0, QUANT + 1)));
    crops.push({ source, target, values });
  }
  return crops;
}

const bitsEqual = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

test('paste kernel: q · INV_QUANT rounded to float32 is q / QUANT as a Float32Array stores it, for every 16-bit q', () => {
  const want = new Float32Array(QUANT + 1);
  for (let q = 0; q <= QUANT; q++) want[q] = q / QUANT;
  const bad: number[] = [];
  for (let q = 0; q <= QUANT; q++) if (Math.fround(q * INV_QUANT) !== want[q]) bad.push(q);
  assert.deepEqual(bad, []);
});

test('paste kernel: addQuantised + finish give the old accumulator\'s floats and arg-max bit for bit on random crops', () => {
  const r = rng(2024);
  const pool = new BufferPool(2 ** 26);
  for (let t = 0; t < 60; t++) {
    const channels = 1 + (t % 3);
    const activation = t % 2 ? 'sigmoid' : 'softmax';
    const write = box([randInt(r, 0, 5), randInt(r, 0, 5), randInt(r, 0, 5)], [randInt(r, 6, 12), randInt(r, 6, 14), randInt(r, 6, 16)]);
    const s = shapeOf(write);
    const crops = randomCrops(r, write, channels, randInt(r, 0, 12));
    const bg = t % 4 === 3 ? Array.from({ length: channels }, () => array3(Float32Array.from({ length: volumeOf(write) }, () => Math.fround(r())), s)) : undefined;
    const want = oldPaste(write, channels, crops, activation, bg);
    // Through a pool shared by every case: what release() leaves behind must not leak into the next chunk.
    const acc = new PasteAccumulator(write, channels, t % 5 ? pool : undefined);
    for (const c of crops) acc.addQuantised(c);
    const got = acc.finish(activation, bg && ((c) => bg[c]));
    const what = `case ${t}: ${channels} channels, ${activation}, ${crops.length} crops${bg ? ', background' : ''}`;
    assert.equal(got.covered, want.covered, what);
    for (let c = 0; c < channels; c++) assert.ok(bitsEqual(got.probs[c].data, want.probs[c].data), `${what}: channel ${c}`);
    assert.deepEqual(got.seg.data, want.seg.data, what);
    acc.release();
  }
});

test('paste kernel: add() of float crops equals addQuantised of the same values, and covered() and result() agree with finish()', () => {
  const r = rng(99);
  const write = box([2, 3, 4], [10, 19, 27]);
  const crops = randomCrops(r, write, 2, 20);
  const q = new PasteAccumulator(write, 2);
  const f = new PasteAccumulator(write, 2);
  for (const c of crops) {
    q.addQuantised(c);
    const n = volumeOf(c.target);
    const values = [0, 1].map((ch) => array3(Float32Array.from(c.values.subarray(ch * n, (ch + 1) * n), (v) => v / QUANT), shapeOf(c.target)));
    f.add({ source: c.source, target: c.target, values });
  }
  const viaResult = f.result();
  const covered = f.covered();
  const got = q.finish('softmax');
  assert.ok(covered > 0);
  assert.equal(got.covered, covered);
  for (const c of [0, 1]) assert.ok(bitsEqual(got.probs[c].data, viaResult[c].data), `channel ${c}`);
  assert.deepEqual(got.seg.data, argmax(viaResult, 'softmax').data);
});
