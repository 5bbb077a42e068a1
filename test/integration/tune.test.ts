// tessera tune through the real CLI on a small virtual EM volume with the shipped ONNX models:
// it writes a config `tessera run` accepts, the Pareto table and plot, a choice on the front no
// worse than the preset by tune's own rule; a tune killed mid-way resumes from its cached runs
// and chooses the same; bad input is one line.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { ROOT, tessera, tesseraOk, tmpDir } from '../helpers/cli.ts';

let dir: string;
before(() => { dir = tmpDir('tessera-tune-'); });
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const INPUT = 'virtual:em?shape=32,256,256&seed=5&fg=0.02';
const ROI = '0:32,0:128,0:256';
const args = (out: string) => ['tune', '--input', INPUT, '--preset', 'synthetic-em', '--roi', ROI, '--max-loss', '0.1', '--budget', '4', '--out', out];

interface Trial { index: number; cost: number; agreement: number; rois: number; onFront: boolean; overrides: unknown }

let first: { chosen: Trial & { feasible: boolean }; trials: Trial[]; front: number[] };

test('tune writes TUNED.json that tessera run accepts, the Pareto table and plot; the choice is on the front and no worse than the preset', async () => {
  const out = path.join(dir, 'a', 'TUNED.json');
  const r = await tesseraOk([...args(out), '--json']);
  first = JSON.parse(r.stdout);
  assert.match(r.stderr, /one-stage reference 1\/1/);
  const tuned = JSON.parse(fs.readFileSync(out, 'utf8'));
  assert.equal(tuned.extends, 'synthetic-em');
  assert.equal(tuned.mode, 'two-stage');
  assert.match(fs.readFileSync(path.join(dir, 'a', 'TUNED.pareto.md'), 'utf8'), /## Pareto front/);
  assert.deepEqual([...fs.readFileSync(path.join(dir, 'a', 'TUNED.pareto.png')).subarray(1, 4)], [...Buffer.from('PNG')]);
  assert.ok(fs.existsSync(path.join(dir, 'a', 'TUNED.report.json')));
  const { trials, front, chosen } = first;
  assert.equal(trials.length, 4);
  const finalists = trials.filter((t) => t.cost !== null && t.rois === 1);
  // The front is non-dominated, and every finalist off it is dominated by one on it.
  const dom = (a: Trial, b: Trial) => a.cost <= b.cost && a.agreement >= b.agreement && (a.cost < b.cost || a.agreement > b.agreement);
  for (const t of finalists) assert.equal(front.includes(t.index), !finalists.some((u) => dom(u, t)), `trial ${t.index}`);
  assert.ok(front.includes(chosen.index), 'the choice is on the front');
  const start = trials[0];
  if (1 - start.agreement <= 0.1) {
    assert.ok(chosen.feasible && chosen.cost <= start.cost, 'no costlier than the preset within the loss');
  } else {
    assert.ok(chosen.agreement >= start.agreement);
  }
  const run = JSON.parse((await tesseraOk(['run', '--input', INPUT, '--output', path.join(dir, 'run.zarr'), '--config', out, '--roi', ROI, '--json'])).stdout);
  assert.equal(run.status, 'complete');
  assert.equal(run.mode, 'two-stage');
});

test('a tune killed after some trials resumes from its cached runs and chooses the same', async () => {
  const out = path.join(dir, 'b', 'TUNED.json');
  // Killed (SIGKILL) once the second trial has finished.
  await new Promise<void>((resolve, reject) => {
    const p = spawn(process.execPath, [path.join(ROOT, 'bin', 'tessera.mjs'), ...args(out)], { env: { ...process.env, TESSERA_LOG: 'warn' } });
    let err = '';
    p.stderr.on('data', (d) => {
      err += d;
      if (/trial 1\/3/.test(err)) p.kill('SIGKILL');
    });
    p.on('error', reject);
    p.on('close', (code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`not killed (exit ${code}): ${err}`))));
  });
  assert.ok(!fs.existsSync(out), 'killed before it wrote a config');
  const r = await tesseraOk([...args(out), '--json']);
  const rep = JSON.parse(r.stdout);
  assert.ok(rep.cost.reusedRuns >= 3, `the reference and two trials reused (${rep.cost.reusedRuns})`);
  assert.equal((r.stderr.match(/\(cached\)/g) ?? []).length, rep.cost.reusedRuns);
  assert.ok(rep.cost.runs - rep.cost.reusedRuns <= 2, 'at most the two unfinished trials ran again');
  assert.equal(rep.chosen.index, first.chosen.index);
  assert.deepEqual(rep.chosen.overrides, first.chosen.overrides);
});

test('bad input is one line: no goal, both goals, a ROI outside the volume', async () => {
  const out = path.join(dir, 'c', 'TUNED.json');
  const base = ['tune', '--input', INPUT, '--preset', 'synthetic-em', '--out', out];
  for (const [extra, msg] of [
    [[], /give one of --max-loss D or --min-speedup S/],
    [['--max-loss', '0.01', '--min-speedup', '5'], /give one of --max-loss D or --min-speedup S/],
    [['--max-loss', '0.01', '--roi', '0:32,0:128,200:300'], /--roi 0:32,0:128,200:300 is not inside the volume \(shape 32x256x256\)/],
    [['--max-loss', '2'], /--max-loss must be a number in \[0, 1\)/],
  ] as Array<[string[], RegExp]>) {
    const r = await tessera([...base, ...extra]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, msg);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  assert.ok(!fs.existsSync(out));
});
