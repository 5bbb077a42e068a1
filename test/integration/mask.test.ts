// Tissue masks end to end through the real CLI (real Zarr, the shipped models): a mask over half
// a volume gives background there (no chunk written) and, in the other half, the unmasked run's
// segmentation bit for bit; the report's skipped counts are the mask's share; a 4× coarser mask
// of the same half gives the same output; one-stage likewise with a bool bare array whose edge
// cuts a chunk; a bad mask is a one-line error naming it; a resume with another mask is refused.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tessera, tesseraOk, tmpDir, filesUnder } from '../helpers/cli.ts';
import { writeMask } from '../helpers/mask.ts';
import { sameOutput } from '../helpers/services.ts';
import { startNats } from '../helpers/nats.ts';
import { boxOfShape, type Vec3 } from '../../shared/geometry/box.ts';
import { openArray, readRegion } from '../../shared/volume/zarr.ts';

let dir: string;
let vol: string;
let ref: string;
let cfg: string;

// 12 chunks of 32×128×128 in a row along x; stage-one blocks of 2 chunks and a boxes view of 2
// chunks, so that a mask over the first half leaves stage-one, boxes and stage-two tasks with no
// tissue in reach at the far end (the graph is long enough for every kind to skip some).
const SHAPE: Vec3 = [32, 128, 1536];
const HALF = 768;

async function read(out: string, array: string): Promise<{ data: Uint8Array | Uint32Array; shape: Vec3 }> {
  const va = await openArray(path.join(out, array, '0'));
  return { data: (await readRegion(va, boxOfShape(va.shape))).data as Uint8Array | Uint32Array, shape: va.shape };
}

async function run(out: string, config: string, more: string[] = [], input = vol): Promise<any> {
  return JSON.parse((await tesseraOk(['run', '--input', input, '--output', out, '--config', config, '--json', ...more])).stdout);
}

/** Segmentation (and instances) of `masked` equal `unmasked` for x < edge, are 0 beyond; returns the checked voxel counts. */
async function checkHalf(masked: string, unmasked: string, edge: number): Promise<void> {
  const a = await read(masked, 'segmentation');
  const b = await read(unmasked, 'segmentation');
  const X = a.shape[2];
  let fg = 0;
  // Asserts only on a difference: one assert per voxel would cost seconds.
  for (let i = 0; i < a.data.length; i++) {
    if (i % X < edge) {
      if (a.data[i] !== b.data[i]) assert.fail(`voxel ${i} (x ${i % X}) differs from the unmasked run`);
      if (a.data[i]) fg++;
    } else if (a.data[i] !== 0) {
      assert.fail(`voxel ${i} (x ${i % X}) outside the mask is ${a.data[i]}, not background`);
    }
  }
  assert.ok(fg > 1000, `the tissue half has foreground to compare (${fg} voxels)`);
  // Instances: objects wholly inside the tissue keep their id (the id rule); those the edge cuts get the id of their first voxel in the tissue.
  const ia = (await read(masked, 'instances')).data;
  const ib = (await read(unmasked, 'instances')).data;
  const cut = new Set<number>();
  for (let i = 0; i < ib.length; i++) if (ib[i] && i % X >= edge - 1) cut.add(ib[i]);
  let kept = 0;
  for (let i = 0; i < ib.length; i++) {
    if (i % X >= edge || !ib[i] || cut.has(ib[i])) continue;
    if (ia[i] !== ib[i]) assert.fail(`instance at voxel ${i}: ${ia[i]}, unmasked ${ib[i]}`);
    kept++;
  }
  assert.ok(kept > 0);
  for (let i = 0; i < ia.length; i++) if (ia[i] > i + 1) assert.fail(`id ${ia[i]} at voxel ${i}: an id is 1 + the raster index of its first voxel`);
}

before(async () => {
  dir = tmpDir('tessera-mask-');
  vol = path.join(dir, 'vol.zarr');
  await tesseraOk(['synth', '--kind', 'em', '--shape', SHAPE.join(','), '--seed', '5', '--out', vol]);
  cfg = path.join(dir, 'two.json');
  fs.writeFileSync(cfg, JSON.stringify({
    extends: 'synthetic-em', io: { chunk: [32, 128, 128] }, stage1: { block: [32, 128, 256] },
    boxes: { cropThreshold: [16, 32, 32], recrop: [16, 32, 32] }, inference: { threads: 2 },
  }));
  ref = path.join(dir, 'ref.zarr');
  await run(ref, cfg);
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('two-stage, a mask over half the volume: background there with no chunk written, the other half bit-identical; skipped counts are the mask\'s share', async () => {
  const mask = await writeMask(path.join(dir, 'half.zarr'), { kind: 'ngff', shape: SHAPE, chunks: [32, 128, 256], inside: (_z, _y, x) => x < HALF });
  const out = path.join(dir, 'half-out.zarr');
  const r = await run(out, cfg, ['--mask', mask]);
  assert.equal(r.status, 'complete');
  await checkHalf(out, ref, HALF);
  // Storage chunks (16×128×128) of the masked half: none written.
  const files = [...filesUnder(path.join(out, 'segmentation', '0')).keys()].filter((k) => /^\d+\/\d+\/\d+$/.test(k));
  assert.ok(files.length > 0);
  for (const k of files) assert.ok(Number(k.split('/')[2]) * 128 < HALF, `segmentation chunk ${k} written in the masked half`);
  const voxels = SHAPE[0] * SHAPE[1] * SHAPE[2];
  assert.equal(r.mask.skippedVoxels, voxels / 2);
  assert.equal(r.mask.maskedVoxels, voxels / 2);
  assert.equal(r.mask.skippedFraction, 0.5);
  assert.deepEqual(r.mask.factor, [1, 1, 1]);
  // Paste and relabel: the 6 chunks past x = 768. Stage two (blocks of 1×2×2 chunks, reach one chunk): the
  // blocks at x 1024–1279 and 1280–1535. Boxes and stage one: only what feeds nothing but those.
  assert.deepEqual(r.mask.skippedTasks, { stage1: 1, boxes: 2, stage2: 2, paste: 6, relabel: 6 });
  assert.equal(r.tasks.paste.ran, 12, 'a skipped task is done (it ran, and skipped)');
  // A resume with another mask is refused, naming both.
  const other = await writeMask(path.join(dir, 'half4.zarr'), { kind: 'ngff', shape: [16, 32, 384], spacing: [80, 16, 16], inside: (_z, _y, x) => x < HALF / 4 });
  const again = await tessera(['run', '--input', vol, '--output', out, '--config', cfg, '--mask', other]);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /tissue mask: .*half\.zarr \(32x128x1536, factor 1,1,1, .* → .*half4\.zarr \(16x32x384, factor 2,4,4/);
});

test('over NATS (coordinator, a worker and a merger) a 4× coarser NGFF mask of the same half skips the same tasks and writes the embedded level-0 masked run\'s output, bit for bit', async () => {
  const nats = await startNats();
  try {
    const out = path.join(dir, 'nats-out.zarr');
    const r = await tessera(['run', '--nats', nats.url, '--workers', '1', '--input', vol, '--output', out, '--config', cfg, '--mask', path.join(dir, 'half4.zarr'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.deepEqual(report.mask.factor, [2, 4, 4]);
    assert.deepEqual(report.mask.skippedTasks, { stage1: 1, boxes: 2, stage2: 2, paste: 6, relabel: 6 });
    assert.equal(report.mask.skippedVoxels, SHAPE[0] * SHAPE[1] * SHAPE[2] / 2);
    sameOutput(path.join(dir, 'half-out.zarr'), out);
  } finally {
    await nats.close();
  }
});

test('one-stage with a bool bare-array mask 4× coarser whose edge cuts a chunk: background beyond it, the rest bit-identical; predict and blend skip where no tissue is in reach', async () => {
  const small = path.join(dir, 'small.zarr');
  await tesseraOk(['synth', '--kind', 'em', '--shape', '16,128,512', '--seed', '9', '--out', small]);
  const one = path.join(dir, 'one.json');
  fs.writeFileSync(one, JSON.stringify({ extends: 'synthetic-em', mode: 'one-stage', io: { chunk: [16, 128, 128] } }));
  const plain = path.join(dir, 'one-ref.zarr');
  await run(plain, one, [], small);
  // Mask voxels 4×4×4: tissue at x < 70 × 4 = 280, inside the third chunk (256–383).
  const mask = await writeMask(path.join(dir, 'odd.zarr'), { kind: 'array', dtype: 'bool', shape: [4, 32, 128], inside: (_z, _y, x) => x < 70 });
  const out = path.join(dir, 'one-out.zarr');
  const r = await run(out, one, ['--mask', mask], small);
  assert.deepEqual(r.mask.factor, [4, 4, 4]);
  await checkHalf(out, plain, 280);
  // Predict on the last chunk reaches only it (and past the volume): skipped; blend skips it too.
  assert.deepEqual(r.mask.skippedTasks, { predict: 1, blend: 1, relabel: 1 });
  assert.equal(r.mask.skippedVoxels, 16 * 128 * 128);
  assert.equal(r.mask.maskedVoxels, 16 * 128 * (512 - 280), 'every voxel outside the mask is counted once');
});

test('--allow-missing: tasks with no stored input chunk in reach are skipped as the same half\'s mask skips them, background there, no network run', async () => {
  const holey = path.join(dir, 'holey.zarr');
  fs.cpSync(vol, holey, { recursive: true });
  // Level 0's storage chunks (16×128×128) of x ≥ 768: as if never written (FAFB's empty space).
  for (const z of fs.readdirSync(path.join(holey, '0'))) {
    if (!/^\d+$/.test(z)) continue;
    for (let x = HALF / 128; x < SHAPE[2] / 128; x++) fs.rmSync(path.join(holey, '0', z, '0', String(x)));
  }
  const out = path.join(dir, 'holey-out.zarr');
  const r = await run(out, cfg, ['--allow-missing'], holey);
  assert.equal(r.status, 'complete');
  assert.equal(r.mask, undefined);
  assert.deepEqual(r.inputMissingSkipped, { skippedTasks: { stage1: 1, boxes: 2, stage2: 2, paste: 6, relabel: 6 }, skippedVoxels: SHAPE[0] * SHAPE[1] * SHAPE[2] / 2 });
  // Tasks that run near the edge read missing chunks (crops' context) as the fill value, counted.
  assert.ok(r.inputMissingChunks > 0, `missing chunks read: ${r.inputMissingChunks}`);
  const seg = await read(out, 'segmentation');
  for (let i = 0; i < seg.data.length; i++) if (i % SHAPE[2] >= HALF && seg.data[i]) assert.fail(`voxel ${i} with no stored input in reach is ${seg.data[i]}`);
  const files = [...filesUnder(path.join(out, 'segmentation', '0')).keys()].filter((k) => /^\d+\/\d+\/\d+$/.test(k));
  for (const k of files) assert.ok(Number(k.split('/')[2]) * 128 < HALF, `segmentation chunk ${k} written where no input is stored`);
});

test('a bad mask is a one-line error naming it: float dtype, a voxel size that is not a whole multiple, a shape that is not, a missing path', async () => {
  const cases: Array<{ mask: string; says: RegExp }> = [
    { mask: await writeMask(path.join(dir, 'float.zarr'), { kind: 'array', dtype: 'float32', shape: SHAPE, inside: () => true }), says: /float\.zarr: mask: dtype float32 is not a mask's \(uint8 or bool/ },
    { mask: await writeMask(path.join(dir, 'frac.zarr'), { kind: 'ngff', shape: [32, 86, 1024], spacing: [40, 6, 6], inside: () => true }), says: /frac\.zarr\/0: mask voxel size \[40,6,6\] is not a whole multiple of the input's \[40,4,4\] along y/ },
    { mask: await writeMask(path.join(dir, 'shape.zarr'), { kind: 'array', shape: [32, 100, 1536], inside: () => true }), says: /shape\.zarr: mask shape 32x100x1536 is not the input's shape 32x128x1536 divided by a whole factor along y/ },
    { mask: path.join(dir, 'nowhere.zarr'), says: /nowhere\.zarr: mask: no such file or directory/ },
  ];
  for (const c of cases) {
    const r = await tessera(['run', '--input', vol, '--output', path.join(dir, 'bad.zarr'), '--config', cfg, '--mask', c.mask]);
    assert.notEqual(r.code, 0, c.mask);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line: ${r.stderr}`);
    assert.match(lines[0], c.says);
  }
});
