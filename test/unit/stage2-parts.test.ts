// Stage-two results split by the chunk they paste into (shared/tasks/stage2-parts.ts) and the
// sectioned work file under them (shared/tasks/work-sections.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Box, type Vec3, box, contains, volumeOf } from '../../shared/geometry/box.ts';
import { chunkBox } from '../../shared/geometry/grid.ts';
import { PasteAccumulator } from '../../shared/pipeline/paste.ts';
import { QUANT } from '../../shared/pipeline/quant.ts';
import { type ChunkPart, type Stage2Result, concat, cropsOf, readStage2Part, splitByChunk, writeStage2 } from '../../shared/tasks/stage2-parts.ts';
import type { TaskContext } from '../../shared/tasks/context.ts';
import { WorkStore } from '../../shared/tasks/work.ts';
import { InputError } from '../../shared/errors.ts';
import { randInt, rng } from '../helpers/rng.ts';
import { tmpDir } from '../helpers/tmpdir.ts';

const VOLUME = box([0, 0, 0], [20, 45, 50]);
const CHUNK: Vec3 = [8, 16, 16];

/** A block's result: crops anywhere in the volume (many crossing chunk borders), two channels. */
function randomResult(seed: number, count: number): Stage2Result {
  const r = rng(seed);
  const crops: Stage2Result['crops'] = [];
  const parts: Uint16Array[] = [];
  for (let k = 0; k < count; k++) {
    const b = VOLUME.end.map((e) => randInt(r, 0, e - 1)) as unknown as Vec3;
    const target = box(b, b.map((v, a) => Math.min(VOLUME.end[a], v + randInt(r, 1, 20))) as unknown as Vec3);
    const source = box(target.begin.map((v) => v - randInt(r, 0, 3)) as unknown as Vec3, target.end.map((v) => v + randInt(r, 0, 3)) as unknown as Vec3);
    crops.push({ boxId: k, source, target });
    parts.push(Uint16Array.from({ length: 2 * volumeOf(target) }, () => randInt(r, 0, QUANT + 1)));
  }
  const values = new Uint16Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { values.set(p, at); at += p.length; }
  return { channels: 2, crops, values };
}

function paste(write: Box, results: readonly (Stage2Result | undefined)[]): Float32Array[] {
  const acc = new PasteAccumulator(write, 2);
  for (const r of results) {
    if (!r) continue;
    let at = 0;
    for (const c of r.crops) {
      const n = 2 * volumeOf(c.target);
      acc.addQuantised({ source: c.source, target: c.target, values: r.values.subarray(at, at + n) });
      at += n;
    }
  }
  return acc.finish('softmax').probs.map((p) => p.data);
}

/** A chunk's part as paste reads it: one array of values. */
const asResult = (p: ChunkPart | undefined): Stage2Result | undefined => p && { channels: 2, crops: p.crops, values: concat(p.values) };

const chunks = (): Vec3[] => {
  const out: Vec3[] = [];
  for (let z = 0; z * CHUNK[0] < VOLUME.end[0]; z++) for (let y = 0; y * CHUNK[1] < VOLUME.end[1]; y++) for (let x = 0; x * CHUNK[2] < VOLUME.end[2]; x++) out.push([z, y, x]);
  return out;
};

test('splitByChunk: each chunk pastes the same floats from its part as from the whole result; parts in raster order, inside their chunk', () => {
  const whole = [randomResult(1, 40), randomResult(2, 25)];
  const split = whole.map((r) => splitByChunk(cropsOf(r), CHUNK, VOLUME));
  for (const s of split) {
    const order = s.map((p) => p.index.join('_'));
    const sorted = [...s].sort((a, b) => a.index[0] - b.index[0] || a.index[1] - b.index[1] || a.index[2] - b.index[2]).map((p) => p.index.join('_'));
    assert.deepEqual(order, sorted);
    for (const p of s) {
      const cb = chunkBox(p.index, CHUNK, VOLUME);
      const part = asResult(p)!;
      assert.ok(part.crops.length > 0);
      assert.equal(part.values.length, part.crops.reduce((n, c) => n + 2 * volumeOf(c.target), 0));
      for (const c of part.crops) assert.ok(contains(cb, c.target), `${p.index}: crop ${c.boxId} inside`);
    }
  }
  // Every voxel of every crop lands in exactly one part.
  for (const [i, r] of whole.entries()) {
    assert.equal(split[i].reduce((n, p) => n + asResult(p)!.values.length, 0), r.values.length);
  }
  let pasted = 0;
  for (const index of chunks()) {
    const write = chunkBox(index, CHUNK, VOLUME);
    const want = paste(write, whole);
    const got = paste(write, split.map((s) => asResult(s.find((p) => p.index.join() === index.join()))));
    for (const c of [0, 1]) assert.ok(Buffer.from(got[c].buffer).equals(Buffer.from(want[c].buffer)), `chunk ${index} channel ${c}`);
    if (want[0].some((v) => v > 0)) pasted++;
  }
  assert.ok(pasted > 10);
});

test('writeStage2 + readStage2Part: each chunk reads back its own part; a chunk no crop reaches reads nothing; a whole (pre-split) result file still reads', async (t) => {
  const dir = tmpDir(t);
  const work = new WorkStore(path.join(dir, '.work'));
  const ctx = { work, graph: { chunk: CHUNK, volume: VOLUME } } as unknown as TaskContext;
  const r = randomResult(3, 6);
  const parts = splitByChunk(cropsOf(r), CHUNK, VOLUME);
  await writeStage2(ctx, [1, 0, 0], r.channels, cropsOf(r));
  // The older layout: the block's crops whole, one header and body (writeBinary).
  await work.writeBinary('stage2', [2, 0, 0], { channels: r.channels, crops: r.crops }, new Uint8Array(r.values.buffer));
  let none = 0;
  for (const index of chunks()) {
    const want = asResult(parts.find((p) => p.index.join() === index.join()));
    for (const block of [[1, 0, 0], [2, 0, 0]] as Vec3[]) {
      const got = await readStage2Part(ctx, block, index);
      assert.deepEqual(got && { ...got, values: Array.from(got.values) }, want && { ...want, values: Array.from(want.values) }, `block ${block} chunk ${index}`);
    }
    if (!want) none++;
  }
  assert.ok(none > 0, 'some chunks hold no crop');
  // A result that is missing, or cut short, is an InputError naming the file.
  await assert.rejects(readStage2Part(ctx, [3, 0, 0], [0, 0, 0]), (e: unknown) => e instanceof InputError && /missing/.test(e.message));
  const file = work.path('stage2', [1, 0, 0], 'bin');
  fs.truncateSync(file, fs.statSync(file).size - 7);
  const last = parts[parts.length - 1].index;
  await assert.rejects(readStage2Part(ctx, [1, 0, 0], last), (e: unknown) => e instanceof InputError && e.message.includes(file) && /truncated/.test(e.message));
});
