import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Vec3 } from '../../shared/geometry/box.ts';
import { type Array3, array3, zeros } from '../../shared/array/array3.ts';
import {
  type SlidingOptions, MIRRORS, argmax, flipInto, gaussianMap, slidingWindow, tileSteps, toProbabilities,
} from '../../shared/infer/sliding.ts';
import { type Call, fakeModel } from '../helpers/fake-model.ts';
import { randInt, rng } from '../helpers/rng.ts';

const idx = (s: Vec3, z: number, y: number, x: number) => (z * s[1] + y) * s[2] + x;
const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

function randomInput(seed: number, shape: Vec3, lo = -2, hi = 2): Array3<Float32Array> {
  const r = rng(seed);
  const a = zeros(shape);
  for (let i = 0; i < a.data.length; i++) a.data[i] = lo + (hi - lo) * r();
  return a;
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what = ''): void {
  assert.equal(actual.length, expected.length, `${what} length`);
  for (let i = 0; i < actual.length; i++) {
    if (!(Math.abs(actual[i] - expected[i]) <= tol)) assert.fail(`${what}[${i}] = ${actual[i]}, expected ${expected[i]} (±${tol})`);
  }
}

const OPTS = (patch: Vec3, o: Partial<SlidingOptions> = {}): SlidingOptions => ({ patch, step: 0.5, mirror: false, batch: 2, inFlight: 2, ...o });

/** nnU-Net compute_steps_for_sliding_window, with numpy's round-half-to-even. */
function nnunetSteps(size: number, patch: number, step: number): number[] {
  const target = patch * step;
  const n = Math.ceil((size - patch) / target) + 1;
  const actual = n > 1 ? (size - patch) / (n - 1) : 99999999999;
  const roundHalfEven = (v: number) => {
    const f = Math.floor(v);
    const d = v - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return f % 2 === 0 ? f : f + 1;
  };
  return Array.from({ length: n }, (_, i) => roundHalfEven(actual * i));
}

// ---------------------------------------------------------------- tileSteps

test('tileSteps: hand-derived nnU-Net steps', () => {
  // size 100, patch 48, step 0.5: target step 24 → ceil(52/24)+1 = 4 tiles, actual step 52/3.
  assert.deepEqual(tileSteps(100, 48, 0.5), [0, 17, 35, 52]);
  // step 1: target 48 → ceil(52/48)+1 = 3 tiles, actual step 26.
  assert.deepEqual(tileSteps(100, 48, 1), [0, 26, 52]);
  assert.deepEqual(tileSteps(96, 48, 0.5), [0, 24, 48]);
  assert.deepEqual(tileSteps(49, 48, 0.5), [0, 1]);
  assert.deepEqual(tileSteps(48, 48, 0.5), [0]);
  assert.deepEqual(tileSteps(30, 48, 0.5), [0]); // smaller than a patch: one (padded) tile
  assert.deepEqual(tileSteps(128, 32, 0.25), nnunetSteps(128, 32, 0.25));
  assert.equal(tileSteps(128, 32, 0.25).length, 13); // ceil(96/8)+1
});

test('tileSteps: first 0, last size−patch, increasing, gaps ≤ the target step, nnU-Net count', () => {
  for (let patch = 1; patch <= 40; patch += 3) {
    for (const step of [0.25, 0.5, 0.7, 1]) {
      if (patch * step < 1) continue; // sub-voxel target steps repeat starts (as in nnU-Net)
      for (let size = patch; size <= patch * 4 + 7; size++) {
        const s = tileSteps(size, patch, step);
        assert.equal(s[0], 0);
        assert.equal(s[s.length - 1], size - patch);
        assert.equal(s.length, size === patch ? 1 : Math.ceil((size - patch) / (patch * step)) + 1);
        for (let i = 1; i < s.length; i++) {
          assert.ok(s[i] > s[i - 1], `${size}/${patch}/${step}: ${s}`);
          assert.ok(s[i] - s[i - 1] <= Math.ceil(patch * step), `${size}/${patch}/${step}: ${s}`);
        }
      }
    }
  }
});

test('tileSteps: ties round half to even, as numpy.round in nnU-Net', () => {
  assert.deepEqual(tileSteps(73, 48, 0.5), [0, 12, 25]);
  for (let size = 1; size <= 300; size++) {
    for (const patch of [16, 20, 48, 64]) if (size >= patch) assert.deepEqual(tileSteps(size, patch, 0.5), nnunetSteps(size, patch, 0.5), `${size}/${patch}`);
  }
});

// ---------------------------------------------------------------- gaussianMap

/** nnU-Net's compute_gaussian: centred at p // 2 (off-centre for even p), σ = p/8, peak 1. */
function gaussRef(patch: Vec3, z: number, y: number, x: number): number {
  const g = (i: number, p: number) => Math.exp(-((i - Math.floor(p / 2)) ** 2) / (2 * (p / 8) ** 2));
  return g(z, patch[0]) * g(y, patch[1]) * g(x, patch[2]);
}

test('gaussianMap: σ = patch/8 around the centre, max 1 at the centre (odd patch), symmetric, no zeros', () => {
  for (const patch of [[5, 7, 9], [1, 9, 3], [17, 33, 65]] as Vec3[]) {
    const g = gaussianMap(patch);
    assert.equal(g.length, patch[0] * patch[1] * patch[2]);
    const c = idx(patch, (patch[0] - 1) / 2, (patch[1] - 1) / 2, (patch[2] - 1) / 2);
    assert.equal(g[c], 1);
    let max = 0;
    for (let z = 0; z < patch[0]; z++) for (let y = 0; y < patch[1]; y++) for (let x = 0; x < patch[2]; x++) {
      const v = g[idx(patch, z, y, x)];
      max = Math.max(max, v);
      assert.ok(v > 0, 'no zeros');
      assert.ok(Math.abs(v - gaussRef(patch, z, y, x)) <= 1e-6 * Math.max(1e-3, v), `${z},${y},${x}`);
      assert.equal(v, g[idx(patch, patch[0] - 1 - z, y, x)]);
      assert.equal(v, g[idx(patch, z, patch[1] - 1 - y, x)]);
      assert.equal(v, g[idx(patch, z, y, patch[2] - 1 - x)]);
    }
    assert.equal(max, 1);
  }
});

test('gaussianMap: even patches peak at patch // 2 (nnU-Net), not between the two middle voxels', () => {
  const patch: Vec3 = [4, 8, 6];
  const g = gaussianMap(patch);
  for (let z = 0; z < 4; z++) for (let y = 0; y < 8; y++) for (let x = 0; x < 6; x++) {
    const v = g[idx(patch, z, y, x)];
    assert.ok(v > 0);
    assert.ok(Math.abs(v - gaussRef(patch, z, y, x)) <= 1e-6 * Math.max(1e-3, v));
  }
  assert.equal(g[idx(patch, 2, 4, 3)], 1);
  assert.ok(g[idx(patch, 1, 3, 2)] < 1, 'the voxel before the centre is lower');
  assert.equal(g[idx(patch, 1, 4, 3)], g[idx(patch, 3, 4, 3)], 'symmetric around p // 2');
});

test('gaussianMap: max 1 also for even patch sizes (as documented)', () => {
  for (const patch of [[8, 8, 8], [4, 8, 6], [2, 2, 2]] as Vec3[]) {
    assert.equal(Math.max(...gaussianMap(patch)), 1, `${patch}`);
  }
});

// ---------------------------------------------------------------- helpers

test('flipInto: flips each axis; flipping twice is the identity', () => {
  const s: Vec3 = [2, 3, 4];
  const src = Float32Array.from({ length: 48 }, (_, i) => i); // 2 channels
  for (const flip of MIRRORS) {
    const once = new Float32Array(48);
    flipInto(src, once, 2, s, flip);
    for (let c = 0; c < 2; c++) for (let z = 0; z < 2; z++) for (let y = 0; y < 3; y++) for (let x = 0; x < 4; x++) {
      const fz = flip[0] ? 1 - z : z, fy = flip[1] ? 2 - y : y, fx = flip[2] ? 3 - x : x;
      assert.equal(once[c * 24 + idx(s, fz, fy, fx)], src[c * 24 + idx(s, z, y, x)]);
    }
    const twice = new Float32Array(48);
    flipInto(once, twice, 2, s, flip);
    assert.deepEqual(twice, src);
  }
  assert.equal(MIRRORS.length, 8);
  assert.equal(new Set(MIRRORS.map((m) => m.join())).size, 8);
});

test('toProbabilities: softmax over channels sums to 1; sigmoid per value', () => {
  const vox = 3;
  const l = Float32Array.from([0, 1, -2, 1, 1, 3, 2, 1, 500]); // 3 channels × 3 voxels
  toProbabilities(l, 3, vox, 'softmax');
  for (let v = 0; v < vox; v++) assert.ok(Math.abs(l[v] + l[vox + v] + l[2 * vox + v] - 1) < 1e-6);
  const e = [Math.exp(0), Math.exp(1), Math.exp(2)];
  assert.ok(Math.abs(l[0] - e[0] / (e[0] + e[1] + e[2])) < 1e-6);
  assert.equal(l[vox + 1], Math.fround(1 / 3)); // all equal
  assert.ok(Number.isFinite(l[2 * vox + 2]) && l[2 * vox + 2] === 1); // no overflow at 500
  const s = Float32Array.from([0, 2, -2]);
  toProbabilities(s, 1, 3, 'softmax'); // one channel: sigmoid
  assertClose(s, [0.5, sigmoid(2), sigmoid(-2)], 1e-7);
});

// ---------------------------------------------------------------- slidingWindow

/** channel0 = −x, channel1 = x → softmax foreground = sigmoid(2x). */
const pointwise = (patch: Vec3, extra: Parameters<typeof fakeModel>[3] = {}) =>
  fakeModel(patch, 2, (c, x) => (c === 0 ? -x : x), extra);

test('slidingWindow: a pointwise model gives the pointwise function everywhere (bigger, equal, smaller than a patch)', async () => {
  const patch: Vec3 = [6, 16, 12];
  for (const [seed, shape] of [[1, [15, 37, 29]], [2, [6, 16, 12]], [3, [4, 9, 7]], [4, [3, 40, 5]]] as Array<[number, Vec3]>) {
    const input = randomInput(seed, shape);
    const out = await slidingWindow(input, pointwise(patch), OPTS(patch));
    assert.equal(out.length, 1, 'softmax with 2 classes → one foreground map');
    assert.deepEqual(out[0].shape, shape);
    assertClose(out[0].data, Array.from(input.data, (x) => sigmoid(2 * x)), 2e-6, `shape ${shape}`);
  }
});

test('slidingWindow: mirroring TTA of a pointwise model gives the same result', async () => {
  const patch: Vec3 = [6, 16, 12];
  for (const shape of [[15, 37, 29], [4, 9, 7]] as Vec3[]) {
    const input = randomInput(5, shape);
    const calls: Call[] = [];
    const out = await slidingWindow(input, pointwise(patch, { calls }), OPTS(patch, { mirror: true, batch: 3 }));
    // 8 flips × overlapping tiles accumulate in float32: a few ulps more than without mirroring.
    assertClose(out[0].data, Array.from(input.data, (x) => sigmoid(2 * x)), 1e-5, `mirror ${shape}`);
    const tiles = [0, 1, 2].map((a) => tileSteps(Math.max(shape[a], patch[a]), patch[a], 0.5).length).reduce((p, q) => p * q);
    assert.equal(calls.reduce((n, c) => n + c.dims[0], 0), tiles * 8, 'every tile in all 8 flips');
  }
});

test('slidingWindow: several softmax classes and sigmoid outputs', async () => {
  const patch: Vec3 = [4, 8, 8];
  const input = randomInput(6, [7, 13, 10]);
  // Logits [0, x, 2x]: p1 = e^x / (1 + e^x + e^2x), p2 = e^2x / (…).
  const three = fakeModel(patch, 3, (c, x) => c * x);
  const out = await slidingWindow(input, three, OPTS(patch));
  assert.equal(out.length, 2);
  const den = (x: number) => 1 + Math.exp(x) + Math.exp(2 * x);
  assertClose(out[0].data, Array.from(input.data, (x) => Math.exp(x) / den(x)), 2e-6, 'class 1');
  assertClose(out[1].data, Array.from(input.data, (x) => Math.exp(2 * x) / den(x)), 2e-6, 'class 2');
  // Sigmoid: every channel is a foreground map.
  const sig = fakeModel(patch, 2, (c, x) => (c === 0 ? x : -3 * x), { activation: 'sigmoid' });
  const so = await slidingWindow(input, sig, OPTS(patch));
  assert.equal(so.length, 2);
  assertClose(so[0].data, Array.from(input.data, (x) => sigmoid(x)), 2e-6, 'sigmoid 0');
  assertClose(so[1].data, Array.from(input.data, (x) => sigmoid(-3 * x)), 2e-6, 'sigmoid 1');
});

test('slidingWindow: tiles are blended with Gaussian weights (reference over hand-computed tiles)', async () => {
  // Input encodes position; the model answers one constant logit per tile (from the tile's
  // first voxel), so the output is sigmoid(Σ_t g(v − t)·l_t / Σ_t g(v − t)): logits are
  // blended, then activated (nnU-Net), not probabilities.
  const shape: Vec3 = [10, 20, 24];
  const patch: Vec3 = [6, 8, 8];
  const input = zeros(shape);
  for (let z = 0; z < 10; z++) for (let y = 0; y < 20; y++) for (let x = 0; x < 24; x++) input.data[idx(shape, z, y, x)] = z * 10000 + y * 100 + x;
  const tileLogit = (code: number) => Math.sin(code * 0.37) * 3;
  const model = fakeModel(patch, 2, (c, _x, _i, sample) => (c === 0 ? 0 : tileLogit(sample[0])));
  const out = await slidingWindow(input, model, OPTS(patch, { batch: 4, inFlight: 3 }));
  // Steps: z [0,2,4]; y [0,4,8,12]; x [0,4,8,12,16] (integer actual steps, no rounding).
  const steps = [[0, 2, 4], [0, 4, 8, 12], [0, 4, 8, 12, 16]];
  const num = new Float64Array(10 * 20 * 24);
  const den = new Float64Array(10 * 20 * 24);
  for (const tz of steps[0]) for (const ty of steps[1]) for (const tx of steps[2]) {
    const p = tileLogit(tz * 10000 + ty * 100 + tx);
    for (let z = 0; z < 6; z++) for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) {
      const w = gaussRef(patch, z, y, x);
      const i = idx(shape, tz + z, ty + y, tx + x);
      num[i] += w * p;
      den[i] += w;
    }
  }
  assertClose(out[0].data, Array.from(num, (n, i) => sigmoid(n / den[i])), 2e-6, 'blend');
  // And a voxel seen by one tile only takes that tile's value exactly.
  assert.ok(Math.abs(out[0].data[0] - sigmoid(tileLogit(0))) < 1e-6);
});

test('slidingWindow: the result does not depend on batch or inFlight (bit-identical)', async () => {
  const patch: Vec3 = [4, 8, 8];
  const input = randomInput(7, [9, 13, 11]); // 4 × 3 × 2 tiles
  const r = rng(99);
  // A non-pointwise model (depends on the position in the patch and the patch mean), with random
  // delays so calls complete out of order.
  const model = () => fakeModel(patch, 2, (c, x, i, sample) => (c === 0 ? 0 : x * (1 + (i % 7) / 10) + sample[0] * 0.3), { delay: () => randInt(r, 0, 3) });
  for (const mirror of [false, true]) {
    const base = await slidingWindow(input, model(), OPTS(patch, { batch: 1, inFlight: 1, mirror }));
    for (const [batch, inFlight] of [[2, 2], [3, 5], [7, 1], [64, 2], [1, 8]]) {
      const got = await slidingWindow(input, model(), OPTS(patch, { batch, inFlight, mirror }));
      assert.deepEqual(got[0].data, base[0].data, `batch ${batch}, inFlight ${inFlight}, mirror ${mirror}`);
    }
  }
});

test('slidingWindow: batches hold at most `batch` tiles and inputs smaller than a patch are zero-padded, centred (nnU-Net)', async () => {
  const patch: Vec3 = [4, 8, 8];
  const shape: Vec3 = [3, 5, 12];
  const input = randomInput(8, shape, 1, 2); // strictly positive, so zeros can only be padding
  const calls: Call[] = [];
  await slidingWindow(input, pointwise(patch, { calls }), OPTS(patch, { batch: 2 }));
  // Tiles: z [0], y [0], x [0, 4] → 2 tiles in one call.
  assert.equal(calls.length, 1);
  assert.deepEqual(calls[0].dims, [2, 1, 4, 8, 8]);
  // Padding below = (patch − size) // 2: z 1 → 0 below, y 3 → 1 below, 2 above.
  for (const [b, tx] of [[0, 0], [1, 4]]) {
    for (let z = 0; z < 4; z++) for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) {
      const v = calls[0].input[b * 256 + idx(patch, z, y, x)];
      const inside = z < 3 && y >= 1 && y < 6 && tx + x < 12;
      assert.equal(v, inside ? input.data[idx(shape, z, y - 1, tx + x)] : 0, `tile ${b} voxel ${z},${y},${x}`);
    }
  }
});

// ---------------------------------------------------------------- argmax

test('argmax: softmax background = 1 − Σ fg, ties go to the lower class', () => {
  const p1 = [0.5, 0.375, 0.25, 0.125, 0.0625, 0.25, 0.5];
  const p2 = [0.25, 0.25, 0.25, 0.75, 0.5, 0.375, 0.5];
  // bg:      0.25  0.375  0.5   0.125 0.4375 0.375  0
  const a = (v: number[]) => array3(Float32Array.from(v), [1, 1, v.length]);
  const m = argmax([a(p1), a(p2)]);
  assert.ok(m.data instanceof Uint8Array);
  assert.deepEqual(m.shape, [1, 1, 7]);
  assert.deepEqual(Array.from(m.data), [1, 0, 0, 2, 2, 0, 1]);
  // One foreground channel: foreground only above one half.
  assert.deepEqual(Array.from(argmax([a([0.5, 0.5078125, 0.25])]).data), [0, 1, 0]);
  // Sigmoid: a channel wins when above 0.5 and above the others.
  assert.deepEqual(Array.from(argmax([a([0.25, 0.625, 0.625, 0.5]), a([0.375, 0.75, 0.5, 0.5])], 'sigmoid').data), [0, 2, 1, 0]);
});

test('argmax: random probabilities agree with a brute-force reference', () => {
  const r = rng(31);
  const n = 500;
  for (const k of [1, 2, 3]) {
    const probs = Array.from({ length: k }, () => zeros([1, 1, n]));
    for (let i = 0; i < n; i++) {
      let left = 1;
      for (const p of probs) { const v = Math.fround(r() * left); p.data[i] = v; left -= v; }
    }
    const got = argmax(probs);
    for (let i = 0; i < n; i++) {
      const all = [1 - probs.reduce((s, p) => s + p.data[i], 0), ...probs.map((p) => p.data[i])];
      let best = 0;
      for (let c = 1; c < all.length; c++) if (all[c] > all[best]) best = c;
      assert.equal(got.data[i], best, `k ${k}, voxel ${i}: ${all}`);
    }
  }
});

test('slidingWindow: a graph that outputs probabilities is blended as is, never activated again', async () => {
  const patch: Vec3 = [4, 8, 8];
  const input = randomInput(9, [6, 11, 13]);
  // Channels already softmaxed: [1 − q, q] with q = 0.1 + 0.8·|sin x|.
  const q = (x: number) => 0.1 + 0.8 * Math.abs(Math.sin(x));
  const probs = fakeModel(patch, 2, (c, x) => (c === 0 ? 1 - q(x) : q(x)), { output: 'probabilities' });
  const out = await slidingWindow(input, probs, OPTS(patch, { mirror: true }));
  assert.equal(out.length, 1);
  assertClose(out[0].data, Array.from(input.data, (x) => q(x)), 2e-6, 'probabilities kept');
  // The same numbers read as logits would be squashed towards 1/2 (the bug a strict card prevents).
  const asLogits = fakeModel(patch, 2, (c, x) => (c === 0 ? 1 - q(x) : q(x)));
  const squashed = await slidingWindow(input, asLogits, OPTS(patch));
  assert.ok(Math.max(...Array.from(squashed[0].data, (v) => Math.abs(v - 0.5))) < 0.4);
  assert.ok(Math.max(...Array.from(out[0].data, (v) => Math.abs(v - 0.5))) > 0.35);
});
