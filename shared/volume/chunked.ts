// Chunk-aligned writes to an unsharded array (Zarr v2, or v3 without sharding) without
// zarrita's `set`, which copies each storage chunk through a generic strided setter and encodes
// every chunk, fill or not. Here each storage chunk is cut out by row copies and encoded with
// the array's own codecs (zarrita's, from its metadata); a chunk that is all fill value is not
// written, and a file left for it by an earlier write is removed, so what reads back is exactly
// what was written (zarrita, python zarr and neuroglancer read a missing chunk as the fill
// value). Every task writes chunk-aligned regions; anything else goes through zarrita.
import * as fs from 'node:fs';
import * as path from 'node:path';
import pLimit from 'p-limit';
import type * as zarr from 'zarrita';
import { type Box, type Vec3, box, boxOfShape, intersect } from '../geometry/box.ts';
import type { Array3 } from '../array/array3.ts';
import { type DType, type TypedArray, allocate, dtypeOf } from './dtype.ts';
import { type ChunkEncoder, type CodecMeta, chunkEncoder, isFillRegion, keyEncoder, parseFill, sliceChunk } from './encode.ts';
import { type IoOptions, type VolumeArray, fileArray } from './zarr.ts';
import { unlinkIfThere } from './store.ts';

/** How this module writes an array's chunks. */
interface Plain {
  chunks: Vec3;
  fill: TypedArray;
  encode: ChunkEncoder;
  key(c: Vec3): string;
}

/** What this module does not write (zarrita's `set` does). */
class Unsupported extends Error {}

const plains = new WeakMap<object, Promise<Plain | undefined>>();

/** `va`'s plain layout, read once per array; undefined when only zarrita's `set` writes it. */
function plainOf(va: VolumeArray): Promise<Plain | undefined> {
  const arr = fileArray(va);
  let p = plains.get(arr);
  if (!p) {
    p = readPlain(path.join(arr.store.root, arr.path), va.dtype, va.chunks).catch((err: unknown) => {
      if (err instanceof Unsupported) return undefined;
      throw err;
    });
    plains.set(arr, p);
  }
  return p;
}

const unsupported = (m: string): never => {
  throw new Unsupported(m);
};

interface V2Meta { order?: string; filters?: unknown[] | null; dtype: string; compressor?: Record<string, unknown> | null; fill_value: unknown; dimension_separator?: string }

/**
 * The codecs, fill value and chunk keys of the array in `dir`, as zarrita reads them (v2:
 * util.js v2ToV3ArrayMetadata). Filters, F order, big-endian data, a null fill value (readers
 * disagree on what a missing chunk then holds) and codecs other than bytes, blosc and zstd are
 * left to zarrita.
 */
async function readPlain(dir: string, dtype: DType, chunks: Vec3): Promise<Plain> {
  const v2 = await fs.promises.readFile(path.join(dir, '.zarray'), 'utf8').catch(() => undefined);
  let codecs: CodecMeta[];
  let fillValue: unknown;
  let key: (c: Vec3) => string;
  if (v2 !== undefined) {
    const m = JSON.parse(v2) as V2Meta;
    if ((m.order ?? 'C') !== 'C' || (m.filters?.length ?? 0) > 0 || m.dtype.startsWith('>')) unsupported('layout');
    const { id, ...configuration } = m.compressor ?? {};
    codecs = [{ name: 'bytes', configuration: { endian: 'little' } }, ...(m.compressor ? [{ name: String(id), configuration }] : [])];
    fillValue = m.fill_value;
    key = keyEncoder({ name: 'v2', configuration: { separator: (m.dimension_separator ?? '.') as '.' | '/' } });
  } else {
    const m = JSON.parse(await fs.promises.readFile(path.join(dir, 'zarr.json'), 'utf8')) as zarr.ArrayMetadata;
    codecs = m.codecs;
    fillValue = m.fill_value;
    key = keyEncoder(m.chunk_key_encoding);
  }
  if (fillValue === null) unsupported('fill_value null');
  return { chunks, fill: parseFill(dtype, fillValue, unsupported), encode: await chunkEncoder(codecs, dtype, chunks, fillValue, unsupported), key };
}

/**
 * Storage-chunk buffers kept for the next write, a few per dtype and size: a fresh one is fresh
 * pages, faulted in and zeroed on first touch (an output chunk of uint32 ids is 16 storage
 * chunks of 1 MiB), which cost more than copying into it. A buffer goes back once its file is
 * written: with no compressor the encoded bytes are the buffer itself.
 */
const slices = new Map<string, TypedArray[]>();
const SLICES_KEPT = 16;

function takeSlice(dtype: DType, chunks: Vec3): TypedArray {
  const n = chunks[0] * chunks[1] * chunks[2];
  return slices.get(`${dtype}:${n}`)?.pop() ?? allocate(dtype, n);
}

function giveSlice(dtype: DType, a: TypedArray): void {
  const key = `${dtype}:${a.length}`;
  let list = slices.get(key);
  if (!list) slices.set(key, (list = []));
  if (list.length < SLICES_KEPT) list.push(a);
}

function aligned(region: Box, chunks: Vec3, shape: Vec3): boolean {
  return [0, 1, 2].every((a) => region.begin[a] % chunks[a] === 0 && (region.end[a] % chunks[a] === 0 || region.end[a] === shape[a]));
}

/**
 * Write `data` at `region` of `va` storage chunk by storage chunk, `o.concurrency` files at a
 * time (each written atomically); false when this writer does not apply (a region not aligned
 * to storage chunks, data of another dtype, metadata only zarrita writes) and nothing was written.
 */
export async function writeChunkedRegion(va: VolumeArray, region: Box, data: Array3, o: IoOptions = {}): Promise<boolean> {
  if (!aligned(region, va.chunks, va.shape) || dtypeOf(data.data) !== va.dtype) return false;
  const plain = await plainOf(va);
  if (!plain) return false;
  const arr = fileArray(va);
  const c = plain.chunks;
  const lo = region.begin.map((v, a) => v / c[a]);
  const hi = region.end.map((v, a) => Math.ceil(v / c[a]));
  const whole = boxOfShape(data.shape);
  const limit = pLimit(o.concurrency ?? 8);
  const writes: Promise<void>[] = [];
  for (let z = lo[0]; z < hi[0]; z++) for (let y = lo[1]; y < hi[1]; y++) for (let x = lo[2]; x < hi[2]; x++) {
    const key = arr.resolve(plain.key([z, y, x])).path;
    // The storage chunk in `data`'s coordinates (full size: an edge chunk reaches past `data`).
    const begin: Vec3 = [z * c[0] - region.begin[0], y * c[1] - region.begin[1], x * c[2] - region.begin[2]];
    const cb = box(begin, [begin[0] + c[0], begin[1] + c[1], begin[2] + c[2]]);
    writes.push(limit(async () => {
      o.signal?.throwIfAborted();
      if (!o.writeFillChunks && isFillRegion(data, intersect(cb, whole), plain.fill)) {
        await unlinkIfThere(path.join(arr.store.root, key));
        return;
      }
      const slice = takeSlice(va.dtype, plain.chunks);
      try {
        await arr.store.set(key, await plain.encode(sliceChunk(data, cb, va.dtype, plain.fill, slice)));
      } finally {
        giveSlice(va.dtype, slice);
      }
    }));
  }
  // Every write settles before this returns or throws: none reads `data` after the caller has it back.
  const failed = (await Promise.allSettled(writes)).find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
  return true;
}
