import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  synthScene, renderImage, renderLabels, sceneObjects, SYNTH_SPACING, type SynthKind, type SynthScene,
} from '../../shared/synth/index.ts';
import { mulberry32 } from '../../shared/synth/random.ts';
import { type Box, type Vec3, box, boxOfShape, boxToString } from '../../shared/geometry/box.ts';
import { crop } from '../../shared/array/array3.ts';

const KINDS: SynthKind[] = ['em', 'ct'];

function fgFraction(s: SynthScene): number {
  const l = renderLabels(s, boxOfShape(s.shape)).data;
  let n = 0;
  for (const v of l) n += v;
  return n / l.length;
}

/** Best Dice of a global threshold, either direction (exhaustive over all intensity levels). */
function bestThresholdDice(img: ArrayLike<number>, lab: Uint8Array): number {
  const hf = new Float64Array(65536), hb = new Float64Array(65536);
  let F = 0;
  for (let i = 0; i < lab.length; i++) {
    if (lab[i]) { hf[img[i]]++; F++; } else hb[img[i]]++;
  }
  let best = 0;
  for (const dir of [1, -1]) {
    let tp = 0, fp = 0;
    for (let k = 0; k < 65536; k++) {
      const v = dir > 0 ? k : 65535 - k;
      tp += hf[v];
      fp += hb[v];
      best = Math.max(best, (2 * tp) / (tp + fp + F));
    }
  }
  return best;
}

function randomBox(rng: () => number, shape: Vec3): Box {
  const b: number[] = [], e: number[] = [];
  for (let k = 0; k < 3; k++) {
    const a = Math.floor(rng() * shape[k]);
    const c = Math.floor(rng() * shape[k]);
    b.push(Math.min(a, c));
    e.push(Math.max(a, c) + 1);
  }
  return box(b as unknown as Vec3, e as unknown as Vec3);
}

for (const kind of KINDS) {
  test(`synth ${kind}: scene metadata`, () => {
    const s = synthScene({ kind, shape: [16, 128, 128], seed: 1 });
    assert.equal(s.kind, kind);
    assert.deepEqual(s.spacing, SYNTH_SPACING[kind]);
    assert.equal(s.unit, kind === 'em' ? 'nanometer' : 'millimeter');
    assert.equal(s.dtype, kind === 'em' ? 'uint8' : 'uint16');
    const img = renderImage(s, boxOfShape(s.shape));
    assert.ok(kind === 'em' ? img.data instanceof Uint8Array : img.data instanceof Uint16Array);
    assert.deepEqual(img.shape, [16, 128, 128]);
    assert.ok(renderLabels(s, boxOfShape(s.shape)).data.every((v) => v === 0 || v === 1));
  });

  test(`synth ${kind}: same seed gives the same bytes, another seed other bytes`, () => {
    const shape: Vec3 = [16, 128, 128];
    const a = synthScene({ kind, shape, seed: 7 });
    const b = synthScene({ kind, shape, seed: 7 });
    const c = synthScene({ kind, shape, seed: 8 });
    const whole = boxOfShape(shape);
    assert.deepEqual(renderImage(a, whole).data, renderImage(b, whole).data);
    assert.deepEqual(renderLabels(a, whole).data, renderLabels(b, whole).data);
    assert.notDeepEqual(renderImage(a, whole).data, renderImage(c, whole).data);
    // The scene is plain JSON: a round trip renders identically.
    const j = JSON.parse(JSON.stringify(a)) as SynthScene;
    assert.deepEqual(renderImage(j, whole).data, renderImage(a, whole).data);
  });

  test(`synth ${kind}: any region equals the crop of the whole volume`, () => {
    // Not a multiple of anything, and wide enough to cross EM tiles (256) and grid cells.
    const shape: Vec3 = [21, 300, 277];
    const s = synthScene({ kind, shape, seed: 11, fg: 0.01 });
    const whole = boxOfShape(shape);
    const img = renderImage(s, whole);
    const lab = renderLabels(s, whole);
    assert.ok(lab.data.some((v) => v === 1), 'volume has foreground');
    const rng = mulberry32(99);
    const boxes: Box[] = [
      box([0, 0, 0], [5, 40, 33]),
      box([15, 250, 230], shape),
      box([3, 0, 200], [21, 300, 277]),
      box([0, 100, 0], [21, 101, 277]),
      box([10, 10, 10], [11, 11, 11]),
      ...sceneObjects(s).slice(0, 3).map((o) => o.bbox),
    ];
    for (let i = 0; i < 8; i++) boxes.push(randomBox(rng, shape));
    for (const r of boxes) {
      assert.deepEqual(renderImage(s, r).data, crop(img, [0, 0, 0], r).data, `image ${boxToString(r)}`);
      assert.deepEqual(renderLabels(s, r).data, crop(lab, [0, 0, 0], r).data, `labels ${boxToString(r)}`);
    }
  });

  test(`synth ${kind}: foreground fraction follows fg`, () => {
    const shape: Vec3 = kind === 'em' ? [32, 256, 256] : [48, 256, 256];
    for (const seed of [1, 2]) {
      const f = fgFraction(synthScene({ kind, shape, seed }));
      assert.ok(f > 0.0035 && f < 0.0065, `seed ${seed}: default fg ${f}`);
    }
    for (const fg of [0.001, 0.02]) {
      const f = fgFraction(synthScene({ kind, shape, seed: 3, fg }));
      assert.ok(f > 0.6 * fg && f < 1.5 * fg, `fg ${fg}: got ${f}`);
    }
    assert.equal(fgFraction(synthScene({ kind, shape: [16, 128, 128], seed: 1, fg: 0 })), 0);
  });

  test(`synth ${kind}: no global threshold segments the foreground (Dice < 0.5)`, () => {
    for (const seed of [1, 2, 3]) {
      const s = synthScene({ kind, shape: [16, 128, 128], seed });
      const whole = boxOfShape(s.shape);
      const lab = renderLabels(s, whole).data;
      if (!lab.some((v) => v)) continue;
      const d = bestThresholdDice(renderImage(s, whole).data, lab);
      assert.ok(d < 0.5, `seed ${seed}: best threshold Dice ${d.toFixed(3)}`);
    }
  });

  test(`synth ${kind}: tiny and odd shapes render; bad input is refused`, () => {
    for (const shape of [[8, 32, 32], [1, 1, 1], [3, 17, 5]] as Vec3[]) {
      const s = synthScene({ kind, shape, seed: 5 });
      assert.equal(renderImage(s, boxOfShape(shape)).data.length, shape[0] * shape[1] * shape[2]);
      assert.equal(renderLabels(s, boxOfShape(shape)).data.length, shape[0] * shape[1] * shape[2]);
    }
    const s = synthScene({ kind, shape: [8, 32, 32], seed: 5 });
    assert.equal(renderImage(s, box([2, 2, 2], [2, 5, 5])).data.length, 0);
    assert.throws(() => renderImage(s, box([0, 0, 0], [9, 32, 32])), RangeError);
    assert.throws(() => synthScene({ kind, shape: [0, 32, 32], seed: 1 }), RangeError);
    assert.throws(() => synthScene({ kind, shape: [8, 32, 32], seed: 1, fg: 0.5 }), RangeError);
  });
}

test('synth em: renders fast (floor 1.5 M voxels/s; about 9 measured)', () => {
  const s = synthScene({ kind: 'em', shape: [32, 512, 512], seed: 3 });
  renderImage(s, box([0, 0, 0], [2, 512, 512])); // warm-up
  const t = performance.now();
  renderImage(s, boxOfShape(s.shape));
  const rate = (32 * 512 * 512) / ((performance.now() - t) / 1000);
  // Generous floor: shared CI machines are noisy (about 9 M voxels/s measured on one core).
  assert.ok(rate > 1.5e6, `${(rate / 1e6).toFixed(1)} M voxels/s`);
});

test('synth ct: distractors are deterministic, unlabelled, clear of lesions and scale with the body', async () => {
  const { ctAnatomy, ctDistractorBoxes } = await import('../../shared/synth/ct.ts');
  const shape: Vec3 = [32, 256, 256];
  const s = synthScene({ kind: 'ct', shape, seed: 4, fg: 0.01 });
  assert.equal(s.kind, 'ct');
  if (s.kind !== 'ct') return;
  const sp = SYNTH_SPACING.ct;
  const a = ctAnatomy(4, shape, 0.01, sp[0] / sp[1]);
  assert.deepEqual(a.lesions, s.lesions);
  const d = a.distractors ?? [];
  assert.deepEqual(ctAnatomy(4, shape, 0.01, sp[0] / sp[1]).distractors, d);
  for (const kind of ['vessel', 'cyst', 'calcification']) assert.ok(d.some((o) => o.kind === kind), `has a ${kind}`);
  for (const o of d) {
    for (const b of ctDistractorBoxes(o)) {
      for (const l of s.lesions) {
        const apart = [0, 1, 2].some((k) => b.begin[k] >= l.bbox.end[k] + 2 || b.end[k] <= l.bbox.begin[k] - 2);
        assert.ok(apart, `${o.kind} ${boxToString(b)} within 2 voxels of lesion ${boxToString(l.bbox)}`);
      }
    }
  }
  // The scene renders with the list ctAnatomy derives.
  const whole = boxOfShape(shape);
  assert.deepEqual(renderImage({ ...s, distractors: d } as SynthScene, whole).data, renderImage(s, whole).data);
  // Without them the image differs only inside their boxes; labels do not change at all.
  const img = renderImage(s, whole).data;
  const bare = renderImage({ ...s, distractors: [] } as SynthScene, whole).data;
  const inside = new Uint8Array(img.length);
  for (const o of d) {
    for (const b of ctDistractorBoxes(o)) {
      for (let z = Math.max(0, b.begin[0]); z < Math.min(shape[0], b.end[0]); z++) {
        for (let y = Math.max(0, b.begin[1]); y < Math.min(shape[1], b.end[1]); y++) {
          for (let x = Math.max(0, b.begin[2]); x < Math.min(shape[2], b.end[2]); x++) inside[(z * shape[1] + y) * shape[2] + x] = 1;
        }
      }
    }
  }
  let changed = 0;
  for (let i = 0; i < img.length; i++) {
    if (img[i] === bare[i]) continue;
    changed++;
    assert.ok(inside[i], `voxel ${i} changed outside the distractors' boxes`);
  }
  assert.ok(changed > 0);
  assert.deepEqual(renderLabels({ ...s, distractors: [] } as SynthScene, whole).data, renderLabels(s, whole).data);
  // More body, more distractors (about proportionally).
  const big = ctAnatomy(4, [64, 512, 512], 0.01, sp[0] / sp[1]).distractors ?? [];
  assert.ok(big.length > 4 * d.length, `${big.length} vs ${d.length}`);
});

test('synth ct: section drift and defective sections are pure functions of (seed, z)', async () => {
  const { ctSectionLevel, ctSectionDefect, CT_LEVELS } = await import('../../shared/synth/ct.ts');
  let defects = 0, streaky = -1;
  for (let z = 0; z < 20000; z++) {
    const d = ctSectionDefect(11, z);
    if (d) defects++;
    if (d && d.streaks.length && d.noise > 0 && streaky < 0 && z > 2) streaky = z;
    const l = ctSectionLevel(11, z);
    assert.ok(Math.abs(l.offset) <= CT_LEVELS.driftMax + 4 * CT_LEVELS.driftJitter && Math.abs(l.gain - 1) < 0.1);
  }
  assert.deepEqual(ctSectionLevel(11, 123), ctSectionLevel(11, 123));
  assert.ok(defects > 0.01 * 20000 && defects < 0.02 * 20000, `${defects} defective sections in 20000`);
  // A volume holding a noisy, streaky section: regions across it equal the crop.
  const shape: Vec3 = [streaky + 3, 96, 80];
  const s = synthScene({ kind: 'ct', shape, seed: 11, fg: 0.01 });
  const img = renderImage(s, boxOfShape(shape));
  for (const r of [box([streaky - 1, 0, 0], [streaky + 2, 96, 80]), box([streaky, 10, 7], [streaky + 1, 60, 41])]) {
    assert.deepEqual(renderImage(s, r).data, crop(img, [0, 0, 0], r).data, `image ${boxToString(r)}`);
  }
});
