// Progress in batch logs: a run whose stderr is not a terminal (here a pipe, as under
// Kubernetes or SLURM) leaves JSON `progress` lines at the interval — tasks per kind, voxels
// written, rate and ETA — beside its other logs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tessera, tesseraOk, tmpDir } from '../helpers/cli.ts';

test('a run with stderr to a pipe logs progress lines with tasks, voxels and an ETA at --progress-interval', async () => {
  const dir = tmpDir();
  try {
    const vol = path.join(dir, 'vol.zarr');
    await tesseraOk(['synth', '--kind', 'em', '--shape', '32,512,512', '--seed', '3', '--out', vol]);
    const r = await tessera(['run', '--input', vol, '--output', path.join(dir, 'out.zarr'), '--preset', 'synthetic-em', '--progress-interval', '0.1'], { TESSERA_LOG: 'info' });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)).filter((l) => l.msg === 'progress');
    assert.ok(lines.length >= 2, `progress lines: ${lines.length}\n${r.stderr}`);
    assert.ok(lines.every((l) => typeof l.tasks === 'object' && l.fraction >= 0 && l.fraction <= 1));
    assert.ok(lines.some((l) => typeof l.etaSeconds === 'number'), 'an ETA while the run is under way');
    const fractions = lines.map((l) => l.fraction);
    assert.deepEqual(fractions, [...fractions].sort((a, b) => a - b), 'fraction never goes back');
    const last = lines[lines.length - 1];
    assert.equal(last.fraction, 1, 'the last line is the run\'s end');
    assert.equal(last.voxelsDone, 32 * 512 * 512, 'every voxel written');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
