// virtual: inputs: synthetic volumes rendered chunk by chunk on read (shared/volume/virtual.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as os from 'node:os';
import * as path from 'node:path';
import { type Box, type Vec3, box, boxOfShape } from '../../shared/geometry/box.ts';
import { array3 } from '../../shared/array/array3.ts';
import { InputError, OutputError } from '../../shared/errors.ts';
import { openImage } from '../../shared/volume/ome.ts';
import { openArray, readRegion, writeRegion } from '../../shared/volume/zarr.ts';
import { VIRTUAL_CHUNK, VIRTUAL_CT_MAX_VOXELS, isVirtual, parseVirtual, resolveInput } from '../../shared/volume/virtual.ts';
import { DEFAULT_FG, SYNTH_SPACING, renderImage, synthScene } from '../../shared/synth/index.ts';
import { writeSynth } from '../../shared/run/synth.ts';
import { checkOutputPath } from '../../shared/run/paths.ts';
import { tmpDir } from '../helpers/tmpdir.ts';

const bytes = (a: { data: ArrayBufferView }) => Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength);

test('a region across chunk borders reads as renderImage renders it (em and ct, edge chunks padded)', async () => {
  for (const [kind, shape, region] of [
    ['em', [20, 150, 170], box([3, 40, 50], [20, 150, 170])],
    ['ct', [24, 100, 90], box([5, 10, 20], [24, 100, 90])],
  ] as Array<['em' | 'ct', Vec3, Box]>) {
    const input = `virtual:${kind}?shape=${shape.join(',')}&chunk=8,64,64&seed=4`;
    const img = await openImage(input);
    const va = img.levels[0].array;
    assert.deepEqual(va.shape, shape);
    assert.deepEqual(va.chunks, [8, 64, 64]);
    assert.equal(va.path, input, 'messages name the input string');
    assert.deepEqual(img.levels[0].spacing, SYNTH_SPACING[kind]);
    const want = renderImage(synthScene({ kind, shape, seed: 4 }), region);
    const got = await readRegion(va, region);
    assert.equal(got.data.constructor, want.data.constructor);
    assert.ok(bytes(got).equals(bytes(want)), `${kind}: region equals renderImage`);
    // Padded reads past the end see the fill value outside, the volume inside.
    const past = await readRegion(va, box([shape[0] - 2, 0, 0], [shape[0] + 2, 8, 8]));
    assert.ok([...past.data.subarray(2 * 64)].every((v) => v === 0));
  }
});

test('every pyramid level equals the one tessera synth writes for the same kind, shape, seed and fg', async (t) => {
  const dir = tmpDir(t);
  const shape: Vec3 = [18, 150, 134];
  const out = path.join(dir, 'em.zarr');
  await writeSynth({ kind: 'em', shape, seed: 9, fg: 0.01, out });
  const img = await openImage(`virtual:em?shape=${shape.join(',')}&seed=9&fg=0.01&chunk=8,64,32`);
  assert.equal(img.levels.length, 3);
  for (let k = 0; k < 3; k++) {
    const disk = await openArray(path.join(out, String(k)));
    const va = img.levels[k].array;
    assert.deepEqual(va.shape, disk.shape, `level ${k} shape`);
    assert.deepEqual(img.levels[k].spacing, [40, 4 * 2 ** k, 4 * 2 ** k]);
    const all = boxOfShape(va.shape);
    assert.ok(bytes(await readRegion(va, all)).equals(bytes(await readRegion(disk, all))), `level ${k} voxels`);
  }
});

test('two opens of the same string read the same bytes; another seed reads others', async () => {
  const input = 'virtual:em?shape=16,300,300&seed=2';
  const region = box([0, 200, 100], [16, 300, 300]);
  const a = await readRegion((await openImage(input)).levels[0].array, region);
  const b = await readRegion((await openImage(input)).levels[0].array, region);
  assert.ok(bytes(a).equals(bytes(b)));
  const c = await readRegion((await openImage('virtual:em?shape=16,300,300&seed=3')).levels[0].array, region);
  assert.ok(!bytes(a).equals(bytes(c)));
});

test('a FAFB-sized volume opens in milliseconds and a far corner reads correctly', async () => {
  const shape: Vec3 = [7062, 301923, 376277];
  const input = `virtual:em?shape=${shape.join(',')}&seed=5&chunk=16,128,128`;
  const t0 = performance.now();
  const img = await openImage(input);
  const ms = performance.now() - t0;
  assert.ok(ms < 500, `opened in ${ms.toFixed(0)} ms`);
  assert.deepEqual(img.levels[0].array.shape, shape);
  assert.deepEqual(img.levels[2].array.shape, [7062, 75481, 94070]);
  const region = box([7050, 301900, 376250], [7062, 301923, 376277]);
  const got = await readRegion(img.levels[0].array, region);
  const want = renderImage(synthScene({ kind: 'em', shape, seed: 5 }), region);
  assert.ok(bytes(got).equals(bytes(want)));
  assert.ok(got.data.some((v) => v !== 0), 'rendered, not fill');
});

test('defaults: chunk by kind, seed 1, fg DEFAULT_FG', () => {
  assert.deepEqual(parseVirtual('virtual:em?shape=1,2,3'), { kind: 'em', shape: [1, 2, 3], chunk: VIRTUAL_CHUNK.em, seed: 1, fg: DEFAULT_FG });
  assert.deepEqual(parseVirtual('virtual:ct?shape=4,5,6&seed=-7&fg=0&chunk=1,2,3'), { kind: 'ct', shape: [4, 5, 6], chunk: [1, 2, 3], seed: -7, fg: 0 });
});

test('bad strings are InputErrors naming the input and the key or value', async () => {
  const cases: Array<[string, RegExp]> = [
    ['virtual:mri?shape=1,2,3', /kind "mri"/],
    ['virtual:em', /"shape" is required/],
    ['virtual:em?seed=3', /"shape" is required/],
    ['virtual:em?shape=1,2', /shape=1,2: expected/],
    ['virtual:em?shape=0,2,3', /shape=0,2,3: expected/],
    ['virtual:em?shape=1.5,2,3', /shape=1\.5,2,3/],
    ['virtual:em?shape=a,b,c', /shape=a,b,c/],
    ['virtual:em?shape=1,2,3&chunk=8,64', /chunk=8,64: expected/],
    ['virtual:em?shape=1,2,3&chunk=1024,1024,1024', /chunk=1024,1024,1024: .* more than/],
    ['virtual:em?shape=1,2,3&seed=x', /seed=x: expected an integer/],
    ['virtual:em?shape=1,2,3&seed=1.5', /seed=1\.5/],
    ['virtual:em?shape=1,2,3&fg=0.5', /fg=0\.5: expected/],
    ['virtual:em?shape=1,2,3&fg=', /fg=: expected/],
    ['virtual:em?shape=1,2,3&size=4', /unknown key "size"/],
    ['virtual:em?shape=1,2,3&shape=1,2,3', /"shape" is given twice/],
    ['virtual:em?shape=1,2,4294967296', /at most/],
    [`virtual:ct?shape=1024,1024,1024`, new RegExp(`at most ${VIRTUAL_CT_MAX_VOXELS} voxels`)],
  ];
  for (const [input, message] of cases) {
    assert.throws(() => parseVirtual(input), (err: unknown) => {
      assert.ok(err instanceof InputError, `${input}: ${String(err)}`);
      assert.equal(err.path, input);
      assert.match(err.message, message);
      return true;
    });
    await assert.rejects(openImage(input), InputError, `${input} through openImage`);
  }
});

test('a virtual input is no path: resolveInput keeps it, output checks skip it, writes are refused', async () => {
  const input = 'virtual:em?shape=16,64,64';
  assert.ok(isVirtual(input) && !isVirtual('vol.zarr'));
  assert.equal(resolveInput(input), input);
  assert.equal(resolveInput('vol.zarr'), path.resolve('vol.zarr'));
  assert.doesNotThrow(() => checkOutputPath(input, path.join(os.tmpdir(), 'tessera-virtual-out.zarr')));
  assert.throws(() => checkOutputPath('vol.zarr', input), /virtual: input, not a path/);
  const va = (await openImage(input)).levels[0].array;
  await assert.rejects(writeRegion(va, box([0, 0, 0], [1, 1, 1]), array3(new Uint8Array(1), [1, 1, 1])), OutputError);
});
