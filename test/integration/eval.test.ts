// `tessera eval` on predictions Tessera did not write: arrays written by Debian's python3-zarr
// (another Zarr implementation) — class ids as uint16, instance ids as uint32 (--foreground),
// floats (refused) — scored against the input volume's labels, with the expected Dice computed
// by numpy from the same arrays, over the whole volume and an --roi.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hasPython, tessera, tesseraOk, tmpDir } from '../helpers/cli.ts';

let dir: string;
let vol: string;
let expected: { whole: number; roi: number };

// Writes the predictions beside the volume and prints numpy's Dice of the class-id one.
const PY = `
import json, sys, numpy as np, zarr
vol, out = sys.argv[1], sys.argv[2]
gt = zarr.open(vol + '/labels/gt/0', mode='r')[:]
pred = gt.astype('u2')
pred[0:8, 0:64, 0:64] = 0
pred[8:16, 64:96, 64:96] = 1
def dice(p, g):
    p, g = p == 1, g == 1
    return 2.0 * float((p & g).sum()) / float(p.sum() + g.sum())
for name, data in [('classes', pred), ('instances', (gt.astype('u4') * 70001)), ('floats', gt.astype('f4') * 0.5)]:
    a = zarr.open(out + '/' + name + '.zarr', mode='w', shape=data.shape, chunks=(8, 64, 64), dtype=data.dtype)
    a[:] = data
print(json.dumps({'whole': dice(pred, gt), 'roi': dice(pred[0:8], gt[0:8])}))
`;


before(async () => {
  dir = tmpDir();
  vol = path.join(dir, 'vol.zarr');
  await tesseraOk(['synth', '--kind', 'em', '--shape', '16,128,128', '--seed', '4', '--fg', '0.05', '--out', vol]);
  if (hasPython('zarr, numpy')) expected = JSON.parse(execFileSync('/usr/bin/python3', ['-c', PY, vol, dir], { encoding: 'utf8' }));
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

const diceOf = (stdout: string) => JSON.parse(stdout).perClass['1'].dice as number;

test('eval scores a bare uint16 class-id array another tool wrote, taking the truth\'s voxel size; --roi scores that region of both', { skip: !hasPython('zarr, numpy') && 'python3-zarr missing (.ci/run installs it)' }, async () => {
  assert.ok(expected.whole > 0.3 && expected.whole < 0.99, `the prediction differs from the truth: Dice ${expected.whole}`);
  const whole = JSON.parse((await tesseraOk(['eval', '--pred', path.join(dir, 'classes.zarr'), '--gt', vol, '--json'])).stdout);
  assert.ok(Math.abs(whole.perClass['1'].dice - expected.whole) < 1e-9, `${whole.perClass['1'].dice} vs numpy ${expected.whole}`);
  assert.deepEqual(whole.spacing, [40, 4, 4]);
  const roi = await tesseraOk(['eval', '--pred', path.join(dir, 'classes.zarr'), '--gt', vol, '--roi', '0:8,0:128,0:128', '--json']);
  assert.ok(Math.abs(diceOf(roi.stdout) - expected.roi) < 1e-9, `${diceOf(roi.stdout)} vs numpy ${expected.roi}`);
  assert.equal(JSON.parse(roi.stdout).roi, '0:8,0:128,0:128');
});

test('eval: instance ids need --foreground (then every nonzero voxel is foreground); floats, other shapes and a bad ROI are refused naming why', { skip: !hasPython('zarr, numpy') && 'python3-zarr missing (.ci/run installs it)' }, async () => {
  const inst = path.join(dir, 'instances.zarr');
  const refused = await tessera(['eval', '--pred', inst, '--gt', vol]);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /value 70001 is not a class id.*--foreground/);
  assert.equal(diceOf((await tesseraOk(['eval', '--pred', inst, '--gt', vol, '--foreground', '--json'])).stdout), 1);
  const floats = await tessera(['eval', '--pred', path.join(dir, 'floats.zarr'), '--gt', vol]);
  assert.equal(floats.code, 2);
  assert.match(floats.stderr, /float32 values: probabilities or intensities, not labels/);
  const other = path.join(dir, 'other.zarr');
  await tesseraOk(['synth', '--kind', 'em', '--shape', '16,64,128', '--seed', '4', '--out', other]);
  const shape = await tessera(['eval', '--pred', path.join(other, 'labels', 'gt', '0'), '--gt', vol]);
  assert.equal(shape.code, 2);
  assert.match(shape.stderr, /shape 16x64x128 differs from the ground truth's 16x128x128/);
  const outside = await tessera(['eval', '--pred', path.join(dir, 'classes.zarr'), '--gt', vol, '--roi', '0:8,0:256,0:128']);
  assert.equal(outside.code, 2);
  assert.match(outside.stderr, /ROI 0:8,0:256,0:128 is not inside the volume 16x128x128/);
});
