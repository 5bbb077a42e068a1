import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Vec3 } from '../../shared/geometry/box.ts';
import { type Array3, array3 } from '../../shared/array/array3.ts';
import {
  averagePrecision, bestThresholdDice, confusionMatrix, detection, edt, edtSquared, edtSquaredInRegion,
  evaluate, hd95, overlapScores, perClassOverlap, robustHausdorff, surfaceArea, surfaceDice,
  surfaceDistances, surfelAreaTable,
} from '../../shared/metrics/index.ts';

// ---- helpers ---------------------------------------------------------------------------------

function vol(shape: Vec3): Array3<Uint8Array> {
  return array3(new Uint8Array(shape[0] * shape[1] * shape[2]), shape);
}

/** Set the half-open box [b, e) of `a` to `v`. */
function fill<T extends Array3>(a: T, b: Vec3, e: Vec3, v = 1): T {
  const [, Y, X] = a.shape;
  for (let z = b[0]; z < e[0]; z++) for (let y = b[1]; y < e[1]; y++) for (let x = b[2]; x < e[2]; x++) a.data[(z * Y + y) * X + x] = v;
  return a;
}

function close(actual: number, expected: number, tol = 1e-9, what = ''): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what} expected ${expected}, got ${actual}`);
}

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

const SQ2 = Math.SQRT2, SQ3 = Math.sqrt(3), SQ10 = Math.sqrt(10), SQ19 = Math.sqrt(19);

// ---- overlap ---------------------------------------------------------------------------------

test('overlap: Dice and IoU of two 4³ cubes overlapping by half', () => {
  const gt = fill(vol([6, 6, 8]), [1, 1, 1], [5, 5, 5]);
  const pred = fill(vol([6, 6, 8]), [1, 1, 3], [5, 5, 7]); // 32 of 64 voxels shared
  const s = overlapScores(pred, gt, 1);
  assert.deepEqual({ tp: s.tp, fp: s.fp, fn: s.fn }, { tp: 32, fp: 32, fn: 32 });
  assert.equal(s.dice, 0.5); // 2·32 / (64 + 64)
  close(s.iou, 1 / 3); // 32 / 96
});

test('overlap: per-class scores from one confusion matrix; empty-mask conventions', () => {
  const gt = fill(fill(vol([4, 4, 4]), [0, 0, 0], [2, 4, 4], 1), [2, 0, 0], [4, 4, 4], 2);
  const pred = fill(vol([4, 4, 4]), [0, 0, 0], [4, 4, 4], 1);
  const m = confusionMatrix(pred.data, gt.data);
  assert.equal(m[(1 << 8) | 1], 32);
  assert.equal(m[(1 << 8) | 2], 32);
  const r = perClassOverlap(pred, gt);
  assert.deepEqual(Object.keys(r), ['1', '2']);
  close(r['1'].dice, 2 / 3); // 2·32 / (64 + 32)
  close(r['1'].iou, 0.5);
  assert.equal(r['2'].dice, 0); // in gt only
  assert.equal(r['2'].iou, 0);
  const absent = overlapScores(pred, gt, 7); // in neither: nothing to find, nothing found
  assert.equal(absent.dice, 1);
  assert.equal(absent.iou, 1);
  assert.equal(overlapScores(vol([2, 2, 2]), fill(vol([2, 2, 2]), [0, 0, 0], [1, 1, 1]), 1).dice, 0);
});

// ---- distance --------------------------------------------------------------------------------

test('edt: matches brute force on a random anisotropic volume', () => {
  const shape: Vec3 = [6, 7, 9];
  const spacing: Vec3 = [2.5, 1, 0.7];
  const rnd = lcg(7);
  const sites = new Uint8Array(6 * 7 * 9);
  for (let i = 0; i < sites.length; i++) sites[i] = rnd() < 0.06 ? 1 : 0;
  sites[100] = 1;
  const pts: Vec3[] = [];
  for (let z = 0; z < 6; z++) for (let y = 0; y < 7; y++) for (let x = 0; x < 9; x++) if (sites[(z * 7 + y) * 9 + x]) pts.push([z, y, x]);
  const d2 = edtSquared(sites, shape, spacing);
  const d = edt(sites, shape, spacing);
  for (let z = 0; z < 6; z++) for (let y = 0; y < 7; y++) for (let x = 0; x < 9; x++) {
    let best = Infinity;
    for (const p of pts) best = Math.min(best, ((z - p[0]) * 2.5) ** 2 + (y - p[1]) ** 2 + ((x - p[2]) * 0.7) ** 2);
    const i = (z * 7 + y) * 9 + x;
    close(d2[i], best, 1e-9, `d² at ${z},${y},${x}`);
    close(d[i], Math.sqrt(best), 1e-9);
  }
  // Cropped: same values wherever the region holds every site.
  const region = { begin: [-1, 0, 0] as Vec3, end: [6, 7, 10] as Vec3 };
  const crop = edtSquaredInRegion(array3(sites, shape), region, spacing);
  assert.deepEqual(crop.shape, [7, 7, 10]);
  for (let z = 0; z < 6; z++) for (let y = 0; y < 7; y++) for (let x = 0; x < 9; x++) {
    close(crop.data[((z + 1) * 7 + y) * 10 + x], d2[(z * 7 + y) * 9 + x], 1e-9);
  }
});

test('edt: no site → +Infinity everywhere', () => {
  const d = edt(new Uint8Array(24), [2, 3, 4], [1, 1, 1]);
  assert.ok(d.every((v) => v === Infinity));
});

// ---- surface ---------------------------------------------------------------------------------

test('surface: DeepMind areas of a single voxel and of a 2×2×2 cube', () => {
  // A lone voxel: 8 corner codes with one voxel each, one triangle of area vector (⅛,⅛,⅛):
  // 8 · √3/8 = √3 with unit spacing; 8 · ⅛·|(1·1, 3·1, 3·1)| = √19 with spacing [3, 1, 1].
  const one = fill(vol([3, 3, 3]), [1, 1, 1], [2, 2, 2]);
  close(surfaceArea(one, [1, 1, 1]), SQ3, 1e-12);
  close(surfaceArea(one, [3, 1, 1]), SQ19, 1e-12);
  // 2×2×2 cube, 26 surfels: 8 vertices (√3/8 each), 12 edge corners (two (¼,¼,0) triangles:
  // √2/2 each), 6 face centres (two (½,0,0) triangles: 1 each) → √3 + 6√2 + 6 ≈ 16.2173.
  const cube = fill(vol([4, 4, 4]), [1, 1, 1], [3, 3, 3]);
  close(surfaceArea(cube, [1, 1, 1]), SQ3 + 6 * SQ2 + 6, 1e-12);
  const t = surfelAreaTable([1, 1, 1]);
  assert.equal(t[0], 0);
  assert.equal(t[255], 0);
  close(t[15], 1, 1e-15); // the four voxels with dz = 1: a flat unit square
  for (let c = 0; c < 256; c++) close(t[c], t[255 - c], 1e-12, `code ${c} vs complement`);
});

test('surface: surface Dice of a 4³ cube shifted one voxel along z, spacing [3, 1, 1]', () => {
  const gt = fill(vol([10, 8, 8]), [2, 2, 2], [6, 6, 6]);
  const pred = fill(vol([10, 8, 8]), [3, 2, 2], [7, 6, 6]);
  // Each cube has 98 surfels on its 5³ corner grid. Areas with spacing [3,1,1]: vertex ⅛√19,
  // edge along x or y ½√10, edge along z 3√2/2, z-face 1, side face 3; total
  // A = √19 + 18√2 + 12√10 + 126. Every surfel is ≤ 3 from the other surface (its own copy moved
  // 3 along z), so τ = 3 gives 1. At τ = 2, only the gt bottom face (and the pred top face) is
  // farther (exactly 3); the rest is ≤ 2 (top-face interior corners are ≤ 2 voxels from the other
  // cube's side ring). That face's 25 surfels: 4 vertices, 12 edge corners, 9 face corners:
  // B = √19/2 + 6√10 + 9. Surface Dice = 1 − B/A ≈ 0.8443807.
  const A = SQ19 + 18 * SQ2 + 12 * SQ10 + 126;
  const B = SQ19 / 2 + 6 * SQ10 + 9;
  close(surfaceDice(pred, gt, [3, 1, 1], 2), 1 - B / A, 1e-12);
  close(surfaceDice(pred, gt, [3, 1, 1], 2), 0.8443807157071116, 1e-12);
  assert.equal(surfaceDice(pred, gt, [3, 1, 1], 3), 1);
  const sd = surfaceDistances(pred, gt, [3, 1, 1]);
  assert.equal(sd.distancesGtToPred.length, 98);
  close(sd.surfelAreasGt.reduce((a, b) => a + b, 0), A, 1e-10);
});

test('surface: HD95 of a one-voxel shift with spacing [40, 4, 4] is 40 along z, 4 along x', () => {
  const gt = fill(vol([8, 8, 8]), [2, 2, 2], [6, 6, 6]);
  const alongZ = fill(vol([8, 8, 8]), [3, 2, 2], [7, 6, 6]);
  const alongX = fill(vol([8, 8, 8]), [2, 2, 3], [6, 6, 7]);
  assert.equal(hd95(alongZ, gt, [40, 4, 4]), 40);
  assert.equal(hd95(alongX, gt, [40, 4, 4]), 4);
  assert.equal(hd95(gt, gt, [40, 4, 4]), 0);
});

test('surface: matches a numpy/scipy run of the DeepMind algorithm on two anisotropic ellipsoids', () => {
  // Reference numbers from a numpy/scipy transcription of DeepMind's compute_surface_distances,
  // compute_surface_dice_at_tolerance and compute_robust_hausdorff (scipy.ndimage correlate + EDT)
  // run on exactly these masks.
  const shape: Vec3 = [12, 14, 16];
  const gt = vol(shape), pred = vol(shape);
  for (let z = 0; z < 12; z++) for (let y = 0; y < 14; y++) for (let x = 0; x < 16; x++) {
    const i = (z * 14 + y) * 16 + x;
    gt.data[i] = ((z - 5) / 3.3) ** 2 + ((y - 6) / 4.2) ** 2 + ((x - 7) / 5.1) ** 2 <= 1 ? 1 : 0;
    pred.data[i] = ((z - 6) / 2.7) ** 2 + ((y - 7) / 4.6) ** 2 + ((x - 8) / 4.3) ** 2 <= 1 ? 1 : 0;
  }
  fill(pred, [10, 1, 2], [11, 2, 5]);
  const sp: Vec3 = [2.5, 1, 0.8];
  const sd = surfaceDistances(pred, gt, sp);
  assert.equal(sd.distancesGtToPred.length, 344);
  assert.equal(sd.distancesPredToGt.length, 296);
  close(sd.surfelAreasGt.reduce((a, b) => a + b, 0), 419.7148989692644, 1e-9);
  close(sd.surfelAreasPred.reduce((a, b) => a + b, 0), 336.2612451554636, 1e-9);
  const expected = [0.6282713251330023, 0.8231102174993142, 0.9306731545681001, 0.9601847283528078];
  [0.93, 1.71, 2.62, 3.17].forEach((t, k) => close(surfaceDice(pred, gt, sp, t), expected[k], 1e-9, `τ=${t}`));
  close(hd95(pred, gt, sp), 2.968164415931166, 1e-9);
  close(robustHausdorff(pred, gt, sp, 50), 0.8, 1e-9);
  close(robustHausdorff(pred, gt, sp, 100), 7.158212067269313, 1e-9);
});

test('surface: empty masks — both empty: sDice 1, HD95 0; one empty: sDice 0, HD95 Infinity (null in JSON)', () => {
  const empty = vol([5, 5, 5]);
  const cube = fill(vol([5, 5, 5]), [1, 1, 1], [3, 3, 3]);
  assert.equal(surfaceDice(empty, empty, [1, 1, 1], 1), 1);
  assert.equal(hd95(empty, empty, [1, 1, 1]), 0);
  assert.equal(surfaceDice(cube, empty, [1, 1, 1], 1), 0);
  assert.equal(surfaceDice(empty, cube, [1, 1, 1], 1), 0);
  assert.equal(hd95(cube, empty, [1, 1, 1]), Infinity);
  assert.equal(hd95(empty, cube, [1, 1, 1]), Infinity);
  assert.equal(JSON.stringify({ hd95: hd95(empty, cube, [1, 1, 1]) }), '{"hd95":null}');
  const sd = surfaceDistances(empty, cube, [1, 1, 1]);
  assert.equal(sd.distancesPredToGt.length, 0);
  assert.ok(sd.distancesGtToPred.length > 0 && sd.distancesGtToPred.every((d) => d === Infinity));
  assert.equal(surfaceArea(empty, [1, 1, 1]), 0);
});

// ---- detection -------------------------------------------------------------------------------

/**
 * Three gt cubes and three predicted components, far apart along x:
 *  gt1 x[1,5) = p1 (IoU 1); gt2 x[10,14) vs p2 x[12,16) (IoU 32/96 = 1/3); gt3 x[20,24) missed;
 *  p4 x[29,35) (96 voxels) overlaps nothing.
 */
function scene() {
  const shape: Vec3 = [6, 6, 40];
  const gt = vol(shape), pred = vol(shape);
  fill(gt, [1, 1, 1], [5, 5, 5]);
  fill(gt, [1, 1, 10], [5, 5, 14]);
  fill(gt, [1, 1, 20], [5, 5, 24]);
  fill(pred, [1, 1, 1], [5, 5, 5]);
  fill(pred, [1, 1, 12], [5, 5, 16]);
  fill(pred, [1, 1, 29], [5, 5, 35]);
  return { shape, gt, pred };
}

test('detection: hand-made scene scored by size — AP and counts at IoU 0.1 and 0.5', () => {
  const { gt, pred } = scene();
  const [r10, r50] = detection(pred, gt, [0.1, 0.5]);
  // Order by size: p4 (96) FP, p1 (64) TP, p2 (64, IoU 1/3).
  // IoU 0.1: FP, TP, TP → recall 0, ⅓, ⅔; precision 0, ½, ⅔ → interpolated ⅔ on [0, ⅔]: AP = 4/9.
  assert.deepEqual(
    { tp: r10.tp, fp: r10.fp, fn: r10.fn, gt: r10.gtObjects, pred: r10.predObjects },
    { tp: 2, fp: 1, fn: 1, gt: 3, pred: 3 },
  );
  close(r10.ap, 4 / 9, 1e-12);
  close(r10.recall, 2 / 3, 1e-12);
  // IoU 0.5: FP, TP, FP → precision ½ at recall ⅓: AP = 1/6.
  assert.deepEqual({ tp: r50.tp, fp: r50.fp, fn: r50.fn }, { tp: 1, fp: 2, fn: 2 });
  close(r50.ap, 1 / 6, 1e-12);
  close(r50.recall, 1 / 3, 1e-12);
});

test('detection: scored by mean probability', () => {
  const { shape, gt, pred } = scene();
  const prob = array3(new Float32Array(shape[0] * shape[1] * shape[2]), shape);
  fill(prob, [1, 1, 1], [5, 5, 5], 0.9);
  fill(prob, [1, 1, 12], [5, 5, 16], 0.8);
  fill(prob, [1, 1, 29], [5, 5, 35], 0.7);
  prob.data[(1 * 6 + 1) * 40 + 29] = 0.1; // lowers p4's mean a little, still last
  const [r10, r50] = detection(pred, gt, [0.1, 0.5], { probabilities: prob });
  close(r10.ap, 2 / 3, 1e-12); // TP, TP, FP
  close(r50.ap, 1 / 3, 1e-12); // TP, FP, FP
  assert.equal(r10.tp, 2);
  assert.equal(r50.fp, 2);
});

test('detection: greedy matching picks the higher-IoU gt', () => {
  const gt = fill(fill(vol([4, 6, 12]), [0, 1, 0], [4, 5, 4]), [0, 1, 5], [4, 5, 9]);
  const pred = fill(vol([4, 6, 12]), [0, 1, 2], [4, 5, 9]); // IoU 32/144 with gt1, 64/112 with gt2
  const [r] = detection(pred, gt, [0.5]);
  assert.deepEqual({ tp: r.tp, fp: r.fp, fn: r.fn }, { tp: 1, fp: 0, fn: 1 });
  close(r.ap, 0.5, 1e-12);
});

test('detection: empty cases and the AP helper', () => {
  const empty = vol([4, 4, 4]);
  const cube = fill(vol([4, 4, 4]), [1, 1, 1], [3, 3, 3]);
  const [both] = detection(empty, empty, [0.5]);
  assert.equal(both.ap, 1);
  const [fpOnly] = detection(cube, empty, [0.5]);
  assert.deepEqual({ ap: fpOnly.ap, fp: fpOnly.fp, gt: fpOnly.gtObjects }, { ap: 0, fp: 1, gt: 0 });
  const [missOnly] = detection(empty, cube, [0.5]);
  assert.deepEqual({ ap: missOnly.ap, fn: missOnly.fn, recall: missOnly.recall }, { ap: 0, fn: 1, recall: 0 });
  assert.equal(averagePrecision([0.5, 1], [1, 1]), 1);
  assert.equal(averagePrecision([0, 0.5], [0, 0.5]), 0.25);
});

// ---- threshold -------------------------------------------------------------------------------

test('threshold: hand case and separable cases in both directions', () => {
  // values 1..6, gt at 3, 5, 6: image ≥ 3 selects 4 voxels with 3 hits → 6/7, the best.
  const img = array3(new Uint8Array([1, 2, 3, 4, 5, 6]), [1, 1, 6]);
  const gt = array3(new Uint8Array([0, 0, 1, 0, 1, 1]), [1, 1, 6]);
  assert.deepEqual(bestThresholdDice(img, gt), { dice: 6 / 7, threshold: 3, direction: '>=' });

  const shape: Vec3 = [4, 8, 8];
  const rnd = lcg(3);
  const lab = fill(vol(shape), [1, 2, 2], [3, 6, 6]);
  const bright = array3(new Uint16Array(lab.data.length), shape);
  const dark = array3(new Float32Array(lab.data.length), shape);
  for (let i = 0; i < lab.data.length; i++) {
    bright.data[i] = lab.data[i] ? 3000 + Math.floor(rnd() * 60000) : Math.floor(rnd() * 2000);
    dark.data[i] = lab.data[i] ? -5 - rnd() * 100 : rnd() * 1e6;
  }
  let minFg = Infinity, maxFg = -Infinity;
  for (let i = 0; i < lab.data.length; i++) if (lab.data[i]) {
    minFg = Math.min(minFg, bright.data[i]);
    maxFg = Math.max(maxFg, dark.data[i]);
  }
  assert.deepEqual(bestThresholdDice(bright, lab), { dice: 1, threshold: minFg, direction: '>=' });
  assert.deepEqual(bestThresholdDice(dark, lab), { dice: 1, threshold: maxFg, direction: '<=' });
  // No voxel of the class: select nothing.
  assert.deepEqual(bestThresholdDice(bright, lab, 9), { dice: 1, threshold: Infinity, direction: '>=' });
});

test('threshold: matches brute force on a noisy uint16 image', () => {
  const shape: Vec3 = [3, 10, 10];
  const n = 300;
  const rnd = lcg(11);
  const img = array3(new Uint16Array(n), shape);
  const gt = vol(shape);
  for (let i = 0; i < n; i++) {
    gt.data[i] = rnd() < 0.3 ? 1 : 0;
    img.data[i] = 1000 + Math.floor(rnd() * 1500) + (gt.data[i] ? 700 : 0);
  }
  const diceAt = (t: number, up: boolean) => {
    let tp = 0, sel = 0, g = 0;
    for (let i = 0; i < n; i++) {
      const s = up ? img.data[i] >= t : img.data[i] <= t;
      if (s) sel++;
      if (gt.data[i]) g++;
      if (s && gt.data[i]) tp++;
    }
    return (2 * tp) / (sel + g);
  };
  let brute = 0;
  for (const t of new Set(img.data)) brute = Math.max(brute, diceAt(t, true), diceAt(t, false));
  const r = bestThresholdDice(img, gt);
  close(r.dice, brute, 1e-12);
  close(diceAt(r.threshold, r.direction === '>='), r.dice, 1e-12);
});

// ---- evaluate --------------------------------------------------------------------------------

test('evaluate: two classes, conventions, mean, JSON', () => {
  const shape: Vec3 = [8, 8, 20];
  const gt = vol(shape), pred = vol(shape);
  fill(gt, [2, 2, 2], [6, 6, 6], 1);
  fill(pred, [3, 2, 2], [7, 6, 6], 1); // class 1: the shifted cube
  fill(gt, [2, 2, 12], [4, 4, 14], 2); // class 2: in gt only
  const e = evaluate(pred, gt, { spacing: [3, 1, 1], tolerance: 2 });
  assert.deepEqual(Object.keys(e.perClass), ['1', '2']);
  const c1 = e.perClass['1'];
  close(c1.dice, 0.75, 1e-12); // 48 of 64 shared
  close(c1.iou, 0.6, 1e-12);
  close(c1.surfaceDice, 0.8443807157071116, 1e-12);
  assert.equal(c1.hd95, 3);
  assert.deepEqual(
    { ap10: c1.ap10, ap50: c1.ap50, gt: c1.gtObjects, pred: c1.predObjects, r: c1.recall10 },
    { ap10: 1, ap50: 1, gt: 1, pred: 1, r: 1 },
  );
  assert.deepEqual(e.perClass['2'], {
    dice: 0, iou: 0, surfaceDice: 0, hd95: Infinity, ap10: 0, ap50: 0, gtObjects: 1, predObjects: 0, recall10: 0,
  });
  close(e.mean.dice, 0.375, 1e-12);
  assert.equal(e.mean.hd95, Infinity);
  assert.equal(e.mean.gtObjects, 1);
  assert.equal(JSON.parse(JSON.stringify(e)).perClass['2'].hd95, null);
  // A requested class absent from both: nothing to find, nothing found.
  const absent = evaluate(pred, gt, { spacing: [3, 1, 1], tolerance: 2, classes: [5] });
  assert.deepEqual(absent.perClass['5'], {
    dice: 1, iou: 1, surfaceDice: 1, hd95: 0, ap10: 1, ap50: 1, gtObjects: 0, predObjects: 0, recall10: 1,
  });
  assert.deepEqual(absent.mean, absent.perClass['5']);
});

test('evaluate: shape mismatch throws a RangeError naming both shapes', () => {
  assert.throws(
    () => evaluate(vol([2, 3, 4]), vol([2, 3, 5]), { spacing: [1, 1, 1], tolerance: 1 }),
    (err: unknown) => err instanceof RangeError && err.message.includes('2x3x4') && err.message.includes('2x3x5'),
  );
  assert.throws(() => evaluate(vol([2, 2, 2]), vol([2, 2, 2]), { spacing: [0, 1, 1], tolerance: 1 }), RangeError);
});

test('boxRecall: objects with ≥ 90 % of their voxels in the boxes (26-connected, any class), boxes clipped to the volume', async () => {
  const { boxRecall } = await import('../../shared/metrics/recall.ts');
  const { box } = await import('../../shared/geometry/box.ts');
  const s: Vec3 = [4, 10, 10];
  const g = array3(new Uint8Array(s[0] * s[1] * s[2]), s);
  const put = (z: number, y: number, x: number, v: number) => { g.data[(z * s[1] + y) * s[2] + x] = v; };
  // A: a 2×2×2 cube of class 1; B: a 1×1×10 row of class 2; C: two voxels touching at a corner (one object).
  for (const [z, y, x] of [[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1], [1, 0, 0], [1, 0, 1], [1, 1, 0], [1, 1, 1]]) put(z, y, x, 1);
  for (let x = 0; x < 10; x++) put(3, 9, x, 2);
  put(2, 5, 5, 1); put(3, 6, 6, 1);
  // A whole (a box reaching past the volume), 9 of B's 10 voxels, half of C.
  const boxes = [box([-5, -5, -5], [2, 2, 2]), box([3, 9, 0], [4, 10, 9]), box([2, 5, 5], [3, 6, 6])];
  assert.deepEqual(boxRecall(g, boxes), { recall: 2 / 3, objects: 3, found: 2 });
  assert.deepEqual(boxRecall(g, boxes, 0.5), { recall: 1, objects: 3, found: 3 });
  assert.deepEqual(boxRecall(g, []), { recall: 0, objects: 3, found: 0 });
  assert.deepEqual(boxRecall(array3(new Uint8Array(8), [2, 2, 2]), boxes), { recall: 1, objects: 0, found: 0 });
});
