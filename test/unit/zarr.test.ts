import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zarr from 'zarrita';
import FileSystemStore from '@zarrita/storage/fs';
import { type Box, type Vec3, box, boxOfShape, boxToString, shapeOf } from '../../shared/geometry/box.ts';
import { planGrid } from '../../shared/geometry/grid.ts';
import { type Array3, array3, crop } from '../../shared/array/array3.ts';
import { downsampleMean } from '../../shared/array/resample.ts';
import { InputError, OutputError, isPermanent } from '../../shared/errors.ts';
import { type DType, type TypedArray, allocate } from '../../shared/volume/dtype.ts';
import { createArray, createGroup, openArray, readGroupAttributes, readRegion, writeRegion } from '../../shared/volume/zarr.ts';
import { AtomicFileStore, clearTemp, writeFileAtomic, writeJsonAtomic } from '../../shared/volume/store.ts';
import { type Image, multiscalesAttrs, openImage, pickLevel } from '../../shared/volume/ome.ts';
import { cachedReader, lowGrid, padTo, readFull, readLow, source, toLowBox } from '../../shared/volume/source.ts';
import { Lru } from '../../shared/cache.ts';
import { writeSynth } from '../../shared/run/synth.ts';
import { listFiles, tmpDir } from '../helpers/tmpdir.ts';

const idx = (s: Vec3, z: number, y: number, x: number) => (z * s[1] + y) * s[2] + x;

/** A deterministic, position-dependent pattern that fits every dtype exactly. */
function pattern(dtype: DType, shape: Vec3): Array3 {
  const n = shape[0] * shape[1] * shape[2];
  const a = allocate(dtype, n);
  for (let i = 0; i < n; i++) {
    a[i] = dtype === 'uint8' ? (i * 37 + 11) % 251 : dtype === 'uint16' ? (i * 1237 + 5) % 65521 : Math.fround(Math.sin(i) * 1000 + i / 7);
  }
  return array3(a, shape);
}

/** numpy "reflect" (mirror without repeating the edge), by repeated unfolding. */
function reflectRef(i: number, n: number): number {
  if (n === 1) return 0;
  while (i < 0 || i >= n) {
    if (i < 0) i = -i;
    if (i >= n) i = 2 * (n - 1) - i;
  }
  return i;
}

/** What readRegion should return for `region` of `full` (shape `s`). */
function expectedRead(full: Array3, region: Box, pad: 'constant' | 'mirror', value: number): number[] {
  const s = full.shape;
  const out: number[] = [];
  for (let z = region.begin[0]; z < region.end[0]; z++) for (let y = region.begin[1]; y < region.end[1]; y++) for (let x = region.begin[2]; x < region.end[2]; x++) {
    const inside = z >= 0 && z < s[0] && y >= 0 && y < s[1] && x >= 0 && x < s[2];
    if (inside) out.push(full.data[idx(s, z, y, x)]);
    else if (pad === 'constant') out.push(value);
    else out.push(full.data[idx(s, reflectRef(z, s[0]), reflectRef(y, s[1]), reflectRef(x, s[2]))]);
  }
  return out;
}

const CTOR: Record<string, new (n: number) => TypedArray> = { uint8: Uint8Array, uint16: Uint16Array, float32: Float32Array };

async function makeVolume(dir: string, name: string, dtype: DType, shape: Vec3, chunks: Vec3, compressor?: Record<string, unknown> | null) {
  const p = path.join(dir, name);
  const va = await createArray(p, { shape, chunks, dtype, compressor });
  const data = pattern(dtype, shape);
  await writeRegion(va, boxOfShape(shape), data);
  return { p, va, data };
}

// ---------------------------------------------------------------- round trips

test('createArray + writeRegion + readRegion round trip (uint8, uint16, float32; blosc and raw)', async (t) => {
  const dir = tmpDir(t);
  const shape: Vec3 = [5, 9, 11]; // partial chunks on every axis
  for (const dtype of ['uint8', 'uint16', 'float32'] as DType[]) {
    for (const compressor of [undefined, null]) {
      const { p, va, data } = await makeVolume(dir, `${dtype}-${compressor === null ? 'raw' : 'blosc'}.zarr`, dtype, shape, [2, 4, 4], compressor);
      assert.deepEqual(va.shape, shape);
      assert.deepEqual(va.chunks, [2, 4, 4]);
      assert.equal(va.dtype, dtype);
      // Reopen from disk: metadata and data survive.
      const re = await openArray(p);
      assert.equal(re.dtype, dtype);
      const all = await readRegion(re, boxOfShape(shape));
      assert.ok(all.data instanceof CTOR[dtype], `${dtype} typed array`);
      assert.deepEqual(all.shape, shape);
      assert.deepEqual(Array.from(all.data), Array.from(data.data), `${dtype} whole volume`);
      // An unaligned sub-region crossing chunk borders.
      const sub = box([1, 3, 2], [4, 8, 10]);
      const got = await readRegion(re, sub);
      assert.deepEqual(got.shape, shapeOf(sub));
      assert.deepEqual(Array.from(got.data), expectedRead(data, sub, 'constant', 0), `${dtype} sub-region`);
    }
  }
});

test('writeRegion: unaligned partial writes land exactly; untouched voxels read as 0', async (t) => {
  const dir = tmpDir(t);
  const shape: Vec3 = [4, 10, 10];
  const va = await createArray(path.join(dir, 'w.zarr'), { shape, chunks: [2, 4, 4], dtype: 'uint16' });
  const region = box([1, 3, 5], [3, 9, 7]);
  const rs = shapeOf(region);
  const patch = array3(Uint16Array.from({ length: rs[0] * rs[1] * rs[2] }, (_, i) => 100 + i), rs);
  await writeRegion(va, region, patch);
  const all = await readRegion(va, boxOfShape(shape));
  for (let z = 0; z < 4; z++) for (let y = 0; y < 10; y++) for (let x = 0; x < 10; x++) {
    const inR = z >= 1 && z < 3 && y >= 3 && y < 9 && x >= 5 && x < 7;
    const want = inR ? 100 + idx(rs, z - 1, y - 3, x - 5) : 0;
    assert.equal(all.data[idx(shape, z, y, x)], want, `${z},${y},${x}`);
  }
  // Writing outside the array is an OutputError naming the array.
  await assert.rejects(writeRegion(va, box([0, 0, 0], [5, 1, 1]), array3(new Uint16Array(5), [5, 1, 1])),
    (e: unknown) => e instanceof OutputError && e.message.includes(path.join(dir, 'w.zarr')));
});

// ---------------------------------------------------------------- padding

test('readRegion: constant padding outside the volume fills the value', async (t) => {
  const dir = tmpDir(t);
  const { va, data } = await makeVolume(dir, 'c.zarr', 'uint16', [4, 6, 7], [2, 3, 3]);
  for (const region of [box([-2, -1, -3], [3, 8, 9]), box([2, 4, 5], [6, 9, 10]), box([-1, 0, 0], [5, 6, 7])]) {
    const got = await readRegion(va, region, 'constant', 7);
    assert.deepEqual(got.shape, shapeOf(region));
    assert.ok(got.data instanceof Uint16Array);
    assert.deepEqual(Array.from(got.data), expectedRead(data, region, 'constant', 7), boxToString(region));
  }
  const zero = await readRegion(va, box([-2, -1, -3], [3, 8, 9]));
  assert.deepEqual(Array.from(zero.data), expectedRead(data, box([-2, -1, -3], [3, 8, 9]), 'constant', 0));
  // Entirely outside: all value.
  const out = await readRegion(va, box([10, 10, 10], [12, 13, 14]), 'constant', 9);
  assert.ok(out.data.every((v) => v === 9));
});

test('readRegion: mirror padding follows numpy reflect (halo smaller than the volume)', async (t) => {
  const dir = tmpDir(t);
  const { va, data } = await makeVolume(dir, 'm.zarr', 'float32', [5, 6, 7], [2, 4, 3]);
  // Halos reaching out by at most the overlap with the volume on each side.
  for (const region of [box([-2, -3, -1], [5, 6, 7]), box([2, 3, 4], [7, 8, 9]), box([-1, -2, -3], [6, 8, 10]), box([0, -1, 0], [1, 3, 2])]) {
    const got = await readRegion(va, region, 'mirror');
    assert.deepEqual(Array.from(got.data), expectedRead(data, region, 'mirror', 0), boxToString(region));
  }
  // A region covering the whole volume with a halo of up to n-1 on both sides.
  const wide = box([-4, -5, -6], [9, 11, 13]);
  assert.deepEqual(Array.from((await readRegion(va, wide, 'mirror')).data), expectedRead(data, wide, 'mirror', 0));
});

test('readRegion: mirror padding on an axis of size 1 repeats the one slice', async (t) => {
  const dir = tmpDir(t);
  const { va, data } = await makeVolume(dir, 'one.zarr', 'uint8', [1, 4, 5], [1, 2, 2]);
  const region = box([-2, -1, 0], [3, 5, 5]);
  assert.deepEqual(Array.from((await readRegion(va, region, 'mirror')).data), expectedRead(data, region, 'mirror', 0));
});

test('readRegion: mirror padding where the halo is larger than the overlap with the volume', async (t) => {
  const dir = tmpDir(t);
  const { va, data } = await makeVolume(dir, 'mm.zarr', 'float32', [5, 6, 10], [2, 4, 3]);
  // x: region [-3, 2) overlaps the volume on [0, 2) only, but reflect(-3) = 3.
  const region = box([0, 0, -3], [2, 3, 2]);
  assert.deepEqual(Array.from((await readRegion(va, region, 'mirror')).data), expectedRead(data, region, 'mirror', 0));
});

test('readRegion: mirror padding of a region entirely outside the volume reflects too', async (t) => {
  const dir = tmpDir(t);
  const { va, data } = await makeVolume(dir, 'mo.zarr', 'uint16', [4, 6, 7], [2, 3, 3]);
  const region = box([0, 0, 7], [2, 3, 10]); // reflect(7..9) = 5, 4, 3 along x
  assert.deepEqual(Array.from((await readRegion(va, region, 'mirror', 0)).data), expectedRead(data, region, 'mirror', 0));
});

// ---------------------------------------------------------------- errors

test('readRegion: an unreadable chunk is an InputError naming the array path and the chunk key', async (t) => {
  const dir = tmpDir(t);
  // zstd rejects garbage; a directory in place of a chunk file cannot be read at all.
  const { p, va } = await makeVolume(dir, 'bad.zarr', 'float32', [4, 8, 12], [2, 4, 4], { id: 'zstd', level: 1 });
  const chunkFile = path.join(p, '1', '0', '2');
  assert.ok(fs.existsSync(chunkFile), 'v2 chunk keys use "/"');
  fs.writeFileSync(chunkFile, Buffer.from('this is not a zstd frame, only some text'));
  const check = (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.equal(e.path, p);
    assert.ok(e.message.includes(p), e.message);
    assert.ok(e.message.includes('1/0/2'), e.message);
    assert.ok(isPermanent(e));
    return true;
  };
  await assert.rejects(readRegion(va, box([2, 0, 8], [4, 4, 12])), check);
  // A region touching the bad chunk and three good ones still names it.
  await assert.rejects(readRegion(va, box([2, 3, 7], [4, 5, 9]), 'mirror'), check);
  // Chunks that are fine still read.
  await readRegion(va, box([0, 0, 0], [2, 4, 4]));
  fs.rmSync(chunkFile);
  fs.mkdirSync(chunkFile);
  await assert.rejects(readRegion(va, box([2, 0, 8], [4, 4, 12])), check);
});

test('readRegion: a corrupt chunk among more than four chunks read is still named', async (t) => {
  const dir = tmpDir(t);
  const { p, va } = await makeVolume(dir, 'bad8.zarr', 'float32', [4, 8, 12], [2, 4, 4], { id: 'zstd', level: 1 });
  fs.writeFileSync(path.join(p, '1', '0', '2'), Buffer.from('not a zstd frame'));
  // z chunks 0..1, y 0..1, x 1..2: 8 chunks; 1/0/2 is the sixth in raster order.
  await assert.rejects(readRegion(va, box([1, 3, 7], [3, 5, 9])),
    (e: unknown) => e instanceof InputError && e.message.includes('1/0/2'));
});

test('readRegion: a corrupt chunk with the default (blosc) compressor is an InputError naming path and chunk', async (t) => {
  const dir = tmpDir(t);
  const { p, va } = await makeVolume(dir, 'blosc.zarr', 'float32', [4, 8, 12], [2, 4, 4]);
  fs.writeFileSync(path.join(p, '1', '0', '2'), Buffer.from('this is not a blosc chunk, only some text'));
  await assert.rejects(readRegion(va, box([2, 0, 8], [4, 4, 12])),
    (e: unknown) => e instanceof InputError && e.message.includes(p) && e.message.includes('1/0/2'));
});

test('openArray: missing path, a group, an empty directory, a 2D array, an unsupported dtype → InputError naming the path', async (t) => {
  const dir = tmpDir(t);
  const names = (p: string) => (e: unknown) => e instanceof InputError && e.path === p && e.message.includes(p);
  const missing = path.join(dir, 'nope.zarr');
  await assert.rejects(openArray(missing), names(missing));
  const missingInside = path.join(dir, 'img.zarr', '0');
  fs.mkdirSync(path.join(dir, 'img.zarr'));
  await assert.rejects(openArray(missingInside), names(missingInside));
  const group = path.join(dir, 'group.zarr');
  await createGroup(group, { hello: 1 });
  await assert.rejects(openArray(group), names(group));
  const empty = path.join(dir, 'empty');
  fs.mkdirSync(empty);
  await assert.rejects(openArray(empty), names(empty));
  const flat = path.join(dir, 'flat.zarr');
  fs.mkdirSync(flat);
  fs.writeFileSync(path.join(flat, '.zarray'), JSON.stringify({
    zarr_format: 2, shape: [4, 4], chunks: [2, 2], dtype: '<u2', compressor: null, fill_value: 0, order: 'C', filters: null,
  }));
  await assert.rejects(openArray(flat), (e: unknown) => names(flat)(e) && /3D/.test((e as Error).message));
  const i64 = path.join(dir, 'i64.zarr');
  fs.mkdirSync(i64);
  fs.writeFileSync(path.join(i64, '.zarray'), JSON.stringify({
    zarr_format: 2, shape: [2, 2, 2], chunks: [2, 2, 2], dtype: '<i8', compressor: null, fill_value: 0, order: 'C', filters: null,
  }));
  await assert.rejects(openArray(i64), (e: unknown) => names(i64)(e) && /dtype/.test((e as Error).message));
});

// ---------------------------------------------------------------- atomic store

test('AtomicFileStore and writeJsonAtomic leave no *.tmp-* files', async (t) => {
  const dir = tmpDir(t);
  const { p, va } = await makeVolume(dir, 'atomic.zarr', 'uint16', [4, 9, 9], [2, 4, 4]);
  await writeRegion(va, box([1, 1, 1], [3, 7, 8]), pattern('uint16', [2, 6, 7]));
  await createGroup(path.join(dir, 'g.zarr'), { a: 1 });
  await writeJsonAtomic(path.join(dir, 'deep', 'er', 'x.json'), { b: [1, 2] });
  const store = new AtomicFileStore(path.join(dir, 'raw'));
  await store.set('/k/v', new Uint8Array([1, 2, 3]));
  await store.set('/k/v', new Uint8Array([4, 5])); // overwrite
  const files = listFiles(dir);
  assert.ok(files.length > 10, `${files.length} files written`);
  assert.deepEqual(files.filter((f) => /\.tmp-/.test(f)), []);
  assert.deepEqual(Array.from((await store.get('/k/v'))!), [4, 5]);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'deep', 'er', 'x.json'), 'utf8')), { b: [1, 2] });
  assert.deepEqual(readGroupAttributes(path.join(dir, 'g.zarr')), { a: 1 });
  // Every chunk of the array is a real file at its "z/y/x" key.
  assert.ok(files.includes(path.join('atomic.zarr', '1', '2', '2')), files.join(' '));
  assert.ok(p.endsWith('atomic.zarr'));
});

test('writeFileAtomic: a folder it made earlier and that is gone since (a cleared .tmp/, a removed chunk row) is made again', async (t) => {
  const dir = tmpDir(t);
  const root = path.join(dir, 'gone.zarr');
  await writeFileAtomic(path.join(root, '0', '1', '2'), 'a');
  // Both folders the first write made: the chunk row and the store's .tmp/.
  clearTemp(root);
  fs.rmSync(path.join(root, '0', '1'), { recursive: true });
  await writeFileAtomic(path.join(root, '0', '1', '3'), 'b');
  assert.equal(fs.readFileSync(path.join(root, '0', '1', '3'), 'utf8'), 'b');
  assert.deepEqual(listFiles(root).filter((f) => /\.tmp-/.test(f)), []);
});

// ---------------------------------------------------------------- NGFF

async function makePyramid(dir: string, name: string, globalScale?: number[]) {
  const img = path.join(dir, name);
  const spacings: Vec3[] = [[40, 4, 4], [40, 8, 8], [40, 16, 16]];
  const shapes: Vec3[] = [[4, 32, 24], [4, 16, 12], [4, 8, 6]];
  const attrs = multiscalesAttrs('img', 'nanometer', spacings) as { multiscales: Array<Record<string, unknown>> };
  const ms = attrs.multiscales[0] as { datasets: unknown[]; coordinateTransformations?: unknown };
  // Datasets listed coarse-first, to check openImage sorts finest-first.
  ms.datasets = [...ms.datasets].reverse();
  if (globalScale) ms.coordinateTransformations = [{ type: 'scale', scale: globalScale }];
  await createGroup(img, attrs);
  const data: Array3[] = [];
  for (let l = 0; l < 3; l++) {
    const va = await createArray(path.join(img, String(l)), { shape: shapes[l], chunks: [2, 8, 8], dtype: 'uint16' });
    const d = pattern('uint16', shapes[l]);
    await writeRegion(va, boxOfShape(shapes[l]), d);
    data.push(d);
  }
  return { img, spacings, shapes, data };
}

test('openImage: NGFF 0.4 multiscales → levels finest-first with spacings and unit', async (t) => {
  const dir = tmpDir(t);
  const { img, shapes } = await makePyramid(dir, 'img.zarr');
  const image = await openImage(img);
  assert.equal(image.unit, 'nanometer');
  assert.deepEqual(image.levels.map((l) => l.key), ['0', '1', '2']);
  assert.deepEqual(image.levels.map((l) => l.spacing), [[40, 4, 4], [40, 8, 8], [40, 16, 16]]);
  assert.deepEqual(image.levels.map((l) => l.array.shape), shapes);
  // A global scale multiplies each dataset's scale.
  const g = await makePyramid(dir, 'global.zarr', [0.5, 2, 2]);
  const gi = await openImage(g.img);
  assert.deepEqual(gi.levels.map((l) => l.spacing), [[20, 8, 8], [20, 16, 16], [20, 32, 32]]);
});

test('openImage: bare array, group with a "0" array, missing path, group without either', async (t) => {
  const dir = tmpDir(t);
  const { p } = await makeVolume(dir, 'bare.zarr', 'uint8', [2, 3, 4], [2, 2, 2]);
  const bare = await openImage(p, [3, 2, 1]);
  assert.equal(bare.levels.length, 1);
  assert.deepEqual(bare.levels[0].spacing, [3, 2, 1]);
  assert.deepEqual(bare.levels[0].array.shape, [2, 3, 4]);
  const grp = path.join(dir, 'grp.zarr');
  await createGroup(grp, {});
  await createArray(path.join(grp, '0'), { shape: [2, 2, 2], chunks: [2, 2, 2], dtype: 'uint8' });
  const gi = await openImage(grp, [5, 5, 5]);
  assert.deepEqual(gi.levels.map((l) => [l.key, l.spacing]), [['0', [5, 5, 5]]]);
  const missing = path.join(dir, 'missing.zarr');
  await assert.rejects(openImage(missing), (e: unknown) => e instanceof InputError && e.message.includes(missing));
  const lonely = path.join(dir, 'lonely.zarr');
  await createGroup(lonely, {});
  await assert.rejects(openImage(lonely), (e: unknown) => e instanceof InputError && e.message.includes(lonely));
});

test('pickLevel: coarsest level not coarser than the target, and the factor left over', async (t) => {
  const dir = tmpDir(t);
  const image = await openImage((await makePyramid(dir, 'p.zarr')).img);
  const pick = (target: Vec3) => { const r = pickLevel(image, target); return [r.level.key, r.factor]; };
  assert.deepEqual(pick([40, 16, 16]), ['2', [1, 1, 1]]);
  assert.deepEqual(pick([40, 8, 8]), ['1', [1, 1, 1]]);
  assert.deepEqual(pick([40, 4, 4]), ['0', [1, 1, 1]]);
  assert.deepEqual(pick([40, 32, 32]), ['2', [1, 2, 2]]);
  assert.deepEqual(pick([80, 64, 64]), ['2', [2, 4, 4]]);
  assert.deepEqual(pick([40, 12, 12]), ['1', [1, 1.5, 1.5]]); // 16 > 12: level 2 is too coarse
  assert.deepEqual(pick([40, 16, 8]), ['1', [1, 2, 1]]); // level 2 too coarse on x
  assert.deepEqual(pick([40, 15.9, 15.9]), ['2', [1, 1, 1]]); // within 1 %: counts as a match
  assert.deepEqual(pick([40, 15, 15]), ['1', [1, 1.875, 1.875]]);
});

// ---------------------------------------------------------------- Zarr v3

test('openArray reads a Zarr v3 array written by zarrita', async (t) => {
  const dir = tmpDir(t);
  const root = path.join(dir, 'v3.zarr');
  const store = new FileSystemStore(root);
  const shape: Vec3 = [3, 5, 7];
  const arr = await zarr.create(zarr.root(store).resolve('vol'), {
    shape: [...shape], chunkShape: [2, 2, 4], dtype: 'uint16',
    codecs: [{ name: 'bytes', configuration: { endian: 'little' } }],
  });
  const data = pattern('uint16', shape);
  await zarr.set(arr, null, { data: data.data as Uint16Array, shape: [...shape], stride: [35, 7, 1] });
  assert.ok(fs.existsSync(path.join(root, 'vol', 'zarr.json')));
  const va = await openArray(path.join(root, 'vol'));
  assert.deepEqual(va.shape, shape);
  assert.deepEqual(va.chunks, [2, 2, 4]);
  assert.equal(va.dtype, 'uint16');
  assert.deepEqual(Array.from((await readRegion(va, boxOfShape(shape))).data), Array.from(data.data));
  const region = box([-1, 2, 3], [2, 6, 9]);
  assert.deepEqual(Array.from((await readRegion(va, region, 'mirror')).data), expectedRead(data, region, 'mirror', 0));
});

test('openImage reads an NGFF 0.5 (Zarr v3, attributes.ome.multiscales) image', async (t) => {
  const dir = tmpDir(t);
  const root = path.join(dir, 'ome5.zarr');
  const store = new FileSystemStore(root);
  const ms = multiscalesAttrs('x', 'micrometer', [[1, 0.5, 0.5], [2, 1, 1]]) as { multiscales: unknown };
  await zarr.create(zarr.root(store), { attributes: { ome: { version: '0.5', multiscales: ms.multiscales } } });
  for (const [k, s] of [['0', [4, 8, 8]], ['1', [2, 4, 4]]] as const) {
    await zarr.create(zarr.root(store).resolve(k), { shape: [...s], chunkShape: [2, 4, 4], dtype: 'float32' });
  }
  const image = await openImage(root);
  assert.equal(image.unit, 'micrometer');
  assert.deepEqual(image.levels.map((l) => [l.key, l.spacing, l.array.shape]), [['0', [1, 0.5, 0.5], [4, 8, 8]], ['1', [2, 1, 1], [2, 4, 4]]]);
});

// ---------------------------------------------------------------- source.ts

function fakeImage(shape: Vec3, spacing: Vec3): Image {
  return { path: 'fake', unit: undefined, levels: [{ key: '0', spacing, array: { shape } as never }] };
}

function checkLowTiling(shape: Vec3, spacing: Vec3, target: Vec3, chunk: Vec3, region: Box = boxOfShape(shape)): void {
  const g = lowGrid(source(fakeImage(shape, spacing), 'mirror', 0), target);
  const want = toLowBox(g, region, shape);
  const ls = g.shape;
  const cnt = new Int32Array(ls[0] * ls[1] * ls[2]);
  for (const c of planGrid(region, chunk, [0, 0, 0])) {
    const lb = toLowBox(g, c.writeBox, shape);
    for (let z = lb.begin[0]; z < lb.end[0]; z++) for (let y = lb.begin[1]; y < lb.end[1]; y++) for (let x = lb.begin[2]; x < lb.end[2]; x++) {
      assert.ok(z >= 0 && y >= 0 && x >= 0 && z < ls[0] && y < ls[1] && x < ls[2], `low box ${boxToString(lb)} leaves the low volume ${ls}`);
      cnt[idx(ls, z, y, x)]++;
    }
  }
  for (let z = 0; z < ls[0]; z++) for (let y = 0; y < ls[1]; y++) for (let x = 0; x < ls[2]; x++) {
    const inW = z >= want.begin[0] && z < want.end[0] && y >= want.begin[1] && y < want.end[1] && x >= want.begin[2] && x < want.end[2];
    assert.equal(cnt[idx(ls, z, y, x)], inW ? 1 : 0, `low voxel ${z},${y},${x}: shape ${shape}, factor ${g.factor}, chunk ${chunk}`);
  }
}

test('toLowBox: the low-res boxes of a planGrid tiling tile the low-res volume exactly', () => {
  // Whole volume: the mapped region is the whole low-res volume.
  const whole = (shape: Vec3, spacing: Vec3, target: Vec3) => {
    const g = lowGrid(source(fakeImage(shape, spacing), 'mirror', 0), target);
    assert.deepEqual(toLowBox(g, boxOfShape(shape), shape), boxOfShape(g.shape));
    // ceil(shape / factor), at least 1.
    for (let a = 0; a < 3; a++) assert.equal(g.shape[a], Math.max(1, Math.ceil(shape[a] / (target[a] / spacing[a]) - 1e-9)));
  };
  whole([7, 100, 61], [1, 1, 1], [1, 1.81, 4]);
  whole([10, 37, 50], [1.5, 0.684, 0.684], [2.71, 1.39, 1.39]);
  checkLowTiling([7, 100, 61], [1, 1, 1], [1, 1.81, 4], [3, 16, 16]);
  checkLowTiling([7, 100, 61], [1, 1, 1], [1, 1.81, 4], [2, 7, 9]);
  checkLowTiling([10, 37, 50], [1.5, 0.684, 0.684], [2.71, 1.39, 1.39], [4, 8, 8]);
  checkLowTiling([9, 50, 51], [40, 4, 4], [40, 16, 16], [4, 16, 16]);
  checkLowTiling([9, 50, 51], [40, 4, 4], [80, 16, 16], [3, 5, 6]);
  // ROIs: the chunks' low boxes tile the ROI's low box.
  checkLowTiling([7, 100, 61], [1, 1, 1], [1, 1.81, 4], [3, 16, 16], box([1, 13, 5], [6, 77, 61]));
  checkLowTiling([10, 37, 50], [1.5, 0.684, 0.684], [2.71, 1.39, 1.39], [4, 8, 8], box([2, 3, 4], [10, 30, 41]));
});

async function lowSource(dir: string, shape: Vec3, pad: 'constant' | 'mirror', padValue: number) {
  const img = path.join(dir, `low-${pad}.zarr`);
  await createGroup(img, multiscalesAttrs('low', 'nanometer', [[1, 1, 1]]));
  const va = await createArray(path.join(img, '0'), { shape, chunks: [2, 16, 16], dtype: 'float32' });
  const data = pattern('float32', shape);
  await writeRegion(va, boxOfShape(shape), data);
  const src = source(await openImage(img), pad, padValue);
  const g = lowGrid(src, [1, 4, 4]);
  return { src, g, data };
}

test('readLow with a factor-4 leftover equals downsampleMean of the full-resolution volume', async (t) => {
  const dir = tmpDir(t);
  const shape: Vec3 = [5, 37, 50]; // not divisible by 4: partial blocks at the far edge
  const { src, g, data } = await lowSource(dir, shape, 'constant', -5);
  assert.deepEqual(g.rest, [1, 4, 4]);
  assert.deepEqual(g.factor, [1, 4, 4]);
  assert.deepEqual(g.shape, [5, 10, 13]);
  const fullLow = downsampleMean(data, [1, 4, 4]);
  assert.deepEqual(fullLow.shape, g.shape);
  for (const region of [boxOfShape(g.shape), box([1, 2, 3], [4, 10, 13]), box([0, 0, 0], [2, 3, 4]), box([2, 5, 1], [3, 9, 12])]) {
    const got = await readLow(src, g, region);
    assert.deepEqual(got.shape, shapeOf(region));
    const want = crop(fullLow, [0, 0, 0], region);
    for (let i = 0; i < want.data.length; i++) {
      assert.ok(Math.abs(got.data[i] - want.data[i]) <= 1e-3, `${boxToString(region)}[${i}]: ${got.data[i]} vs ${want.data[i]}`);
    }
  }
  // Outside the low-res volume: constant padding with padValue.
  const region = box([-1, -2, 11], [2, 3, 15]);
  const got = await readLow(src, g, region);
  const want = expectedRead(fullLow, region, 'constant', -5);
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got.data[i] - want[i]) <= 1e-3, `padded [${i}]: ${got.data[i]} vs ${want[i]}`);
  // readFull reads the full resolution with the source's padding.
  const ff = await readFull(src, box([-1, 0, 0], [1, 2, 2]));
  assert.deepEqual(Array.from(ff.data), expectedRead(data, box([-1, 0, 0], [1, 2, 2]), 'constant', -5));
});

test('readLow: mirror padding reflects about the low-res volume (small halo)', async (t) => {
  const dir = tmpDir(t);
  const { src, g, data } = await lowSource(dir, [5, 37, 50], 'mirror', 0);
  const fullLow = downsampleMean(data, [1, 4, 4]);
  const region = box([-1, -2, 10], [3, 4, 15]); // 2 low voxels past the far x edge (13)
  const got = await readLow(src, g, region);
  const want = expectedRead(fullLow, region, 'mirror', 0);
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got.data[i] - want[i]) <= 1e-3, `[${i}]: ${got.data[i]} vs ${want[i]}`);
});

test('readLow: mirror padding reflects about the low-res volume (halo larger than the overlap)', async (t) => {
  const dir = tmpDir(t);
  const { src, g, data } = await lowSource(dir, [5, 37, 50], 'mirror', 0);
  const fullLow = downsampleMean(data, [1, 4, 4]);
  const region = box([0, -6, 0], [2, 2, 3]);
  const got = await readLow(src, g, region);
  const want = expectedRead(fullLow, region, 'mirror', 0);
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got.data[i] - want[i]) <= 1e-3, `[${i}]: ${got.data[i]} vs ${want[i]}`);
});

test('readLow: a matching pyramid level is read directly; a finer one is averaged on the fly', async (t) => {
  const dir = tmpDir(t);
  const { img, data } = await makePyramid(dir, 'pyr.zarr');
  const src = source(await openImage(img), 'constant', 0);
  const exact = lowGrid(src, [40, 16, 16]);
  assert.equal(exact.level.key, '2');
  assert.deepEqual(exact.rest, [1, 1, 1]);
  assert.deepEqual(exact.factor, [1, 4, 4]);
  const r = box([1, 2, 1], [3, 8, 6]);
  assert.deepEqual(Array.from((await readLow(src, exact, r)).data), expectedRead(data[2], r, 'constant', 0));
  const coarser = lowGrid(src, [40, 32, 32]);
  assert.equal(coarser.level.key, '2');
  assert.deepEqual(coarser.rest, [1, 2, 2]);
  const want = downsampleMean(data[2], [1, 2, 2]);
  const got = await readLow(src, coarser, boxOfShape(coarser.shape));
  assert.deepEqual(got.shape, want.shape);
  for (let i = 0; i < want.data.length; i++) assert.ok(Math.abs(got.data[i] - want.data[i]) <= 1e-3);
});

test('padTo: returns the input when have = want, pads constant or reflects otherwise', () => {
  const a = array3(Float32Array.from([1, 2, 3]), [1, 1, 3]);
  assert.equal(padTo(a, box([0, 0, 4], [1, 1, 7]), box([0, 0, 4], [1, 1, 7]), 'constant', 0), a);
  assert.deepEqual(Array.from(padTo(a, box([0, 0, 4], [1, 1, 7]), box([0, 0, 2], [1, 1, 9]), 'constant', 9).data), [9, 9, 1, 2, 3, 9, 9]);
  assert.deepEqual(Array.from(padTo(a, box([0, 0, 4], [1, 1, 7]), box([0, 0, 2], [1, 1, 9]), 'mirror', 0).data), [3, 2, 1, 2, 3, 2, 1]);
});

test('writeSynth --shard: a Zarr v3 (NGFF 0.5) input with small inner chunks holds the same voxels at every level as the v2 layout, and reads decode inner chunks only', async (t) => {
  const dir = tmpDir(t);
  const shape: Vec3 = [12, 72, 80];
  const v2 = path.join(dir, 'v2.zarr');
  const v3 = path.join(dir, 'v3.zarr');
  await writeSynth({ kind: 'em', shape, seed: 3, out: v2, chunks: [4, 16, 16] });
  await writeSynth({ kind: 'em', shape, seed: 3, out: v3, chunks: [2, 4, 4], shard: [4, 32, 32] });
  assert.ok(fs.existsSync(path.join(v3, 'zarr.json')) && !fs.existsSync(path.join(v3, '.zgroup')));
  const [a, b] = [await openImage(v2), await openImage(v3)];
  assert.deepEqual(b.levels.map((l) => l.spacing), a.levels.map((l) => l.spacing));
  assert.deepEqual(b.levels.map((l) => l.array.shard), [[4, 32, 32], [4, 16, 16], [4, 8, 8]]);
  for (let k = 0; k < a.levels.length; k++) {
    const all = boxOfShape(a.levels[k].array.shape);
    assert.deepEqual(Buffer.from((await readRegion(b.levels[k].array, all)).data.buffer), Buffer.from((await readRegion(a.levels[k].array, all)).data.buffer), `level ${k}`);
  }
  const gt = (p: string) => openArray(path.join(p, 'labels', 'gt', '0'));
  assert.deepEqual((await readRegion(await gt(v3), boxOfShape(shape))).data, (await readRegion(await gt(v2), boxOfShape(shape))).data);
  // The decoded unit is the inner chunk: a 2×4×4 read inside one inner chunk decodes 32 voxels.
  const reader = cachedReader(source(b, 'constant', 0), new Lru(1 << 20));
  await reader.read(box([2, 8, 8], [4, 12, 12]));
  assert.equal(reader.decoded(), 32);
  assert.equal(reader.needed(), 32);
  // Overlapping reads: what is needed counts distinct voxels, what is decoded counts chunks once.
  await reader.read(box([2, 8, 8], [4, 12, 12]));
  await reader.read(box([2, 10, 10], [4, 14, 14]));
  assert.equal(reader.needed(), 32 + 2 * (16 - 4));
  assert.equal(reader.decoded(), 4 * 32);
  await assert.rejects(writeSynth({ kind: 'em', shape, seed: 3, out: path.join(dir, 'bad.zarr'), chunks: [4, 16, 16], shard: [4, 32, 32] }), /must be a multiple of the inner chunk/);
});

test('uint64 ids: a chunk-aligned write keeps every id bit for bit, leaves all-zero storage chunks without a file, and tells 2^32 from 0', async () => {
  const dir = tmpDir(undefined, "tessera-uint64-");
  try {
    const a = await createArray(path.join(dir, 'ids.zarr', 'a'), { shape: [2, 8, 8], chunks: [1, 4, 4], dtype: 'uint64' });
    const ids = new BigUint64Array(2 * 8 * 8);
    // Only the high word set (2^32), only the low word set, and a FAFB-sized id, each in its own storage chunk.
    ids[0] = 2n ** 32n;
    ids[1 * 64 + 5] = 7n;
    ids[1 * 64 + 4 * 8 + 6] = 8_000_000_000_000_123n;
    await writeRegion(a, boxOfShape([2, 8, 8]), array3(ids as unknown as Uint32Array, [2, 8, 8]));
    const back = (await readRegion(a, boxOfShape([2, 8, 8]))).data as unknown as BigUint64Array;
    assert.deepEqual(Array.from(back), Array.from(ids));
    // Three of the eight storage chunks hold an id; the rest are all fill and get no file.
    assert.equal(listFiles(path.join(dir, 'ids.zarr', 'a')).filter((f) => !f.startsWith('.')).length, 3);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
