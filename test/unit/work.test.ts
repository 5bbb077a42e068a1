// The work store's done logs: appends coalesced, read back in order, whole lines only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { WorkStore } from '../../shared/tasks/work.ts';
import { tmpDir } from '../helpers/tmpdir.ts';

async function all(store: WorkStore, kinds: string[]): Promise<string[]> {
  const out: string[] = [];
  for await (const batch of store.done(kinds)) for (const e of batch) out.push(`${e.kind}/${e.index.join('_')}`);
  return out;
}

test('done logs: concurrent markDone calls all land, in call order, and read back across read blocks', async (t) => {
  const dir = tmpDir(t);
  const store = new WorkStore(path.join(dir, '.work'));
  const n = 120_000; // ≈ 1.2 MB of lines: many 64 KiB read blocks
  const want: string[] = [];
  const pending: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const index: [number, number, number] = [i % 7, Math.floor(i / 7) % 1000, Math.floor(i / 7000)];
    want.push(`paste/${index.join('_')}`);
    pending.push(store.markDone('paste', index));
  }
  await Promise.all(pending);
  await store.markDone('boxes', [3, 2, 1]);
  assert.deepEqual(await all(store, ['paste', 'boxes']), [...want, 'boxes/3_2_1']);
});

test('done logs: a line cut short by a crash, or anything but "z_y_x;", does not count', async (t) => {
  const dir = tmpDir(t);
  const store = new WorkStore(path.join(dir, '.work'));
  fs.mkdirSync(path.join(dir, '.work', 'done'), { recursive: true });
  fs.writeFileSync(path.join(dir, '.work', 'done', 'stage1.log'), '0_0_0;\n0_0_1\n0_1_0;\r\n 0_2_0; \nx_0_0;\n0_0;\n1_2_3;junk\n12_345_6789;\n0_0_2;');
  assert.deepEqual(await all(store, ['stage1']), ['stage1/0_0_0', 'stage1/0_1_0', 'stage1/0_2_0', 'stage1/12_345_6789', 'stage1/0_0_2']);
  fs.writeFileSync(path.join(dir, '.work', 'done', 'stage1.log'), '0_0_0;\n0_0_');
  assert.deepEqual(await all(store, ['stage1']), ['stage1/0_0_0']);
});

test('remove deletes the files named and is quiet about those that are not there', async (t) => {
  const dir = tmpDir(t);
  const store = new WorkStore(path.join(dir, '.work'));
  await store.writeJson('boxes', [0, 1, 2], { a: 1 });
  await store.writeFloats('boxes', [0, 1, 2], new Float32Array(2));
  await store.remove('boxes', [0, 1, 2], ['json']);
  assert.equal(store.exists('boxes', [0, 1, 2], 'json'), false);
  assert.equal(store.exists('boxes', [0, 1, 2], 'f32'), true, 'only the named extensions');
  await store.remove('boxes', [0, 1, 2]);
  assert.equal(store.exists('boxes', [0, 1, 2], 'f32'), false);
  await store.remove('boxes', [9, 9, 9]);
});
