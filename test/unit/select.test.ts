import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Box, type Vec3, box, boxAt } from '../../shared/geometry/box.ts';
import { planGrid } from '../../shared/geometry/grid.ts';
import type { Candidate } from '../../shared/pipeline/boxes.ts';
import {
  allPolicy, anchorOf, mortonCompare, ownedBy, policyByName, scorePolicy, spatialPolicy,
} from '../../shared/pipeline/select.ts';

const cand = (id: number, b: Box, score = 1): Candidate => ({ id, box: b, score, role: 'parent' });

function rng(seed: number) {
  return () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0), seed / 2 ** 32);
}

function shuffle<T>(xs: T[], r: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

test('anchor is the voxel holding the centre; ownership splits boxes between chunks exactly once', () => {
  assert.deepEqual(anchorOf(box([0, 0, 0], [10, 11, 1])), [5, 5, 0]);
  const b = cand(0, box([0, 0, 0], [10, 10, 10]));
  assert.equal(ownedBy(b, box([0, 0, 0], [5, 100, 100])), false);
  assert.equal(ownedBy(b, box([5, 0, 0], [10, 100, 100])), true);
  const chunks = planGrid(box([0, 0, 0], [64, 100, 100]), [16, 32, 32], [4, 8, 8]);
  const r = rng(3);
  for (let i = 0; i < 200; i++) {
    const lo: Vec3 = [Math.floor(r() * 60), Math.floor(r() * 90), Math.floor(r() * 90)];
    const c = cand(i, boxAt(lo, [1 + Math.floor(r() * 4), 1 + Math.floor(r() * 10), 1 + Math.floor(r() * 10)]));
    assert.equal(chunks.filter((ch) => ownedBy(c, ch.writeBox)).length, 1);
  }
});

test('all: keeps order, filters by ownership, maxBoxes keeps the first', () => {
  const boxes = [cand(3, box([0, 0, 0], [2, 2, 2]), 1), cand(1, box([10, 0, 0], [12, 2, 2]), 5), cand(2, box([0, 0, 0], [4, 4, 4]), 3)];
  assert.deepEqual(allPolicy().select(boxes, {}).map((c) => c.id), [3, 1, 2]);
  assert.deepEqual(allPolicy().select(boxes, { maxBoxes: 2 }).map((c) => c.id), [3, 1]);
  assert.deepEqual(allPolicy().select(boxes, { chunkWriteBox: box([0, 0, 0], [5, 5, 5]) }).map((c) => c.id), [3, 2]);
  assert.deepEqual(allPolicy().select(boxes, { maxBoxes: 0 }), []);
});

test('score: best first, ties broken by box then id, maxBoxes keeps the best', () => {
  const boxes = [cand(3, box([1, 0, 0], [2, 2, 2]), 2), cand(1, box([10, 0, 0], [12, 2, 2]), 5), cand(2, box([0, 0, 0], [4, 4, 4]), 2)];
  assert.deepEqual(scorePolicy().select(boxes, {}).map((c) => c.id), [1, 2, 3]);
  assert.deepEqual(scorePolicy().select(boxes, { maxBoxes: 1 }).map((c) => c.id), [1]);
  const r = rng(5);
  for (let i = 0; i < 5; i++) assert.deepEqual(scorePolicy().select(shuffle(boxes, r), {}), scorePolicy().select(boxes, {}));
});

test('mortonCompare: z-order with z most significant', () => {
  const pts: Vec3[] = [];
  for (let z = 0; z < 2; z++) for (let y = 0; y < 2; y++) for (let x = 0; x < 2; x++) pts.push([z, y, x]);
  const sorted = [...pts].sort(mortonCompare);
  assert.deepEqual(sorted, pts); // z,y,x bit interleave of a 2×2×2 cube = raster order
  assert.ok(mortonCompare([0, 1, 1], [0, 2, 0]) < 0); // finish the 2×2 quad before the next
  assert.ok(mortonCompare([0, 0, 3], [0, 2, 0]) < 0);
  assert.ok(mortonCompare([1, 0, 0], [0, 3, 3]) < 0); // interleaved keys 4 < 27
  assert.ok(mortonCompare([2, 0, 0], [0, 3, 3]) > 0); // 32 > 27
  assert.equal(mortonCompare([4, 5, 6], [4, 5, 6]), 0);
});

test('spatial: neighbours consecutive (2×2 blocks of a tile lattice), order-independent', () => {
  // A 1×4×4 lattice of 12×128×128 tiles with overlap (step 100) and varying scores.
  const tiles: Candidate[] = [];
  for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) tiles.push(cand(y * 4 + x, boxAt([0, y * 100, x * 100], [12, 128, 128]), (y * 7 + x * 3) % 5));
  const r = rng(11);
  const ref = spatialPolicy().select(tiles, {});
  assert.deepEqual(ref.map((c) => c.id), [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]);
  for (let i = 0; i < 5; i++) assert.deepEqual(spatialPolicy().select(shuffle(tiles, r), {}), ref);
  // maxBoxes: the best-scoring ones, then ordered spatially.
  const top = spatialPolicy().select(tiles, { maxBoxes: 4 });
  const best = scorePolicy().select(tiles, { maxBoxes: 4 });
  assert.deepEqual(new Set(top.map((c) => c.id)), new Set(best.map((c) => c.id)));
  assert.deepEqual(top, spatialPolicy().select(best, {}));
  // Ownership filter applies.
  assert.equal(spatialPolicy().select(tiles, { chunkWriteBox: box([0, 0, 0], [12, 200, 200]) }).length, 4);
});

test('spatial: children of one parent stay consecutive, groups in Morton order', () => {
  const kids = (parent: number, firstId: number, at: Vec3): Candidate[] => {
    const out: Candidate[] = [];
    for (let y = 0; y < 2; y++) {
      for (let x = 0; x < 3; x++) {
        out.push({ id: firstId + out.length, box: boxAt([at[0], at[1] + y * 90, at[2] + x * 90], [12, 128, 128]), score: 1, role: 'child', parent });
      }
    }
    return out;
  };
  // Parent 1 lies just right of parent 0 and overlaps its x range; a lone box sits far away.
  const a = kids(0, 10, [0, 0, 0]);
  const b = kids(1, 20, [0, 50, 200]);
  const lone = cand(30, boxAt([100, 0, 0], [12, 128, 128]));
  const r = rng(2);
  const ref = spatialPolicy().select([lone, ...b, ...a], {});
  const ids = ref.map((c) => c.id);
  assert.deepEqual(ids.slice(0, 6), [10, 11, 13, 14, 12, 15]); // lattice order: 2×2 block first
  const at = ids.indexOf(20);
  assert.deepEqual(ids.slice(at, at + 6), [20, 21, 23, 24, 22, 25]);
  assert.equal(ids.length, 13);
  for (let i = 0; i < 5; i++) assert.deepEqual(spatialPolicy().select(shuffle([lone, ...a, ...b], r), {}), ref);
  // A unit coarser than everything puts all groups in one cell: exact anchors decide.
  assert.equal(spatialPolicy({ unit: [1000, 1000, 1000] }).select([lone, ...b, ...a], {}).length, 13);
});

test('policyByName', () => {
  assert.equal(policyByName('all').name, 'all');
  assert.equal(policyByName('score').name, 'score');
  assert.equal(policyByName('spatial').name, 'spatial');
  assert.throws(() => policyByName('learned' as never), RangeError);
});
