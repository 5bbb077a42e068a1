// A run on a virtual: input through the real CLI writes the same segmentation as the same run
// on the volume `tessera synth` writes to disk for the same kind, shape, seed and fg.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { filesUnder, tessera, tesseraOk, tmpDir } from '../helpers/cli.ts';
import { openArray, readRegion } from '../../shared/volume/zarr.ts';

let dir: string;

before(() => {
  dir = tmpDir();
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

const VIRTUAL = 'virtual:em?shape=32,256,256&seed=5';

test('two-stage on virtual:em is bit-identical to the same run on the synth volume on disk', async () => {
  const vol = path.join(dir, 'em.zarr');
  await tesseraOk(['synth', '--kind', 'em', '--shape', '32,256,256', '--seed', '5', '--out', vol]);
  const outs: Record<string, any> = {};
  for (const [name, input] of [['disk', vol], ['virtual', VIRTUAL]]) {
    const out = path.join(dir, `${name}.zarr`);
    const r = await tesseraOk(['run', '--input', input, '--output', out, '--preset', 'synthetic-em', '--json']);
    outs[name] = { out, report: JSON.parse(r.stdout) };
    assert.equal(outs[name].report.status, 'complete');
  }
  assert.equal(outs.virtual.report.input, VIRTUAL, 'the report names the virtual input');
  assert.ok(outs.virtual.report.twoStage.boxes > 0, 'the run found objects');
  assert.equal(outs.virtual.report.twoStage.boxes, outs.disk.report.twoStage.boxes);
  for (const sub of ['segmentation', 'instances']) {
    const a = filesUnder(path.join(outs.disk.out, sub));
    const b = filesUnder(path.join(outs.virtual.out, sub));
    assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort(), `${sub}: same chunk files`);
    for (const [k, v] of a) assert.ok(v.equals(b.get(k)!), `${sub}/${k} differs`);
  }
});

test('a bad virtual: string fails the run with exit 2, naming the key', async () => {
  const r = await tessera(['run', '--input', 'virtual:em?shape=32,256', '--output', path.join(dir, 'bad.zarr'), '--preset', 'synthetic-em']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /shape=32,256/);
  assert.ok(!fs.existsSync(path.join(dir, 'bad.zarr')), 'nothing written');
});

test('a volume past 2^32 voxels gets uint64 instance ids: 1 + the raster index of each object\'s first voxel', async () => {
  // 64 × 16384 × 8192 = 8.6·10⁹ voxels, rendered only where the run reads; an ROI of one chunk
  // at z ≥ 32, so every id is past 2^32.
  const shape = [64, 16384, 8192];
  const cfg = path.join(dir, 'big.json');
  fs.writeFileSync(cfg, JSON.stringify({ extends: 'synthetic-em', io: { chunk: [32, 128, 128] }, boxes: { cropThreshold: [16, 64, 64], recrop: [16, 32, 32] } }));
  const out = path.join(dir, 'big.zarr');
  const r = JSON.parse((await tesseraOk(['run', '--input', `virtual:em?shape=${shape.join(',')}&seed=9&fg=0.03`, '--output', out, '--config', cfg,
    '--roi', '32:64,0:128,0:128', '--json'])).stdout);
  assert.equal(r.status, 'complete');
  assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'instances', '0', '.zarray'), 'utf8')).dtype, '<u8');
  const va = await openArray(path.join(out, 'instances', '0'));
  const roi = { begin: [32, 0, 0] as const, end: [64, 128, 128] as const };
  const ids = (await readRegion(va, roi)).data as unknown as BigUint64Array;
  assert.ok(ids instanceof BigUint64Array);
  const first = new Map<bigint, number>();
  ids.forEach((v, i) => { if (v !== 0n && !first.has(v)) first.set(v, i); });
  assert.ok(first.size > 0, 'the ROI holds objects');
  const [, Y, X] = shape;
  for (const [id, i] of first) {
    // An object reaching the ROI's border from outside the ROI's chunk keeps only its part here.
    const z = 32 + Math.floor(i / (128 * 128)), y = Math.floor(i / 128) % 128, x = i % 128;
    assert.equal(id, BigInt(z) * BigInt(Y * X) + BigInt(y * X + x) + 1n, `object ${id}`);
    assert.ok(id > 2n ** 32n);
  }
  const rows = fs.readdirSync(path.join(out, 'objects')).flatMap((f) => fs.readFileSync(path.join(out, 'objects', f), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)));
  assert.deepEqual(rows.map((o) => BigInt(o.id)).sort((a, b) => (a < b ? -1 : 1)), [...first.keys()].sort((a, b) => (a < b ? -1 : 1)));
});
