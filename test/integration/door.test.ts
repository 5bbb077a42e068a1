// The small things a new user meets first: a mistyped output for status, a model that is not
// there, what a finished output holds, how units print.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tessera, tesseraOk, tmpDir } from '../helpers/cli.ts';

let dir: string;
let vol: string;
let out: string;

before(async () => {
  dir = tmpDir();
  vol = path.join(dir, 'vol.zarr');
  out = path.join(dir, 'out.zarr');
  await tesseraOk(['synth', '--kind', 'em', '--shape', '16,128,128', '--seed', '2', '--out', vol]);
  await tesseraOk(['run', '--input', vol, '--output', out, '--preset', 'synthetic-em']);
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('status of a path that is not there: "no such output"; a run id with no broker to look it up in says so', async () => {
  const typo = await tessera(['status', path.join(dir, 'typo.zarr')], { TESSERA_NATS_URL: '' });
  assert.equal(typo.code, 2);
  assert.match(typo.stderr, /typo\.zarr: no such output/);
  const id = await tessera(['status', 'em1'], { TESSERA_NATS_URL: '' });
  assert.equal(id.code, 2);
  assert.match(id.stderr, /no NATS server to look it up as a run id/);
});

test('a finished output keeps no empty .tmp/; eval prints units as symbols', async () => {
  assert.ok(!fs.existsSync(path.join(out, '.tmp')), 'no .tmp/ left in a complete output');
  const e = await tesseraOk(['eval', '--pred', out, '--gt', vol]);
  assert.match(e.stdout, /surface Dice@4 nm \d\.\d{4}  HD95 [\d.]+ nm/);
  assert.doesNotMatch(e.stdout, /nanometer/);
});

test('a model file that is not there: the error points at docs/models.md', async () => {
  const cfg = path.join(dir, 'cfg.json');
  fs.writeFileSync(cfg, JSON.stringify({ extends: 'synthetic-em', models: { fullres: path.join(dir, 'none.onnx') } }));
  const r = await tessera(['run', '--input', vol, '--output', path.join(dir, 'o2.zarr'), '--config', cfg]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /none\.onnx: file not found \(docs\/models\.md/);
});

test('--provider cuda where CUDA is missing: one warning line, falls back to CPU, and the same command resumes (reuses everything)', async () => {
  const o = path.join(dir, 'cuda.zarr');
  const args = ['run', '--input', vol, '--output', o, '--preset', 'synthetic-em', '--provider', 'cuda', '--json'];
  const first = await tessera(args);
  assert.equal(first.code, 0, first.stderr);
  assert.doesNotMatch(first.stderr, /\[E:onnxruntime/, 'no raw native log lines');
  const r1 = JSON.parse(first.stdout);
  if (r1.provider === 'cpu') assert.match(first.stderr, /execution provider \\?"cuda\\?" is not available here.*falling back to cpu/);
  const again = await tessera(args);
  assert.equal(again.code, 0, again.stderr);
  const r2 = JSON.parse(again.stdout);
  assert.equal(r2.status, 'complete');
  assert.ok(Object.values(r2.tasks as Record<string, { ran: number }>).every((t) => t.ran === 0), 'every task reused');
});
