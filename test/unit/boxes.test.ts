import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Box, type Vec3, box, boxOfShape, contains, shapeOf } from '../../shared/geometry/box.ts';
import { array3 } from '../../shared/array/array3.ts';
import {
  type Candidate, type ExtractOptions, extractBoxes, nmm, nms, proposeBoxes, recrop, tileStarts,
} from '../../shared/pipeline/boxes.ts';

function heatOf(shape: Vec3, regions: Array<[Box, number]>) {
  const h = array3(new Float32Array(shape[0] * shape[1] * shape[2]), shape);
  for (const [b, v] of regions) {
    for (let z = b.begin[0]; z < b.end[0]; z++) {
      for (let y = b.begin[1]; y < b.end[1]; y++) {
        for (let x = b.begin[2]; x < b.end[2]; x++) h.data[(z * shape[1] + y) * shape[2] + x] = v;
      }
    }
  }
  return h;
}

// Heat 4×16×32, cells of 1×4×4 stage-one voxels (cell grid 4×4×8).
// A: z0..2, y0..8, x0..4 = 1   → cells z{0,1} y{0,1} x{0}: extent 2, largest section 4, mass 64
// B: z3, y4..16, x16..20 = 0.5 → cells z3 y{1,2,3} x4:     extent 3, largest section 3, mass 24
// C: one voxel [3,15,31] = 1   → cell (3,3,7): extent 1, section 1, mass 1 (mean 1/16)
const SHAPE: Vec3 = [4, 16, 32];
const HEAT = heatOf(SHAPE, [
  [box([0, 0, 0], [2, 8, 4]), 1],
  [box([3, 4, 16], [4, 16, 20]), 0.5],
  [box([3, 15, 31], [4, 16, 32]), 1],
]);
const BASE: ExtractOptions = {
  priorDownsample: [1, 4, 4],
  pooling: 'max',
  roiThreshold: 0.1,
  axisThr: 0,
  areaThr: 0,
  factor: [1, 4, 4],
  margin: [0, 0, 0],
  minShape: [1, 1, 1],
  bounds: box([0, 0, 0], [4, 64, 128]),
};

test('extractBoxes: regions, score = heat mass × full-res voxels per stage-one voxel, scale mapping', () => {
  const c = extractBoxes(HEAT, [0, 0, 0], BASE);
  assert.deepEqual(c.map((x) => x.id), [0, 1, 2]);
  assert.deepEqual(c.map((x) => x.score), [64 * 16, 24 * 16, 16]);
  assert.deepEqual(c[0].box, box([0, 0, 0], [2, 32, 16]));
  // B covers cells y 1..4 (stage-one y 4..16) and x cell 4 (x 16..20) → ×[1,4,4].
  assert.deepEqual(c[1].box, box([3, 16, 64], [4, 64, 80]));
  assert.deepEqual(c[2].box, box([3, 48, 112], [4, 64, 128])); // a whole cell
  assert.ok(c.every((x) => x.role === 'parent'));
});

test('extractBoxes: roi threshold, mean vs max pooling', () => {
  assert.equal(extractBoxes(HEAT, [0, 0, 0], { ...BASE, roiThreshold: 0.6 }).length, 2); // B (0.5) gone
  const mean = extractBoxes(HEAT, [0, 0, 0], { ...BASE, pooling: 'mean' });
  assert.equal(mean.length, 2); // C's cell mean is 1/16
  assert.deepEqual(mean.map((x) => x.score), [64 * 16, 24 * 16]); // mass does not depend on pooling
});

test('extractBoxes: axis_thr (longest extent) and area_thr (largest cross-section) filters', () => {
  const ax = extractBoxes(HEAT, [0, 0, 0], { ...BASE, axisThr: 3 });
  assert.deepEqual(ax.map((x) => x.score), [24 * 16]); // only B reaches 3 cells
  const ar = extractBoxes(HEAT, [0, 0, 0], { ...BASE, areaThr: 4 });
  assert.deepEqual(ar.map((x) => x.score), [64 * 16]); // only A has a 4-cell section
  assert.equal(extractBoxes(HEAT, [0, 0, 0], { ...BASE, axisThr: 2, areaThr: 2 }).length, 2);
  assert.equal(extractBoxes(HEAT, [0, 0, 0], { ...BASE, axisThr: 1, areaThr: 1 }).length, 3);
});

test('extractBoxes: margin, clipping and growTo at volume borders', () => {
  const c = extractBoxes(HEAT, [0, 0, 0], { ...BASE, margin: [1, 2, 2], minShape: [2, 24, 24] });
  // A: [0,0,0]-[2,32,16] → margin [-1,-2,-2]-[3,34,18] → clipped [0,0,0]-[3,34,18] → x grown to 24 inside bounds.
  assert.deepEqual(c[0].box, box([0, 0, 0], [3, 34, 24]));
  // C: [3,48,112]-[4,64,128] → [2,46,110]-[5,66,130] → clipped [2,46,110]-[4,64,128] → grown to 24 in y, x, shifted in.
  assert.deepEqual(c[2].box, box([2, 40, 104], [4, 64, 128]));
  for (const x of c) assert.ok(contains(BASE.bounds, x.box));
});

test('extractBoxes: cells align to the global stage-one grid, boxes clip to the heatmap', () => {
  // Heat origin y = 2: heat rows 0,1 are global rows 2,3 → the partial cell [0,4) ∩ [2,18).
  const h = heatOf([1, 16, 8], [[box([0, 0, 0], [1, 2, 4]), 1]]);
  const c = extractBoxes(h, [5, 2, 0], { ...BASE, bounds: box([0, 0, 0], [100, 100, 100]) });
  assert.equal(c.length, 1);
  assert.deepEqual(c[0].box, box([5, 8, 0], [6, 16, 16]));
  assert.equal(c[0].score, 8 * 16);
  // Shifting the heatmap by one stage-one voxel moves the partial cell boundary.
  const d = extractBoxes(h, [5, 1, 0], { ...BASE, bounds: box([0, 0, 0], [100, 100, 100]) });
  assert.deepEqual(d[0].box, box([5, 4, 0], [6, 16, 16])); // global rows 1,2: cell [0,4) ∩ heat [1,17)
});

test('extractBoxes: empty heatmap gives no candidates', () => {
  assert.deepEqual(extractBoxes(heatOf([2, 4, 4], []), [0, 0, 0], BASE), []);
});

function cand(id: number, b: Box, score: number): Candidate {
  return { id, box: b, score, role: 'parent' };
}
const flat = (x0: number, x1: number, y0 = 0, y1 = 10): Box => box([0, y0, x0], [1, y1, x1]);

function permutations<T>(xs: T[]): T[][] {
  if (xs.length <= 1) return [xs];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p]));
}

test('nms: iou vs ios, greedy by score, order-independent', () => {
  const a = cand(0, box([0, 0, 0], [10, 10, 10]), 3);
  const b = cand(1, box([0, 0, 1], [10, 10, 11]), 2); // iou 9/11 with a
  const d = cand(2, box([0, 0, 0], [5, 5, 5]), 2.5); // inside a: iou 0.125, ios 1
  const e = cand(3, box([0, 0, 20], [10, 10, 30]), 1);
  const all = [a, b, d, e];
  assert.deepEqual(nms(all, 0.75, 'iou').map((x) => x.id), [0, 2, 3]);
  assert.deepEqual(nms(all, 0.5, 'ios').map((x) => x.id), [0, 3]);
  assert.deepEqual(nms(all, 0.9, 'iou').map((x) => x.id), [0, 2, 1, 3]);
  for (const p of permutations(all)) assert.deepEqual(nms(p, 0.75, 'iou'), nms(all, 0.75, 'iou'));
});

test('nmm: chains merge transitively through the growing union (ios), iou stops earlier', () => {
  const chain = [cand(0, flat(0, 10), 4), cand(1, flat(5, 15), 3), cand(2, flat(10, 20), 2), cand(3, flat(15, 25), 1)];
  const ios = nmm(chain, 0.3, 'ios');
  assert.equal(ios.length, 1);
  assert.deepEqual(ios[0].box, flat(0, 25));
  assert.deepEqual(ios[0].members, [0, 1, 2, 3]);
  assert.equal(ios[0].score, 10);
  const iou = nmm(chain, 0.3, 'iou');
  assert.deepEqual(iou.map((p) => [p.id, p.members, p.score]), [[0, [0, 1], 7], [1, [2, 3], 3]]);
  assert.deepEqual(iou[1].box, flat(10, 25));
  for (const p of permutations(chain)) {
    assert.deepEqual(nmm(p, 0.3, 'ios'), ios);
    assert.deepEqual(nmm(p, 0.3, 'iou'), iou);
  }
});

test('nmm: merged boxes are merged again until stable', () => {
  // A misses B and C alone (iou 0.176) but B∪C (merged first) matches A (iou 0.25).
  const A = cand(0, box([0, 0, 0], [1, 10, 10]), 10);
  const B = cand(1, box([0, 0, 6], [1, 6, 16]), 5);
  const C = cand(2, box([0, 4, 6], [1, 10, 16]), 4);
  for (const p of permutations([A, B, C])) {
    const r = nmm(p, 0.19, 'iou');
    assert.equal(r.length, 1);
    assert.deepEqual(r[0].members, [0, 1, 2]);
    assert.equal(r[0].score, 19);
    assert.deepEqual(r[0].box, box([0, 0, 0], [1, 10, 16]));
  }
  assert.equal(nmm([A, B, C], 0.3, 'iou').length, 3);
});

test('tileStarts: fewest tiles, even spread, no gaps', () => {
  assert.deepEqual(tileStarts(0, 300, 128), [0, 86, 172]);
  assert.deepEqual(tileStarts(10, 266, 128), [10, 138]);
  assert.deepEqual(tileStarts(0, 100, 128), [0]);
  for (let len = 1; len < 200; len += 7) {
    for (const t of [1, 3, 12, 64]) {
      const s = tileStarts(5, 5 + len, t);
      assert.equal(s.length, Math.max(1, Math.ceil(len / t)));
      if (len >= t) assert.equal(s[s.length - 1] + t, 5 + len);
      for (let i = 1; i < s.length; i++) assert.ok(s[i] > s[i - 1] && s[i] <= s[i - 1] + t);
    }
  }
});

test('recrop: exact crop shape, minimal count, covers the parent, clipped only to small bounds', () => {
  const bounds = box([0, 0, 0], [100, 1000, 1000]);
  const p = { ...cand(7, box([0, 0, 0], [20, 300, 100]), 5), members: [1, 2] };
  const kids = recrop(p, [12, 128, 128], bounds, 40);
  assert.equal(kids.length, 2 * 3 * 1);
  assert.deepEqual(kids.map((k) => k.id), [40, 41, 42, 43, 44, 45]);
  assert.ok(kids.every((k) => k.role === 'child' && k.parent === 7 && k.score === 5));
  assert.ok(kids.every((k) => shapeOf(k.box).join() === '12,128,128'));
  assert.deepEqual(kids.map((k) => k.box.begin.join()), ['0,0,0', '0,86,0', '0,172,0', '8,0,0', '8,86,0', '8,172,0']);
  // Bounds narrower than the crop along x: clipped to them.
  const small = recrop(p, [12, 128, 128], box([0, 0, 0], [100, 1000, 100]), 0);
  assert.ok(small.every((k) => k.box.begin[2] === 0 && k.box.end[2] === 100));
  // Random parents: per-axis coverage (children form a product lattice).
  let seed = 1;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  for (let t = 0; t < 50; t++) {
    const lo: Vec3 = [rnd(50), rnd(50), rnd(50)];
    const par = cand(0, box(lo, [lo[0] + 1 + rnd(60), lo[1] + 1 + rnd(60), lo[2] + 1 + rnd(60)]), 1);
    const crop: Vec3 = [1 + rnd(20), 1 + rnd(20), 1 + rnd(20)];
    const ks = recrop(par, crop, boxOfShape([200, 200, 200]), 0);
    const s = shapeOf(par.box);
    assert.equal(ks.length, [0, 1, 2].reduce((n, a) => n * Math.max(1, Math.ceil(s[a] / crop[a])), 1));
    for (let a = 0; a < 3; a++) {
      const iv = [...new Set(ks.map((k) => `${k.box.begin[a]},${k.box.end[a]}`))].map((x) => x.split(',').map(Number)).sort((u, v) => u[0] - v[0]);
      assert.ok(iv[0][0] <= par.box.begin[a] && iv[iv.length - 1][1] >= par.box.end[a]);
      for (let i = 1; i < iv.length; i++) assert.ok(iv[i][0] <= iv[i - 1][1]);
      assert.ok(iv.every(([u, v]) => v - u === crop[a]));
    }
  }
});

test('proposeBoxes: parents / children / auto modes', () => {
  // One long region: 2 cells in z, 4 in y, 1 in x → full-res [0,0,0]-[2,64,16].
  const h = heatOf([4, 16, 32], [[box([0, 0, 0], [2, 16, 4]), 1], [box([3, 8, 24], [4, 12, 28]), 1]]);
  const o = {
    ...BASE, nmsThreshold: 0.75, nmmThreshold: 0.35, metric: 'iou' as const,
    recropShape: [1, 32, 32] as Vec3, cropThreshold: [2, 32, 32] as Vec3, minShape: [1, 32, 32] as Vec3,
  };
  const par = proposeBoxes(h, [0, 0, 0], { ...o, mode: 'parents' });
  assert.equal(par.candidates.length, 2);
  assert.equal(par.parents.length, 2);
  assert.deepEqual(par.boxes, par.parents);
  assert.deepEqual(par.children, []);
  assert.deepEqual(par.parents[0].box, box([0, 0, 0], [2, 64, 32]));
  const ch = proposeBoxes(h, [0, 0, 0], { ...o, mode: 'children' });
  assert.equal(ch.children.length, 2 * 2 + 1);
  assert.deepEqual(ch.boxes, ch.children);
  assert.deepEqual(ch.children.map((c) => c.id), [2, 3, 4, 5, 6]);
  const auto = proposeBoxes(h, [0, 0, 0], { ...o, mode: 'auto' });
  // The first parent (2×64×32) exceeds cropThreshold in y → 4 children; the second stays whole.
  assert.deepEqual(auto.boxes.map((c) => c.role), ['child', 'child', 'child', 'child', 'parent']);
  assert.deepEqual(new Set(auto.boxes.map((c) => c.id)).size, 5);
});
