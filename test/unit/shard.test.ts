import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zarr from 'zarrita';
import FileSystemStore from '@zarrita/storage/fs';
import { type Box, type Vec3, box, boxOfShape, boxToString, intersect, shapeOf } from '../../shared/geometry/box.ts';
import { type Array3, array3, crop } from '../../shared/array/array3.ts';
import { InputError, OutputError } from '../../shared/errors.ts';
import { type DType, type TypedArray, allocate } from '../../shared/volume/dtype.ts';
import { type ShardCompression, crc32c, createShardedArray, writeShard, writeShardBySlabs } from '../../shared/volume/shard.ts';
import { type VolumeArray, createArray, openArray, readRegion, writeRegion } from '../../shared/volume/zarr.ts';
import { listFiles, tmpDir } from '../helpers/tmpdir.ts';

const EMPTY = 0xffffffffffffffffn;

/** The raw bytes of a typed array (bit-for-bit comparisons: NaN, -0). */
const bytesOf = (a: TypedArray) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** A deterministic pattern without zero runs, covering each dtype's range (and float specials). */
function pattern(dtype: DType, shape: Vec3, seed = 0): Array3 {
  const n = shape[0] * shape[1] * shape[2];
  const a = allocate(dtype, n);
  for (let i = 0; i < n; i++) {
    const j = i + seed;
    if (dtype === 'uint8') a[i] = 1 + ((j * 37 + 11) % 255);
    else if (dtype === 'uint16') a[i] = 1 + ((j * 1237 + 5) % 65535);
    else if (dtype === 'uint32') a[i] = (Math.imul(j + 1, 2654435761) >>> 0) || 1;
    else a[i] = j % 97 === 0 ? NaN : j % 89 === 0 ? -0 : j % 83 === 0 ? -Infinity : Math.fround(Math.sin(j) * 1e6 + j / 7);
  }
  return array3(a, shape);
}

/** zarrita's own reader on a fresh store (no Tessera code in the read path). */
async function zarritaRead(p: string, region?: Box): Promise<TypedArray> {
  const arr = await zarr.open(zarr.root(new FileSystemStore(p)), { kind: 'array' });
  const sel = region ? [0, 1, 2].map((a) => zarr.slice(region.begin[a], region.end[a])) : null;
  return (await zarr.get(arr, sel)).data as TypedArray;
}

/** The decoded index of a shard file (offset, nbytes per inner chunk, C order); checks its crc32c. */
function readIndex(file: string, n: number): [bigint, bigint][] {
  const b = fs.readFileSync(file);
  const idx = b.subarray(b.length - (16 * n + 4));
  assert.equal(idx.readUInt32LE(16 * n), crc32c(idx.subarray(0, 16 * n)), 'index crc32c');
  return Array.from({ length: n }, (_, i) => [idx.readBigUInt64LE(16 * i), idx.readBigUInt64LE(16 * i + 8)]);
}

const SHAPE: Vec3 = [13, 21, 35]; // not divisible by the shard on any axis
const SHARD: Vec3 = [8, 16, 16];
const CHUNKS: Vec3 = [4, 8, 8];

async function makeSharded(dir: string, name: string, dtype: DType, compression?: ShardCompression, shape = SHAPE) {
  const p = path.join(dir, name);
  const va = await createShardedArray(p, { shape, shard: SHARD, chunks: CHUNKS, dtype, compression });
  return { p, va };
}

// ---------------------------------------------------------------- crc32c and metadata

test('crc32c matches the Castagnoli check value', () => {
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(0)), 0);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
});

test('createShardedArray writes v3 sharding_indexed metadata; openArray reports shard and inner chunks', async (t) => {
  const dir = tmpDir(t);
  const { p, va } = await makeSharded(dir, 'm.zarr', 'uint16', undefined);
  const meta = JSON.parse(fs.readFileSync(path.join(p, 'zarr.json'), 'utf8'));
  assert.equal(meta.zarr_format, 3);
  assert.equal(meta.node_type, 'array');
  assert.equal(meta.data_type, 'uint16');
  assert.deepEqual(meta.shape, SHAPE);
  assert.deepEqual(meta.chunk_grid, { name: 'regular', configuration: { chunk_shape: SHARD } });
  assert.deepEqual(meta.chunk_key_encoding, { name: 'default', configuration: { separator: '/' } });
  assert.equal(meta.fill_value, 0);
  assert.deepEqual(meta.dimension_names, ['z', 'y', 'x']);
  assert.deepEqual(meta.codecs, [{
    name: 'sharding_indexed',
    configuration: {
      chunk_shape: CHUNKS,
      codecs: [{ name: 'bytes', configuration: { endian: 'little' } }, { name: 'zstd', configuration: { level: 3, checksum: false } }],
      index_codecs: [{ name: 'bytes', configuration: { endian: 'little' } }, { name: 'crc32c' }],
      index_location: 'end',
    },
  }]);
  // zarrita reports the inner chunk shape as .chunks; the shard shape is ours.
  for (const v of [va, await openArray(p)]) {
    assert.deepEqual(v.shape, SHAPE);
    assert.deepEqual(v.chunks, CHUNKS);
    assert.deepEqual(v.zarr.chunks, CHUNKS);
    assert.deepEqual(v.shard, SHARD);
    assert.equal(v.dtype, 'uint16');
  }
  // v2 arrays are unchanged: no shard.
  const v2 = await createArray(path.join(dir, 'v2.zarr'), { shape: [4, 4, 4], chunks: [2, 2, 2], dtype: 'uint8' });
  assert.ok(!('shard' in v2));
  await assert.rejects(createShardedArray(path.join(dir, 'bad.zarr'), { shape: SHAPE, shard: SHARD, chunks: [3, 8, 8], dtype: 'uint8' }),
    (e: unknown) => e instanceof OutputError && e.message.includes('bad.zarr') && e.message.includes('divide'));
});

// ---------------------------------------------------------------- round trips

test('writeRegion + readRegion + zarr.get round trip bit for bit (uint8, uint16, uint32, float32; zstd, blosc, none)', async (t) => {
  const dir = tmpDir(t);
  const cases: [DType, ShardCompression | undefined][] = [
    ['uint8', undefined], ['uint16', undefined], ['uint32', undefined], ['float32', undefined],
    ['uint16', 'blosc'], ['float32', 'blosc'], ['uint8', 'none'], ['float32', 'none'],
  ];
  for (const [dtype, compression] of cases) {
    const what = `${dtype}/${compression ?? 'default'}`;
    const { p, va } = await makeSharded(dir, `${dtype}-${compression ?? 'default'}.zarr`, dtype, compression);
    const data = pattern(dtype, SHAPE);
    await writeRegion(va, boxOfShape(SHAPE), data);
    // 2 x 2 x 3 shards, one file each; no temporary files left behind.
    const files = listFiles(p).sort();
    assert.equal(files.length, 13, `${what}: ${files.join(' ')}`);
    assert.ok(files.includes(path.join('c', '1', '1', '2')));
    assert.ok(!files.some((f) => f.includes('.tmp-')));

    const all = await readRegion(await openArray(p), boxOfShape(SHAPE));
    assert.ok(all.data.constructor === data.data.constructor, what);
    assert.ok(bytesOf(all.data).equals(bytesOf(data.data)), `${what}: readRegion whole volume`);
    assert.ok(bytesOf(await zarritaRead(p)).equals(bytesOf(data.data)), `${what}: zarr.get whole volume`);
    // An unaligned region across shard and inner-chunk borders, and one reaching outside.
    const sub = box([3, 7, 14], [11, 19, 34]);
    assert.ok(bytesOf((await readRegion(va, sub)).data).equals(bytesOf(crop(data, [0, 0, 0], sub).data)), `${what}: readRegion ${boxToString(sub)}`);
    assert.ok(bytesOf(await zarritaRead(p, sub)).equals(bytesOf(crop(data, [0, 0, 0], sub).data)), `${what}: zarr.get ${boxToString(sub)}`);
    const outside = box([10, 18, 30], [16, 24, 40]);
    assert.ok(bytesOf((await readRegion(va, outside)).data).equals(bytesOf(crop(data, [0, 0, 0], outside).data)), `${what}: padded read`);
  }
});

test('writeShard: edge shards are partial; inner chunks past the edge are full-size or left out', async (t) => {
  const dir = tmpDir(t);
  const { p, va } = await makeSharded(dir, 'edge.zarr', 'uint16', 'none');
  const data = pattern('uint16', SHAPE, 5);
  for (let z = 0; z < 2; z++) for (let y = 0; y < 2; y++) for (let x = 0; x < 3; x++) {
    const sb = intersect(box([z * 8, y * 16, x * 16], [(z + 1) * 8, (y + 1) * 16, (x + 1) * 16]), boxOfShape(SHAPE));
    await writeShard(va, [z, y, x], crop(data, [0, 0, 0], sb));
  }
  assert.ok(bytesOf((await readRegion(va, boxOfShape(SHAPE))).data).equals(bytesOf(data.data)));
  assert.ok(bytesOf(await zarritaRead(p)).equals(bytesOf(data.data)));
  // Corner shard [1, 1, 2] holds voxels 8:13, 16:21, 32:35. Of its 2x2x2 inner chunks only
  // (0, 0, 0) and (1, 0, 0) reach into the array: both stored whole (raw: 4*8*8*2 bytes), the
  // rest (past the edge) left out.
  const index = readIndex(path.join(p, 'c', '1', '1', '2'), 8);
  const chunkBytes = BigInt(4 * 8 * 8 * 2);
  assert.deepEqual(index[0], [0n, chunkBytes]);
  assert.deepEqual(index[4], [chunkBytes, chunkBytes]);
  for (const i of [1, 2, 3, 5, 6, 7]) assert.deepEqual(index[i], [EMPTY, EMPTY], `inner chunk ${i}`);
  assert.equal(fs.statSync(path.join(p, 'c', '1', '1', '2')).size, 2 * 4 * 8 * 8 * 2 + 8 * 16 + 4);
});

test('inner chunks all fill value are left out (2^64-1 marker), read as 0; -0.0 is not fill', async (t) => {
  const dir = tmpDir(t);
  const shape: Vec3 = [8, 16, 16]; // one shard of 2x2x2 inner chunks
  const full = await createShardedArray(path.join(dir, 'full.zarr'), { shape, shard: shape, chunks: CHUNKS, dtype: 'float32', compression: 'none' });
  const sparse = await createShardedArray(path.join(dir, 'sparse.zarr'), { shape, shard: shape, chunks: CHUNKS, dtype: 'float32', compression: 'none' });
  const dense = pattern('float32', shape, 1);
  await writeShard(full, [0, 0, 0], dense);
  // Keep inner chunks (0,0,0) and (1,1,1) of the pattern; (0,1,0) all -0.0; the rest zero.
  const data = array3(new Float32Array(8 * 16 * 16), shape);
  for (let z = 0; z < 8; z++) for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) {
    const c = (z >> 2) * 4 + (y >> 3) * 2 + (x >> 3);
    const i = (z * 16 + y) * 16 + x;
    data.data[i] = c === 0 || c === 7 ? dense.data[i] : c === 2 ? -0 : 0;
  }
  await writeShard(sparse, [0, 0, 0], data);
  const fullFile = path.join(full.path, 'c', '0', '0', '0');
  const sparseFile = path.join(sparse.path, 'c', '0', '0', '0');
  const chunkBytes = 4 * 8 * 8 * 4;
  assert.equal(fs.statSync(fullFile).size, 8 * chunkBytes + 8 * 16 + 4);
  assert.equal(fs.statSync(sparseFile).size, 3 * chunkBytes + 8 * 16 + 4);
  const index = readIndex(sparseFile, 8);
  assert.deepEqual(index[0], [0n, BigInt(chunkBytes)]);
  assert.deepEqual(index[2], [BigInt(chunkBytes), BigInt(chunkBytes)]);
  assert.deepEqual(index[7], [BigInt(2 * chunkBytes), BigInt(chunkBytes)]);
  for (const i of [1, 3, 4, 5, 6]) assert.deepEqual(index[i], [EMPTY, EMPTY], `inner chunk ${i}`);
  const back = await readRegion(sparse, boxOfShape(shape));
  assert.ok(bytesOf(back.data).equals(bytesOf(data.data)), 'bit for bit, -0.0 included');
  assert.ok(bytesOf(await zarritaRead(sparse.path)).equals(bytesOf(data.data)));
  assert.ok(Object.is(back.data[8 * 16], -0), 'chunk (0,1,0) reads back as -0.0');
  assert.ok(Object.is(back.data[8], 0), 'chunk (0,0,1) reads back as +0');
});

test('an all-fill shard writes no file and removes a stale one; it reads as 0', async (t) => {
  const dir = tmpDir(t);
  const { p, va } = await makeSharded(dir, 'z.zarr', 'uint8');
  const sb = box([8, 0, 16], [13, 16, 32]);
  await writeShard(va, [1, 0, 1], array3(new Uint8Array(5 * 16 * 16), shapeOf(sb)));
  assert.deepEqual(listFiles(p), ['zarr.json']);
  await writeShard(va, [1, 0, 1], crop(pattern('uint8', SHAPE), [0, 0, 0], sb));
  const file = path.join(p, 'c', '1', '0', '1');
  assert.ok(fs.existsSync(file));
  assert.ok((await readRegion(va, sb)).data.some((v) => v !== 0));
  await writeShard(va, [1, 0, 1], array3(new Uint8Array(5 * 16 * 16), shapeOf(sb)));
  assert.ok(!fs.existsSync(file), 'stale shard removed');
  assert.ok((await readRegion(va, sb)).data.every((v) => v === 0));
  assert.ok((await zarritaRead(p)).every((v) => v === 0));
  // writeFillChunks (an input): the shard keeps a file, an index with every inner chunk empty.
  await writeShard(va, [1, 0, 1], array3(new Uint8Array(5 * 16 * 16), shapeOf(sb)), { writeFillChunks: true });
  assert.deepEqual(readIndex(file, 2 * 2 * 2), Array.from({ length: 8 }, () => [EMPTY, EMPTY]));
  assert.ok((await zarritaRead(p)).every((v) => v === 0));
});

// ---------------------------------------------------------------- errors

test('misaligned writes, wrong shapes, dtypes and unsharded arrays are OutputErrors naming the array', async (t) => {
  const dir = tmpDir(t);
  const { p, va } = await makeSharded(dir, 'mis.zarr', 'uint16');
  const names = (...words: string[]) => (e: unknown) => {
    assert.ok(e instanceof OutputError, String(e));
    assert.ok(e.message.includes(p), e.message);
    for (const w of words) assert.ok(e.message.includes(w), `${e.message} lacks ${w}`);
    return true;
  };
  const write = (b: Box) => writeRegion(va, b, pattern('uint16', shapeOf(b)));
  await assert.rejects(write(box([0, 0, 0], [4, 16, 16])), names('shard-aligned', '8x16x16')); // half a shard in z
  await assert.rejects(write(box([0, 8, 0], [8, 21, 16])), names('shard-aligned')); // begins mid-shard
  await assert.rejects(write(box([0, 0, 0], [8, 16, 20])), names('shard-aligned')); // ends mid-shard, not at the edge
  assert.deepEqual(listFiles(p), ['zarr.json'], 'nothing written');
  // Aligned at the array's edge is fine.
  await write(box([8, 16, 32], [13, 21, 35]));
  assert.deepEqual(listFiles(p).sort(), [path.join('c', '1', '1', '2'), 'zarr.json']);

  await assert.rejects(writeShard(va, [1, 1, 2], pattern('uint16', SHARD)), names('shard 1/1/2', '5x5x3', '8x16x16'));
  await assert.rejects(writeShard(va, [2, 0, 0], pattern('uint16', SHARD)), names('shard 2/0/0', 'outside'));
  await assert.rejects(writeShard(va, [0, 0, 0], pattern('float32', SHARD)), names('shard 0/0/0', 'float32'));
  await assert.rejects(writeRegion(va, box([0, 0, 0], [8, 16, 16]), pattern('uint16', [8, 16, 8])), names('does not match'));
  const v2 = await createArray(path.join(dir, 'v2.zarr'), { shape: [8, 8, 8], chunks: [4, 4, 4], dtype: 'uint8' });
  await assert.rejects(writeShard(v2, [0, 0, 0], pattern('uint8', [8, 8, 8])),
    (e: unknown) => e instanceof OutputError && e.message.includes(v2.path) && e.message.includes('not a sharded array'));
});

test('a corrupt shard index is an InputError naming the array and the shard', async (t) => {
  const dir = tmpDir(t);
  const { p, va } = await makeSharded(dir, 'bad.zarr', 'uint16');
  await writeRegion(va, boxOfShape(SHAPE), pattern('uint16', SHAPE));
  const file = path.join(p, 'c', '0', '1', '0');
  const b = fs.readFileSync(file);
  b[b.length - 20] ^= 0x01; // in the index: the crc32c no longer matches
  fs.writeFileSync(file, b);
  await assert.rejects(readRegion(va, box([0, 16, 0], [8, 21, 16])), (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.ok(e.message.includes(p) && e.message.includes('c/0/1/0'), e.message);
    return true;
  });
  // Other shards still read.
  await readRegion(va, box([0, 0, 0], [8, 16, 16]));
});

// ---------------------------------------------------------------- rewrites, determinism

test('writing twice replaces the shard: no stale data through the same or a fresh reader', async (t) => {
  const dir = tmpDir(t);
  const { p, va } = await makeSharded(dir, 'twice.zarr', 'uint32');
  const a = pattern('uint32', SHAPE, 1);
  await writeRegion(va, boxOfShape(SHAPE), a);
  assert.ok(bytesOf((await readRegion(va, boxOfShape(SHAPE))).data).equals(bytesOf(a.data)));
  // B: different values, and zero in a slab, so that inner chunks move within the shard files.
  const b = pattern('uint32', SHAPE, 12345);
  b.data.fill(0, 0, 4 * SHAPE[1] * SHAPE[2]);
  await writeRegion(va, boxOfShape(SHAPE), b);
  assert.ok(bytesOf((await readRegion(va, boxOfShape(SHAPE))).data).equals(bytesOf(b.data)), 'same VolumeArray');
  assert.ok(bytesOf((await readRegion(await openArray(p), boxOfShape(SHAPE))).data).equals(bytesOf(b.data)), 'reopened');
  assert.ok(bytesOf(await zarritaRead(p)).equals(bytesOf(b.data)), 'zarr.get');
  assert.ok(!listFiles(p).some((f) => f.includes('.tmp-')));
});

test('encoding is deterministic: the same data gives identical shard files', async (t) => {
  const dir = tmpDir(t);
  for (const compression of ['zstd', 'blosc', 'none'] as ShardCompression[]) {
    const data = pattern('float32', SHAPE, 7);
    const arrays: VolumeArray[] = [];
    for (const name of ['one', 'two']) {
      const { va } = await makeSharded(dir, `${name}-${compression}.zarr`, 'float32', compression);
      await writeRegion(va, boxOfShape(SHAPE), data);
      arrays.push(va);
    }
    const files = listFiles(arrays[0].path).filter((f) => f !== 'zarr.json').sort();
    assert.equal(files.length, 12);
    const snapshot = files.map((f) => fs.readFileSync(path.join(arrays[0].path, f)));
    files.forEach((f, i) => assert.ok(fs.readFileSync(path.join(arrays[1].path, f)).equals(snapshot[i]), `${compression} ${f}`));
    // Rewriting the same data gives the same bytes again.
    await writeRegion(arrays[0], boxOfShape(SHAPE), data);
    files.forEach((f, i) => assert.ok(fs.readFileSync(path.join(arrays[0].path, f)).equals(snapshot[i]), `${compression} rewrite ${f}`));
  }
});

test('writeShardBySlabs: slab after slab (edge shards too) gives the very bytes writeShard gives for the whole; all fill → no file', async (t) => {
  const dir = tmpDir(t);
  for (const dtype of ['uint32', 'uint64'] as const) {
    const a = await makeSharded(dir, `whole-${dtype}.zarr`, dtype, 'zstd');
    const b = await makeSharded(dir, `slabs-${dtype}.zarr`, dtype, 'zstd');
    const data = pattern(dtype === 'uint64' ? 'uint32' : dtype, SHAPE, 3);
    const full = dtype === 'uint64' ? array3(BigUint64Array.from(data.data as Uint32Array, (v) => BigInt(v) * 2n ** 32n + 7n) as unknown as TypedArray, SHAPE) : data;
    for (let z = 0; z < 2; z++) for (let y = 0; y < 2; y++) for (let x = 0; x < 3; x++) {
      const sb = intersect(box([z * 8, y * 16, x * 16], [(z + 1) * 8, (y + 1) * 16, (x + 1) * 16]), boxOfShape(SHAPE));
      const part = crop(full, [0, 0, 0], sb);
      await writeShard(a.va, [z, y, x], part);
      const plane = part.shape[1] * part.shape[2];
      const seen: number[] = [];
      await writeShardBySlabs(b.va, [z, y, x], (slab, z0) => {
        seen.push(z0);
        slab.data.set(part.data.subarray(z0 * plane, z0 * plane + slab.data.length) as never);
      });
      assert.deepEqual(seen, Array.from({ length: Math.ceil(part.shape[0] / CHUNKS[0]) }, (_, k) => k * CHUNKS[0]), 'one call per inner-chunk row');
    }
    const fa = listFiles(a.p).filter((f) => f.startsWith(`c${path.sep}`));
    assert.equal(fa.length, 12, 'every shard has a file');
    for (const f of fa) assert.ok(fs.readFileSync(path.join(a.p, f)).equals(fs.readFileSync(path.join(b.p, f))), `${dtype} ${f}`);
  }
  const e = await makeSharded(dir, 'empty.zarr', 'uint64', 'zstd');
  await writeShardBySlabs(e.va, [0, 0, 0], () => undefined);
  assert.ok(!fs.existsSync(path.join(e.p, 'c', '0', '0', '0')), 'no file for an all-fill shard');
});

test('an input shard with no file is a missing chunk as a v2 chunk file is: missing "fail" names it, "fill" reads the fill value and counts it', async (t) => {
  const dir = tmpDir(t);
  const p = path.join(dir, 'in.zarr');
  const va = await createShardedArray(p, { shape: [8, 32, 32], shard: [8, 16, 16], chunks: [4, 8, 8], dtype: 'uint8' });
  await writeRegion(va, boxOfShape(va.shape), pattern('uint8', va.shape));
  fs.rmSync(path.join(p, 'c', '0', '1', '0'));
  await assert.rejects(readRegion(await openArray(p, { missing: 'fail' }), box([0, 16, 0], [8, 32, 16])),
    (err: Error) => err instanceof InputError && /storage chunk c\/0\/1\/0 is missing/.test(err.message));
  const counter = { missing: 0 };
  const got = await readRegion(await openArray(p, { missing: 'fill', counter }), box([0, 16, 0], [8, 32, 16]));
  assert.ok(got.data.every((v) => v === 0));
  assert.equal(counter.missing, 1);
});
