// A run on a virtual: input through the real CLI writes the same segmentation as the same run
// on the volume `tessera synth` writes to disk for the same kind, shape, seed and fg.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { filesUnder, tessera, tesseraOk, tmpDir } from '../helpers/cli.ts';

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
