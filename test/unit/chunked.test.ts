// The chunk-aligned writer (shared/volume/chunked.ts) against zarrita's own `set`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zarr from 'zarrita';
import FileSystemStore from '@zarrita/storage/fs';
import { type Box, type Vec3, box, boxOfShape, shapeOf } from '../../shared/geometry/box.ts';
import { type Array3, array3, crop } from '../../shared/array/array3.ts';
import { type DType, type TypedArray, allocate } from '../../shared/volume/dtype.ts';
import { type VolumeArray, createArray, readRegion, writeRegion } from '../../shared/volume/zarr.ts';
import { fileArray } from '../../shared/volume/zarr.ts';
import { listFiles, tmpDir } from '../helpers/tmpdir.ts';
import { rng } from '../helpers/rng.ts';

const bytesOf = (a: TypedArray) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/**
 * Sparse random data: a few blobs of non-zero values in zeros, so some storage chunks are all
 * fill and others not; floats include -0 (not the fill value: its bits differ).
 */
function sparse(dtype: DType, shape: Vec3, seed: number): Array3 {
  const r = rng(seed);
  const n = shape[0] * shape[1] * shape[2];
  const a = allocate(dtype, n);
  for (let k = 0; k < 3; k++) {
    const c = shape.map((s) => Math.floor(r() * s));
    for (let z = c[0]; z < Math.min(shape[0], c[0] + 2); z++) for (let y = c[1]; y < Math.min(shape[1], c[1] + 3); y++) {
      for (let x = c[2]; x < Math.min(shape[2], c[2] + 3); x++) {
        const v = r();
        a[(z * shape[1] + y) * shape[2] + x] = dtype === 'float32' ? (v < 0.2 ? -0 : v * 1000) : 1 + Math.floor(v * 200);
      }
    }
  }
  return array3(a, shape);
}

/** Read every voxel through zarrita alone (a fresh store, no Tessera code). */
async function zarritaRead(p: string): Promise<TypedArray> {
  const arr = await zarr.open(zarr.root(new FileSystemStore(p)), { kind: 'array' });
  return (await zarr.get(arr, null)).data as TypedArray;
}

/** What zarrita's own `set` writes for the same region. */
async function zarritaSet(va: VolumeArray, region: Box, data: Array3): Promise<void> {
  const s = data.shape;
  await zarr.set(fileArray(va), [0, 1, 2].map((a) => zarr.slice(region.begin[a], region.end[a])), { data: data.data as never, shape: [...s], stride: [s[1] * s[2], s[2], 1] });
}

const chunkFiles = (p: string) => listFiles(p).filter((f) => !f.startsWith('.z')).sort();

const SHAPE: Vec3 = [7, 13, 18]; // partial storage chunks on every axis
const CHUNKS: Vec3 = [2, 4, 8];

test('chunk-aligned writeRegion: same decoded voxels and same chunk bytes as zarrita set; all-fill chunks get no file', async (t) => {
  const dir = tmpDir(t);
  const compressors: Array<Record<string, unknown> | null | undefined> = [undefined, null, { id: 'zstd', level: 3 }];
  let skipped = 0;
  for (const dtype of ['uint8', 'uint16', 'uint32', 'float32'] as DType[]) {
    for (const [ci, compressor] of compressors.entries()) {
      const name = `${dtype}-${ci}`;
      const ours = await createArray(path.join(dir, `${name}-ours.zarr`), { shape: SHAPE, chunks: CHUNKS, dtype, compressor });
      const theirs = await createArray(path.join(dir, `${name}-theirs.zarr`), { shape: SHAPE, chunks: CHUNKS, dtype, compressor });
      const data = sparse(dtype, SHAPE, 11 + ci);
      // The whole array, and then an aligned sub-region reaching the far edge.
      for (const region of [boxOfShape(SHAPE), box([2, 4, 8], SHAPE)]) {
        const part = crop(data, [0, 0, 0], region);
        await writeRegion(ours, region, part);
        await zarritaSet(theirs, region, part);
      }
      const want = await zarritaRead(theirs.path);
      assert.ok(bytesOf(await zarritaRead(ours.path)).equals(bytesOf(want)), `${name}: zarrita reads the same voxels`);
      assert.ok(bytesOf((await readRegion(ours, boxOfShape(SHAPE))).data).equals(bytesOf(want)), `${name}: readRegion too`);
      // Every chunk we wrote is byte for byte zarrita's; the ones we left out are all zero there.
      const mine = chunkFiles(ours.path);
      const all = chunkFiles(theirs.path);
      assert.equal(all.length, 4 * 4 * 3, `${name}: zarrita writes every chunk`);
      assert.ok(mine.length > 0 && mine.length < all.length, `${name}: some chunks left out (${mine.length} of ${all.length})`);
      for (const f of all) {
        const theirsBytes = fs.readFileSync(path.join(theirs.path, f));
        if (mine.includes(f)) assert.ok(fs.readFileSync(path.join(ours.path, f)).equals(theirsBytes), `${name} ${f}: same bytes`);
        else {
          const [z, y, x] = f.split('/').map(Number);
          const cb = box([z * CHUNKS[0], y * CHUNKS[1], x * CHUNKS[2]], [(z + 1) * CHUNKS[0], (y + 1) * CHUNKS[1], (x + 1) * CHUNKS[2]]);
          const inside = crop(array3(want, SHAPE), [0, 0, 0], cb);
          assert.ok(bytesOf(inside.data).every((b) => b === 0), `${name} ${f}: left out, and all +0 in zarrita's`);
          skipped++;
        }
      }
    }
  }
  assert.ok(skipped > 0);
});

test('chunk-aligned writeRegion: rewriting with fill removes the stale chunk files; writeFillChunks keeps every file', async (t) => {
  const dir = tmpDir(t);
  const va = await createArray(path.join(dir, 'a.zarr'), { shape: SHAPE, chunks: CHUNKS, dtype: 'uint16' });
  const full = array3(Uint16Array.from({ length: SHAPE[0] * SHAPE[1] * SHAPE[2] }, (_, i) => 1 + (i % 1000)), SHAPE);
  await writeRegion(va, boxOfShape(SHAPE), full);
  assert.equal(chunkFiles(va.path).length, 48);
  // A resumed task writes zeros where an earlier run wrote data: those files go.
  const region = box([2, 0, 0], [4, 8, 16]);
  await writeRegion(va, region, array3(new Uint16Array(2 * 8 * 16), shapeOf(region)));
  const left = chunkFiles(va.path);
  assert.equal(left.length, 48 - 4);
  for (const f of ['1/0/0', '1/0/1', '1/1/0', '1/1/1']) assert.ok(!left.includes(f), `${f} removed`);
  const back = await zarritaRead(va.path);
  for (let z = 0; z < SHAPE[0]; z++) for (let y = 0; y < SHAPE[1]; y++) for (let x = 0; x < SHAPE[2]; x++) {
    const i = (z * SHAPE[1] + y) * SHAPE[2] + x;
    const inR = z >= 2 && z < 4 && y < 8 && x < 16;
    assert.equal(back[i], inR ? 0 : full.data[i], `${z},${y},${x}`);
  }
  // Writing zeros over nothing leaves nothing; writeFillChunks writes the zero chunks.
  const empty = await createArray(path.join(dir, 'e.zarr'), { shape: SHAPE, chunks: CHUNKS, dtype: 'uint8' });
  const zeros = array3(new Uint8Array(SHAPE[0] * SHAPE[1] * SHAPE[2]), SHAPE);
  await writeRegion(empty, boxOfShape(SHAPE), zeros);
  assert.deepEqual(chunkFiles(empty.path), []);
  await writeRegion(empty, boxOfShape(SHAPE), zeros, { writeFillChunks: true });
  assert.equal(chunkFiles(empty.path).length, 48);
  assert.ok((await zarritaRead(empty.path)).every((v) => v === 0));
});
