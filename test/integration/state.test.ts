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

test('the run identity includes the input: a resume with another --input is refused, naming the input and what differs', async () => {
  const other = path.join(dir, 'other.zarr');
  await tesseraOk(['synth', '--kind', 'em', '--shape', '16,128,128', '--seed', '22', '--chunks', '16,64,64', '--out', other]);
  const out = path.join(dir, 'ident.zarr');
  await tesseraOk(['run', '--input', vol, '--output', out, '--preset', 'synthetic-em', '--mode', 'one-stage']);
  const before = runJson(out);
  assert.equal(before.identity.input.location, fs.realpathSync(vol));
  const r = await tessera(['run', '--input', other, '--output', out, '--preset', 'synthetic-em', '--mode', 'one-stage']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /ident\.zarr: holds a complete run with another config, models or input — input: \S*vol\.zarr → \S*other\.zarr; input metadata of \S*other\.zarr: level 0: 16x128x128 uint8, chunks 16,128,128.* → level 0: 16x128x128 uint8, chunks 16,64,64/);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.deepEqual(runJson(out), before, 'the refused resume wrote nothing');
  // A run.json written before the identity included the input: refused, saying why.
  const old = { ...before, identity: { ...before.identity, input: undefined, hash: 'f'.repeat(64) } };
  fs.writeFileSync(path.join(out, 'run.json'), JSON.stringify(old));
  const o2 = await tessera(['run', '--input', vol, '--output', out, '--preset', 'synthetic-em', '--mode', 'one-stage']);
  assert.equal(o2.code, 2, o2.stderr);
  assert.match(o2.stderr, /input: not recorded \(run\.json written by a Tessera before the run identity included the input\).*resuming across that upgrade is refused/);
  // The same input again (another path to it is the same place): resumed.
  fs.writeFileSync(path.join(out, 'run.json'), JSON.stringify(before));
  const link = path.join(dir, 'vol-link.zarr');
  fs.symlinkSync(vol, link);
  await tesseraOk(['run', '--input', link, '--output', out, '--preset', 'synthetic-em', '--mode', 'one-stage']);
  assert.equal(runJson(out).status, 'complete');
});
