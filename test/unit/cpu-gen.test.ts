// The CPU-side simulation's generator (bench/cpu-gen.ts) writes what labelChunk would: its
// objects table, border sections and label runs of each chunk equal, byte for byte, those the real
// labelling gives for the same objects rasterised, and its boxes are distinct 26-connected objects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Vec3 } from '../../shared/geometry/box.ts';
import { array3 } from '../../shared/array/array3.ts';
import { anchorIds, labelObjects, labelRuns } from '../../shared/pipeline/instances.ts';
import { borderSections } from '../../shared/pipeline/border.ts';
import { ObjectField, borderOfParts, labelTable, runsOfParts } from '../../bench/cpu-gen.ts';

const VOLUME: Vec3 = [23, 64, 80];
const CHUNK: Vec3 = [7, 16, 16];

function field(seed: number): ObjectField {
  return new ObjectField({ volume: VOLUME, chunk: CHUNK, seed, density: 6e-4, lo: [1, 2, 2], hi: [5, 9, 9] });
}

/** Every object painted into the volume: class 1, and its probability on its voxels. */
function rasterise(f: ObjectField): { seg: Uint8Array; prob: Float32Array; objects: number } {
  const n = VOLUME[0] * VOLUME[1] * VOLUME[2];
  const seg = new Uint8Array(n);
  const prob = new Float32Array(n);
  let objects = 0;
  const g = f.grid;
  for (let z = 0; z < g[0]; z++) for (let y = 0; y < g[1]; y++) for (let x = 0; x < g[2]; x++) {
    for (const o of f.objectsOf([z, y, x])) {
      objects++;
      for (let a = o.box.begin[0]; a < o.box.end[0]; a++) for (let b = o.box.begin[1]; b < o.box.end[1]; b++) for (let c = o.box.begin[2]; c < o.box.end[2]; c++) {
        const i = (a * VOLUME[1] + b) * VOLUME[2] + c;
        assert.equal(seg[i], 0, 'objects never overlap');
        seg[i] = 1;
        prob[i] = o.p;
      }
    }
  }
  return { seg, prob, objects };
}

function cut<T extends Uint8Array | Float32Array>(src: T, begin: Vec3, shape: Vec3, make: (n: number) => T): T {
  const out = make(shape[0] * shape[1] * shape[2]);
  for (let z = 0; z < shape[0]; z++) for (let y = 0; y < shape[1]; y++) {
    const from = ((begin[0] + z) * VOLUME[1] + begin[1] + y) * VOLUME[2] + begin[2];
    out.set(src.subarray(from, from + shape[2]), (z * shape[1] + y) * shape[2]);
  }
  return out;
}

test('cpu-gen: each chunk\'s table, border and runs equal the real labelling of the rasterised objects', () => {
  for (const seed of [1, 2]) {
    const f = field(seed);
    const { seg, prob, objects } = rasterise(f);
    assert.ok(objects > 40, `${objects} objects`);
    // Distinct objects: labelling the whole volume at once finds each box as one object.
    const whole = labelObjects(array3(seg, VOLUME), [0, 0, 0]);
    assert.equal(whole.count, objects, 'no two boxes touch');
    let crossing = 0;
    const g = f.grid;
    for (let z = 0; z < g[0]; z++) for (let y = 0; y < g[1]; y++) for (let x = 0; x < g[2]; x++) {
      const c: Vec3 = [z, y, x];
      const w = f.chunkBox(c);
      const shape = [0, 1, 2].map((a) => w.end[a] - w.begin[a]) as unknown as Vec3;
      const s = array3(cut(seg, w.begin, shape, (n) => new Uint8Array(n)), shape);
      const p = array3(cut(prob, w.begin, shape, (n) => new Float32Array(n)), shape);
      // What labelChunk computes.
      const l = labelObjects(s, w.begin, [p]);
      const ids = anchorIds(l, w.begin, shape, VOLUME);
      const table = { count: l.count, objects: l.objects.map((r) => ({ ...r, anchor: ids[r.id] })) };
      const parts = f.partsOf(c);
      crossing += parts.filter((q) => q.anchor !== q.object.id).length;
      assert.equal(JSON.stringify(labelTable(parts)), JSON.stringify(table), `table of chunk ${c}`);
      const real = borderSections(l.labels, ids, s.data, shape);
      const gen = borderOfParts(parts, w);
      assert.equal(gen.length, real.length);
      gen.forEach((b, i) => assert.deepEqual(b, real[i], `chunk ${c}, border section ${i}`));
      assert.deepEqual(runsOfParts(parts, w), labelRuns(l.labels, shape), `runs of chunk ${c}`);
    }
    assert.ok(crossing > 10, `${crossing} parts of objects whose first voxel lies in another chunk`);
  }
});

test('cpu-gen: objectAt finds the object of a voxel, and the density comes out as asked', () => {
  const f = new ObjectField({ volume: [96, 1024, 1024], chunk: [48, 512, 512], seed: 3, density: 5e-6, lo: [4, 20, 20], hi: [12, 60, 60] });
  let n = 0;
  for (let z = 0; z < 2; z++) for (let y = 0; y < 2; y++) for (let x = 0; x < 2; x++) {
    for (const o of f.objectsOf([z, y, x])) {
      n++;
      assert.equal(f.objectAt(o.box.begin), o);
      assert.equal(f.objectAt(f.voxelOf(o.id)), o);
    }
  }
  const want = 5e-6 * 96 * 1024 * 1024;
  assert.ok(Math.abs(n - want) < 0.15 * want, `${n} objects, ${want.toFixed(0)} wanted`);
});
