// Issue 23, "no stale state": what an output holds always belongs to the run that wrote it —
// the run identity includes the input, a stage-one background survives until paste reads it,
// Ctrl-C ends a run cleanly, and what `status` and resumes report comes from the output itself.
// Each case runs the real CLI on small synthetic volumes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tessera, tesseraOk, tmpDir } from '../helpers/cli.ts';

let dir: string;
let vol: string;

const runJson = (out: string) => JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8'));

function config(name: string, doc: Record<string, unknown>): string {
  const file = path.join(dir, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({ extends: 'synthetic-em', ...doc }));
  return file;
}

before(async () => {
  dir = tmpDir();
  vol = path.join(dir, 'vol.zarr');
  await tesseraOk(['synth', '--kind', 'em', '--shape', '16,128,128', '--seed', '21', '--out', vol]);
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('stage2.background "stage1": paste reads the stage-one heatmap before it is freed; the run completes and resumes', async () => {
  const cfg = config('bg', { stage2: { background: 'stage1' } });
  const out = path.join(dir, 'bg.zarr');
  const r = await tessera(['run', '--input', vol, '--output', out, '--config', cfg, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const rep = JSON.parse(r.stdout);
  assert.equal(rep.status, 'complete');
  assert.deepEqual(rep.failures, []);
  assert.ok(!fs.existsSync(path.join(out, '.work', 'stage1', '0_0_0.f32')), 'freed once paste is done');
  // The same command again resumes: every task reused, still complete.
  const again = JSON.parse((await tesseraOk(['run', '--input', vol, '--output', out, '--config', cfg, '--json'])).stdout);
  assert.equal(again.status, 'complete');
  assert.equal(again.tasks.paste.reused, 1);
});
