// Blosc frames with zstd by node:zlib (shared/volume/zstd.ts) against numcodecs' Blosc (c-blosc
// in WebAssembly), and Zarr's zstd codec against numcodecs' Zstd: each reads what the other
// writes, byte for byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Blosc from 'numcodecs/blosc';
import Zstd from 'numcodecs/zstd';
import { bloscZstdDecode, bloscZstdEncode, zstdDecode, zstdEncode } from '../../shared/volume/zstd.ts';
import { randInt, rng } from '../helpers/rng.ts';
import { hasPython } from '../helpers/cli.ts';
import { execFileSync } from 'node:child_process';

/** A sparse chunk of `n` elements of `size` bytes: background with a few runs of ids. */
function sparse(r: () => number, n: number, size: number): Uint8Array {
  const b = new Uint8Array(n * size);
  for (let k = randInt(r, 0, 12); k > 0; k--) {
    const at = randInt(r, 0, n), len = randInt(r, 1, 40);
    for (let i = at; i < Math.min(n, at + len); i++) for (let j = 0; j < size; j++) b[i * size + j] = (k * 37 + j * 11) & 0xff;
  }
  return b;
}

test('blosc/zstd frames: numcodecs decodes ours and we decode ours to the same bytes, shuffled or not, any item size; noise is stored', async () => {
  const r = rng(5);
  const numcodecs = Blosc.fromConfig({ cname: 'zstd', clevel: 3, shuffle: 1, blocksize: 0 });
  for (let t = 0; t < 40; t++) {
    const size = [1, 2, 4, 8][t % 4];
    const n = randInt(r, 1, 5000);
    // Every eighth chunk is noise: it does not compress and is written as a stored frame.
    const bytes = t % 8 === 7 ? Uint8Array.from({ length: n * size }, () => randInt(r, 0, 256)) : sparse(r, n, size);
    const frame = bloscZstdEncode(bytes, size, 3, t % 3 !== 0);
    assert.ok(t % 8 === 7 ? frame.length === bytes.length + 16 : frame.length < bytes.length + 16, `case ${t}: ${frame.length} bytes for ${bytes.length}`);
    assert.deepEqual(bloscZstdDecode(frame), bytes, `case ${t}: ours`);
    assert.deepEqual(new Uint8Array(await numcodecs.decode(frame)), bytes, `case ${t}: numcodecs`);
  }
});

test('blosc frames by numcodecs: zstd ones decoded here equal numcodecs\' own decoding; lz4 ones are left to numcodecs (undefined)', async () => {
  const r = rng(6);
  for (let t = 0; t < 10; t++) {
    const bytes = sparse(r, randInt(r, 100, 300_000), 1);
    const zstd = await Blosc.fromConfig({ cname: 'zstd', clevel: 5, shuffle: 1, blocksize: 0 }).encode(bytes);
    assert.deepEqual(bloscZstdDecode(zstd), bytes, `case ${t}: numcodecs' zstd frame`);
    const lz4 = await Blosc.fromConfig({ cname: 'lz4', clevel: 5, shuffle: 1, blocksize: 0 }).encode(bytes);
    assert.equal(lz4[2] & 0x2, 0, `case ${t}: the lz4 frame is compressed, not stored`);
    assert.equal(bloscZstdDecode(lz4), undefined, `case ${t}: lz4 frame`);
  }
});

test('blosc/zstd frames: a truncated or padded frame is refused, not read as zeros', () => {
  const bytes = sparse(rng(7), 4096, 4);
  const frame = bloscZstdEncode(bytes, 4, 3, true);
  assert.throws(() => bloscZstdDecode(frame.subarray(0, frame.length - 5)), /corrupt blosc chunk/);
  const padded = new Uint8Array(frame.length + 3);
  padded.set(frame);
  assert.throws(() => bloscZstdDecode(padded), /corrupt blosc chunk/);
  // A stream whose size field lies: zstd refuses, or the length check does.
  const bad = frame.slice();
  new DataView(bad.buffer).setUint32(20, frame.length - 24 - 1, true);
  assert.throws(() => bloscZstdDecode(bad));
});

test('zstd codec: numcodecs reads our frames (with and without checksum) and we read numcodecs\' frames', async () => {
  const r = rng(8);
  const numcodecs = Zstd.fromConfig({ level: 3 });
  for (let t = 0; t < 12; t++) {
    const bytes = sparse(r, randInt(r, 1, 70_000), [1, 4, 8][t % 3]);
    const ours = zstdEncode(bytes, 3, t % 2 === 0);
    assert.deepEqual(new Uint8Array(await numcodecs.decode(ours)), bytes, `case ${t}: numcodecs reads ours`);
    assert.deepEqual(new Uint8Array(zstdDecode(new Uint8Array(await numcodecs.encode(bytes)))), bytes, `case ${t}: we read numcodecs'`);
  }
  assert.throws(() => zstdDecode(Uint8Array.from([1, 2, 3, 4, 5])));
});

// c-blosc itself (python's numcodecs, which .ci/run installs with python3-zarr): frames of several
// blocks, shuffled by the item size, as zarr-python writes them — each decoded here to its bytes.
test('blosc/zstd frames written by c-blosc (numcodecs in python): several blocks, item sizes 1–8, shuffled or not, read here', { skip: !hasPython('numcodecs') }, () => {
  const py = `
import sys, json, numpy as np
from numcodecs import Blosc
rng = np.random.default_rng(3)
out = []
for dt, shuf in [('uint8', 1), ('uint16', 0), ('uint32', 1), ('float32', 1), ('uint64', 1)]:
    a = np.zeros(100000, dtype=dt); i = rng.integers(0, len(a), 2000); a[i] = rng.integers(1, 1000, 2000).astype(dt)
    for bs in (0, 16384):
        out.append([dt, bs, Blosc(cname='zstd', clevel=5, shuffle=shuf, blocksize=bs).encode(a).hex(), a.tobytes().hex()])
json.dump(out, sys.stdout)
`;
  const cases = JSON.parse(execFileSync('/usr/bin/python3', ['-c', py], { encoding: 'utf8', maxBuffer: 1 << 28 })) as [string, number, string, string][];
  assert.equal(cases.length, 10);
  for (const [dt, bs, frame, raw] of cases) {
    const got = bloscZstdDecode(Buffer.from(frame, 'hex'));
    assert.ok(got, `${dt} blocksize ${bs}: decoded here, not left to numcodecs`);
    assert.ok(Buffer.from(got).equals(Buffer.from(raw, 'hex')), `${dt} blocksize ${bs}`);
  }
});
