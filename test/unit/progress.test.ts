// Progress off a terminal: the fields of a progress line (ETA, voxels written, rate) and the
// lines themselves at the interval; on a terminal, log lines as text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { progressFields, runProgress, textLine } from '../../services/cli/progress.ts';

test('progressFields: fraction of tasks, ETA from the rate so far, voxels from the writing kind', () => {
  const counts = new Map([['stage1', { done: 8, total: 8 }], ['paste', { done: 1, total: 4 }], ['relabel', { done: 0, total: 4 }]]);
  const f = progressFields(counts, 4_000_000, 30);
  assert.deepEqual(f.tasks, { stage1: '8/8', paste: '1/4', relabel: '0/4' });
  assert.equal(f.fraction, 0.5625);
  assert.equal(f.etaSeconds, Math.round((30 * 0.4375) / 0.5625));
  assert.equal(f.voxelsDone, 1_000_000);
  assert.equal(f.voxelsPerSecond, Math.round(1_000_000 / 30));
  // Nothing written yet, nothing known: no voxel fields; all done: no ETA.
  assert.equal(progressFields(new Map([['stage1', { done: 2, total: 2 }]]), undefined, 5).etaSeconds, undefined);
  assert.equal(progressFields(new Map([['stage1', { done: 1, total: 2 }]]), undefined, 5).voxelsDone, undefined);
});

test('off a terminal: one JSON progress line per interval while something moved, none when idle', async () => {
  let out = '';
  const stream = Object.assign(new Writable({ write(c, _e, cb) { out += c; cb(); } }), { isTTY: false });
  const p = runProgress({ intervalS: 0.05, stream });
  p.update('paste', 1, 2, 1000);
  await new Promise((r) => setTimeout(r, 300));
  const idle = out.split('\n').filter(Boolean).length;
  await new Promise((r) => setTimeout(r, 300));
  p.update('paste', 2, 2, 1000);
  await new Promise((r) => setTimeout(r, 300));
  p.stop();
  const lines = out.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  assert.equal(idle, 1, 'one line for the first change, none while idle');
  assert.equal(lines.length, 2);
  assert.ok(lines.every((l) => l.msg === 'progress'));
  assert.deepEqual(lines.map((l) => l.tasks.paste), ['1/2', '2/2']);
  assert.equal(lines[0].voxelsDone, 500);
  assert.ok(lines[0].etaSeconds >= 0);
  // A run that ends between ticks still leaves its last state.
  let end = '';
  const s2 = Object.assign(new Writable({ write(c, _e, cb) { end += c; cb(); } }), { isTTY: false });
  const q = runProgress({ intervalS: 10, stream: s2 });
  q.update('paste', 3, 3, 900);
  q.stop();
  const final = end.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  assert.equal(final.length, 1);
  assert.equal(final[0].fraction, 1);
  assert.equal(final[0].voxelsDone, 900);
});

test('textLine: a pino JSON line as level, message and key=value fields', () => {
  assert.equal(textLine('{"level":40,"time":1,"pid":2,"hostname":"h","msg":"task failed","task":"paste/0_1_0","n":3}'), 'warn: task failed  task=paste/0_1_0 n=3');
  assert.equal(textLine('not json\n'), 'not json');
});
