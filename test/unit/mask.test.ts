// Tissue masks: the factor from shapes or scales, full-resolution box → mask box, nearest
// upsampling, "any tissue in a box" read lazily from real Zarr, the reach of each task kind,
// the empty border of a skipped chunk, and the config's `mask` validation.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { box, type Vec3 } from '../../shared/geometry/box.ts';
import { range3 } from '../../shared/geometry/grid.ts';
import { anyTissue, factorFromScale, factorFromShapes, maskOut, openMask, toMaskBox, upsampleMask } from '../../shared/volume/mask.ts';
import { reachBox, tissueReach } from '../../shared/tasks/mask.ts';
import { borderSections, emptyBorderSections } from '../../shared/pipeline/border.ts';
import { loadConfig } from '../../shared/config/load.ts';
import { ConfigError, InputError } from '../../shared/errors.ts';
import { tmpDir } from '../helpers/cli.ts';
import { anyStored, createArray, createGroup, readRegion, writeRegion } from '../../shared/volume/zarr.ts';
import { multiscalesAttrs } from '../../shared/volume/ome.ts';
import { createShardedArray } from '../../shared/volume/shard.ts';
import { array3 } from '../../shared/array/array3.ts';
import { writeMask } from '../helpers/mask.ts';

const dir = tmpDir('tessera-mask-unit-');
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('factor from shapes: whole factors (a partial last mask voxel allowed), anything else refused naming both shapes', () => {
  assert.deepEqual(factorFromShapes([32, 128, 1536], [32, 128, 1536], 'm'), [1, 1, 1]);
  assert.deepEqual(factorFromShapes([16, 128, 512], [4, 32, 128], 'm'), [4, 4, 4]);
  assert.deepEqual(factorFromShapes([7062, 301923, 376277], [111, 4718, 5880], 'm'), [64, 64, 64]);
  assert.throws(() => factorFromShapes([32, 128, 1536], [32, 100, 1536], 'm.zarr'), (e: unknown) => e instanceof InputError
    && /m\.zarr: mask shape 32x100x1536 is not the input's shape 32x128x1536 divided by a whole factor along y/.test(e.message));
  // 10 voxels are 5 mask voxels at factor 2 or 4 at factor 3: 6 is neither.
  assert.deepEqual(factorFromShapes([10, 10, 10], [5, 10, 4], 'm'), [2, 1, 3]);
  assert.throws(() => factorFromShapes([10, 10, 10], [5, 10, 6], 'm'), /along x/);
});

test('factor from an NGFF scale: a whole multiple of the input voxel size (1 % slack), with a shape that covers the input', () => {
  assert.deepEqual(factorFromScale([40, 4, 4], [80, 16, 16], [32, 128, 1536], [16, 32, 384], 'm'), [2, 4, 4]);
  assert.deepEqual(factorFromScale([40, 4, 4], [40, 4.02, 4], [32, 128, 1536], [32, 128, 1536], 'm'), [1, 1, 1]);
  assert.throws(() => factorFromScale([40, 4, 4], [40, 6, 6], [32, 128, 1536], [32, 86, 1024], 'm/0'), /m\/0: mask voxel size \[40,6,6\] is not a whole multiple of the input's \[40,4,4\] along y \(1\.5×\)/);
  assert.throws(() => factorFromScale([40, 4, 4], [40, 2, 2], [32, 128, 1536], [32, 256, 3072], 'm'), /along y/, 'finer than the input');
  assert.throws(() => factorFromScale([40, 4, 4], [80, 16, 16], [32, 128, 1536], [16, 30, 384], 'm'), /should be 32 there/);
});

test('config mask.level picks an NGFF level other than "0": its scale gives the factor', async () => {
  const file = path.join(dir, 'two-level.zarr');
  await createGroup(file, multiscalesAttrs('m', 'nanometer', [[40, 4, 4], [160, 16, 16]], ['0', '1']));
  await createArray(path.join(file, '0'), { shape: [32, 64, 64], chunks: [16, 32, 32], dtype: 'uint8' });
  const coarse = await createArray(path.join(file, '1'), { shape: [8, 16, 16], chunks: [8, 16, 16], dtype: 'uint8' });
  await writeRegion(coarse, box([0, 0, 0], [8, 16, 16]), array3(new Uint8Array(8 * 16 * 16).fill(1), [8, 16, 16]), { writeFillChunks: true });
  const input = { shape: [32, 64, 64] as Vec3, spacing: [40, 4, 4] as Vec3 };
  const fine = await openMask({ path: file }, input);
  assert.deepEqual(fine.factor, [1, 1, 1]);
  assert.equal(await anyTissue(fine, box([0, 0, 0], [32, 64, 64])), false, 'level 0 holds no tissue');
  const m = await openMask({ path: file, level: '1' }, input);
  assert.deepEqual(m.factor, [4, 4, 4]);
  assert.equal(await anyTissue(m, box([0, 0, 0], [1, 1, 1])), true, 'level 1 is all tissue');
});

test('a full-resolution box maps to every mask voxel under it; upsampling is nearest, counted', () => {
  assert.deepEqual(toMaskBox(box([0, 5, 8], [3, 12, 9]), [2, 4, 4]), box([0, 1, 2], [2, 3, 3]));
  // Mask 1×2×2 at factor 1×2×3, tissue only at mask voxel (0, 1, 0).
  const up = upsampleMask(Uint8Array.of(0, 0, 1, 0), [1, 2, 2], [0, 0, 0], box([0, 1, 2], [1, 4, 5]), [1, 2, 3]);
  // Rows y 1..3 → mask rows 0, 1, 1; columns x 2..4 → mask columns 0, 1, 1.
  assert.deepEqual([...up.tissue], [0, 0, 0, 1, 0, 0, 1, 0, 0]);
  assert.equal(up.count, 2);
});

test('anyTissue reads the mask under a box from real Zarr (NGFF, 4× coarser), in slabs, and finds a single voxel', async () => {
  const file = await writeMask(path.join(dir, 'dot.zarr'), { kind: 'ngff', shape: [8, 16, 16], spacing: [160, 16, 16], chunks: [4, 8, 8], inside: (z, y, x) => z === 5 && y === 9 && x === 3 });
  const m = await openMask({ path: file }, { shape: [32, 64, 64], spacing: [40, 4, 4] });
  assert.deepEqual(m.factor, [4, 4, 4]);
  assert.equal(await anyTissue(m, box([0, 0, 0], [32, 64, 64])), true);
  assert.equal(await anyTissue(m, box([20, 36, 12], [24, 40, 16])), true, 'the voxel exactly');
  assert.equal(await anyTissue(m, box([0, 0, 0], [20, 64, 64])), false, 'just before it in z');
  assert.equal(await anyTissue(m, box([20, 40, 0], [24, 64, 64])), false, 'just past it in y');
  // maskOut: background exactly where the nearest mask voxel is 0, in the segmentation and each probability array.
  const b = box([19, 33, 9], [23, 41, 17]);
  const n = 4 * 8 * 8;
  const seg = new Uint8Array(n).fill(2), prob = new Float32Array(n).fill(0.5);
  const want = upsampleMask((await readRegion(m.array, toMaskBox(b, m.factor))).data as Uint8Array, [2, 3, 3], toMaskBox(b, m.factor).begin, b, m.factor);
  assert.equal(await maskOut(m, b, seg, [prob]), n - want.count);
  assert.ok(want.count > 0 && want.count < n, 'the box straddles the tissue voxel');
  for (let i = 0; i < n; i++) {
    assert.equal(seg[i], want.tissue[i] ? 2 : 0);
    assert.equal(prob[i], want.tissue[i] ? 0.5 : 0);
  }
  // An NGFF level other than "0" is refused when absent, naming the levels.
  await assert.rejects(openMask({ path: file, level: '2' }, { shape: [32, 64, 64], spacing: [40, 4, 4] }), /dot\.zarr: mask: no level "2" \(levels: "0"\)/);
});

test('tissue reach of each kind: paste (and relabel) its chunk, predict the next chunk too, stage2 its block ± 1 chunk, boxes and stage1 through the blocks reading them', () => {
  const g = { stage1Block: [1, 1, 2] as Vec3, stage2Block: [1, 2, 2] as Vec3, view: [1, 2, 2] as Vec3 };
  assert.deepEqual(tissueReach('paste', [0, 0, 5], g), range3([0, 0, 5], [1, 1, 6]));
  assert.deepEqual(tissueReach('blend', [0, 0, 5], g), range3([0, 0, 5], [1, 1, 6]));
  assert.deepEqual(tissueReach('predict', [0, 0, 5], g), range3([0, 0, 5], [2, 2, 7]));
  assert.deepEqual(tissueReach('stage2', [0, 0, 5], g), range3([-1, -1, 9], [2, 3, 13]));
  // Boxes block x 5 = chunks 10–11 → stage-two block 5 (chunks 10–11) → ± 1.
  assert.deepEqual(tissueReach('boxes', [0, 0, 5], g), range3([-1, -1, 9], [2, 3, 13]));
  // Stage-one block x 5: boxes blocks within 2 chunks (chunks 8–13 → blocks 4–6 → chunks 8–13)
  // → stage-two blocks 4–6 → chunks 8–13 ± 1. Along y: chunks −2–2 → stage-two blocks −1–1 → chunks −2–3 ± 1.
  assert.deepEqual(tissueReach('stage1', [0, 0, 5], g), range3([-2, -3, 7], [3, 5, 15]));
  assert.deepEqual(tissueReach('relabel', [0, 0, 5], g), range3([0, 0, 5], [1, 1, 6]));
  for (const k of ['faces', 'merge1', 'resolve1']) assert.equal(tissueReach(k, [0, 0, 0], g), undefined, `${k} always runs`);
  assert.deepEqual(reachBox(range3([-1, -1, 7], [2, 3, 15]), [32, 128, 128], box([0, 0, 0], [32, 128, 1536])), box([0, 0, 896], [32, 128, 1536]));
});

test('a skipped chunk\'s empty border is byte for byte the border of an all-background chunk', () => {
  const shape: Vec3 = [3, 4, 5];
  const n = 3 * 4 * 5;
  const full = borderSections(new Uint32Array(n), new Float64Array(1), new Uint8Array(n), shape);
  const empty = emptyBorderSections(shape);
  assert.equal(empty.length, 18);
  for (let i = 0; i < 18; i++) assert.deepEqual(Buffer.from(empty[i]), Buffer.from(full[i]), `section ${i}`);
});

test('config mask: a path becomes { path } resolved against the config file; an object keeps its level; anything else names the key', () => {
  const file = path.join(dir, 'c.json');
  fs.writeFileSync(file, JSON.stringify({ extends: 'synthetic-em', mask: 'masks/m.zarr' }));
  assert.deepEqual(loadConfig({ file }).mask, { path: path.join(dir, 'masks', 'm.zarr') });
  fs.writeFileSync(file, JSON.stringify({ extends: 'synthetic-em', mask: { path: '/abs/m.zarr', level: '2' } }));
  assert.deepEqual(loadConfig({ file }).mask, { path: '/abs/m.zarr', level: '2' });
  // --mask replaces the file's mask whole (its level does not stick to another path).
  assert.deepEqual(loadConfig({ file, overrides: { mask: 'x.zarr' } }).mask, { path: path.resolve('x.zarr') });
  assert.equal(loadConfig({ preset: 'synthetic-em' }).mask, undefined);
  const bad: Array<[unknown, RegExp]> = [
    [5, /config mask: expected a path or \{ "path": …, "level": … \}, got 5/],
    [{ level: '1' }, /config mask\.path: missing/],
    [{ path: 'm.zarr', level: 1 }, /config mask\.level: expected a non-empty string, got 1/],
    [{ path: 'm.zarr', lvl: '1' }, /config mask\.lvl: unknown key/],
  ];
  for (const [mask, says] of bad) {
    assert.throws(() => loadConfig({ preset: 'synthetic-em', overrides: { mask } }), (e: unknown) => e instanceof ConfigError && says.test(e.message), JSON.stringify(mask));
  }
});

test('anyStored: whether any storage chunk (shard) of a region has a file, for Zarr v2 and sharded v3 arrays', async () => {
  const v2 = await createArray(path.join(dir, 'v2.zarr'), { shape: [8, 16, 32], chunks: [4, 8, 8], dtype: 'uint8' });
  // One chunk written (z 4–7, y 8–15, x 16–23), the rest never.
  await writeRegion(v2, box([4, 8, 16], [8, 16, 24]), array3(new Uint8Array(4 * 8 * 8).fill(3), [4, 8, 8]));
  assert.equal(await anyStored(v2, box([0, 0, 0], [8, 16, 32])), true);
  assert.equal(await anyStored(v2, box([7, 15, 23], [8, 16, 24])), true, 'its last voxel');
  assert.equal(await anyStored(v2, box([0, 0, 0], [4, 16, 32])), false);
  assert.equal(await anyStored(v2, box([4, 8, 24], [8, 16, 32])), false, 'the next chunk along x');
  assert.equal(await anyStored(v2, box([8, 0, 0], [9, 16, 32])), false, 'outside the array');
  const v3 = await createShardedArray(path.join(dir, 'v3.zarr'), { shape: [8, 16, 32], shard: [4, 16, 16], chunks: [4, 8, 8], dtype: 'uint8' });
  await writeRegion(v3, box([0, 0, 16], [4, 16, 32]), array3(new Uint8Array(4 * 16 * 16).fill(1), [4, 16, 16]));
  assert.equal(await anyStored(v3, box([0, 0, 20], [1, 1, 21])), true);
  assert.equal(await anyStored(v3, box([0, 0, 0], [4, 16, 16])), false);
  assert.equal(await anyStored(v3, box([4, 0, 0], [8, 16, 32])), false);
});
