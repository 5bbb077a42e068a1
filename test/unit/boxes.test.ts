import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Box, type Vec3, box, boxOfShape, contains } from '../../shared/geometry/box.ts';
import { type Array3, array3, crop } from '../../shared/array/array3.ts';
import { tileStarts } from '../../shared/pipeline/boxes.ts';
import { type FragmentOptions, extractFragments } from '../../shared/pipeline/boxes-fragments.ts';
import { mergeFragments } from '../../shared/pipeline/boxes-merge.ts';
import { Contacts, contactsAcross, touchOf } from '../../shared/pipeline/border.ts';

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
const BASE: FragmentOptions = {
  priorDownsample: [1, 4, 4],
  pooling: 'max',
  roiThreshold: 0.1,
  axisThr: 0,
  areaThr: 0,
  factor: [1, 4, 4],
  margin: [0, 0, 0],
  minShape: [1, 1, 1],
  bounds: box([0, 0, 0], [4, 64, 128]),
  lowVolume: SHAPE,
  lattice: [1, 32, 32],
};

/** Stage one's extraction as one block holding the whole heatmap: its fragments are whole regions. */
function regions(heat: Array3, o: FragmentOptions = BASE) {
  return extractFragments(heat, [0, 0, 0], boxOfShape(heat.shape), [0, 0, 0], o).fragments;
}

test('extract: regions, score = heat mass × full-res voxels per stage-one voxel, scale mapping; ids from the first cell', () => {
  const f = regions(HEAT);
  // Cell grid 4×4×8: A starts at cell (0,0,0), B at (3,1,4), C at (3,3,7).
  assert.deepEqual(f.map((x) => x.id), [1, (3 * 4 + 1) * 8 + 4 + 1, (3 * 4 + 3) * 8 + 7 + 1]);
  assert.deepEqual(f.map((x) => x.score), [64 * 16, 24 * 16, 16]);
  assert.deepEqual(f[0].box, box([0, 0, 0], [2, 32, 16]));
  // B covers cells y 1..4 (stage-one y 4..16) and x cell 4 (x 16..20) → ×[1,4,4].
  assert.deepEqual(f[1].box, box([3, 16, 64], [4, 64, 80]));
  assert.deepEqual(f[2].box, box([3, 48, 112], [4, 64, 128])); // a whole cell
});

test('extract: roi threshold, mean vs max pooling', () => {
  assert.equal(regions(HEAT, { ...BASE, roiThreshold: 0.6 }).length, 2); // B (0.5) gone
  const mean = regions(HEAT, { ...BASE, pooling: 'mean' });
  assert.equal(mean.length, 2); // C's cell mean is 1/16
  assert.deepEqual(mean.map((x) => x.score), [64 * 16, 24 * 16]); // mass does not depend on pooling
});

test('extract: axis_thr (longest extent) and area_thr (largest cross-section) filters', () => {
  assert.deepEqual(regions(HEAT, { ...BASE, axisThr: 3 }).map((x) => x.score), [24 * 16]); // only B reaches 3 cells
  assert.deepEqual(regions(HEAT, { ...BASE, areaThr: 4 }).map((x) => x.score), [64 * 16]); // only A has a 4-cell section
  assert.equal(regions(HEAT, { ...BASE, axisThr: 2, areaThr: 2 }).length, 2);
  assert.equal(regions(HEAT, { ...BASE, axisThr: 1, areaThr: 1 }).length, 3);
});

test('extract: margin and clipping; a whole region grows to the crop inside the volume when planned', () => {
  const f = regions(HEAT, { ...BASE, margin: [1, 2, 2] });
  // A: [0,0,0]-[2,32,16] → margin [-1,-2,-2]-[3,34,18] → clipped [0,0,0]-[3,34,18].
  assert.deepEqual(f[0].box, box([0, 0, 0], [3, 34, 18]));
  // C: [3,48,112]-[4,64,128] → [2,46,110]-[5,66,130] → clipped [2,46,110]-[4,64,128].
  assert.deepEqual(f[2].box, box([2, 46, 110], [4, 64, 128]));
  for (const x of f) assert.ok(contains(BASE.bounds, x.box));
  // Planned alone, C grows to 24 in y and x, shifted into the volume.
  const planned = mergeFragments([f[2]], new Float64Array(0), BASE.bounds, {
    nmsThreshold: 1, nmmThreshold: 1, metric: 'iou', mode: 'auto', recrop: [1, 32, 32], cropThreshold: [4, 64, 64], minShape: [2, 24, 24], bounds: BASE.bounds,
  });
  assert.deepEqual(planned.map((b) => b.box), [box([2, 40, 104], [4, 64, 128])]);
});

test('extract: a block owns the cells whose first voxel it holds; a region cut by blocks joins back through their borders', () => {
  // Two blocks split at stage-one y = 6 (not on the cell grid): cells y 0, 1 (first voxels 0, 4)
  // are block 0's, y 2, 3 block 1's. B (cells y 1..3) is cut in two; A (y 0, 1) is block 0's alone.
  const w0 = box([0, 0, 0], [4, 6, 32]), w1 = box([0, 6, 0], [4, 16, 32]);
  const b0 = extractFragments(crop(HEAT, [0, 0, 0], box([0, 0, 0], [4, 10, 32])), [0, 0, 0], w0, [0, 0, 0], BASE);
  const b1 = extractFragments(crop(HEAT, [0, 0, 0], box([0, 2, 0], [4, 16, 32])), [0, 2, 0], w1, [0, 1, 0], BASE);
  assert.deepEqual(b0.fragments.map((f) => f.cells.end[1]), [2, 2]); // A, and B's cell row 1
  assert.deepEqual(b1.fragments.map((f) => f.cells.begin[1]), [2, 3]); // B's rows 2..3, C
  const t = touchOf([0, 1, 0]);
  const out = new Contacts();
  contactsAcross([0, 1, 0], b0.border[t.mine], b1.border[t.theirs], out, 'test');
  // Exactly one contact: B's two fragments.
  assert.deepEqual(Array.from(out.pairs()), [b0.fragments[1].id, b1.fragments[0].id]);
  const o = { nmsThreshold: 1, nmmThreshold: 1, metric: 'iou' as const, mode: 'auto' as const, recrop: [1, 32, 32] as Vec3, cropThreshold: [4, 64, 64] as Vec3, minShape: [1, 1, 1] as Vec3, bounds: BASE.bounds };
  const whole = mergeFragments(regions(HEAT), new Float64Array(0), BASE.bounds, o);
  const split = mergeFragments([...b0.fragments, ...b1.fragments], out.pairs(), BASE.bounds, o);
  assert.deepEqual(split, whole);
  assert.equal(whole.length, 3);
});

test('extract: empty heatmap gives no fragments', () => {
  assert.deepEqual(regions(heatOf(SHAPE, [])), []);
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

