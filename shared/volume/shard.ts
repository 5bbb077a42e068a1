// Zarr v3 arrays with the sharding_indexed codec: one file per shard (a processing region), small
// inner chunks inside it for viewers. At whole-brain scale one file per storage chunk would be
// 10^8–10^9 files. zarrita reads such arrays but cannot write them; this module writes them.
//
// A shard file is the encoded non-fill inner chunks, back to back in C order of their position
// in the shard, followed by the index: (offset, nbytes) as little-endian uint64 for every inner
// chunk in C order, (2^64-1, 2^64-1) for a chunk left out because it is all fill value, then the
// crc32c of the index. The index sits at the end because zarrita only ever reads it as a suffix.
import * as zarr from 'zarrita';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Box, type Vec3, box, boxOfShape, boxToString, equals, intersect, isEmpty, shapeOf } from '../geometry/box.ts';
import { type Array3, array3, crop } from '../array/array3.ts';
import { type DType, type TypedArray, allocate, dtypeOf } from './dtype.ts';
import { type ChunkEncoder, type CodecMeta, chunkEncoder, fillWith, isAllFill, isFillRegion, isLittleBytes, keyEncoder, parseFill, sliceChunk } from './encode.ts';
import { type AtomicFileStore, writeJsonAtomic } from './store.ts';
import { OutputError } from '../errors.ts';
import { type IoOptions, type VolumeArray, fileArray, openArray } from './zarr.ts';

type ZArray = zarr.Array<zarr.DataType, AtomicFileStore>;

export type ShardCompression = 'zstd' | 'blosc' | 'none';

export interface CreateShardedArrayOptions {
  shape: Vec3;
  /** Shard shape: the unit of writing, one file each. */
  shard: Vec3;
  /** Inner chunk shape: the unit of reading; divides `shard` on every axis. */
  chunks: Vec3;
  dtype: DType;
  /** Inner chunk compressor. @default 'zstd' (level 3) */
  compression?: ShardCompression;
  attributes?: Record<string, unknown>;
  /** @default ['z', 'y', 'x']; null writes none. */
  dimensionNames?: readonly [string, string, string] | null;
}

// ---------------------------------------------------------------- crc32c

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli), as the Zarr v3 crc32c codec stores it. */
export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC32C_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function withCrc32c(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length + 4);
  out.set(bytes);
  new DataView(out.buffer).setUint32(bytes.length, crc32c(bytes), true);
  return out;
}

/**
 * zarrita's crc32c cannot encode and drops the checksum unread on decode, so a torn or corrupt
 * shard index would read as wrong offsets (garbage data or zeros). This one encodes and checks.
 */
class Crc32cCodec {
  readonly kind = 'bytes_to_bytes';
  static fromConfig(): Crc32cCodec {
    return new Crc32cCodec();
  }
  encode(bytes: Uint8Array): Uint8Array {
    return withCrc32c(bytes);
  }
  decode(bytes: Uint8Array): Uint8Array {
    if (bytes.length < 4) throw new Error(`corrupt data: ${bytes.length} bytes, shorter than its crc32c checksum`);
    const body = bytes.subarray(0, bytes.length - 4);
    const stored = new DataView(bytes.buffer, bytes.byteOffset + body.length, 4).getUint32(0, true);
    const actual = crc32c(body);
    if (stored !== actual) {
      throw new Error(`corrupt data: crc32c checksum mismatch (stored ${stored.toString(16)}, computed ${actual.toString(16)})`);
    }
    return body;
  }
  computeEncodedSize(decodedSize: number): number {
    return decodedSize + 4;
  }
}

(zarr.registry as unknown as Map<string, () => unknown>).set('crc32c', () => Crc32cCodec);

// ---------------------------------------------------------------- metadata

interface ShardingConfig {
  chunk_shape: number[];
  codecs: CodecMeta[];
  index_codecs: CodecMeta[];
  index_location?: string;
}

interface Layout {
  /** The array's zarr.json, as zarrita takes it. */
  meta: zarr.ArrayMetadata;
  shard: Vec3;
  chunks: Vec3;
  config: ShardingConfig;
  /** Built on the first write: a read-only opener never needs (or fails on) the encoders. */
  writer?: Promise<Writer>;
}

const layouts = new WeakMap<object, Promise<Layout | undefined>>();

/** The array's sharding layout; undefined for v2 and unsharded v3 arrays. Cached per array. */
function layoutOf(arr: ZArray): Promise<Layout | undefined> {
  let p = layouts.get(arr);
  if (!p) {
    // Through the store (a directory, or a URL for a remote input): v3 metadata is zarr.json.
    p = readLayout(arr.store as zarr.AsyncReadable, `${arr.path.replace(/\/+$/, '')}/zarr.json` as `/${string}`);
    layouts.set(arr, p);
  }
  return p;
}

async function readLayout(store: zarr.AsyncReadable, key: `/${string}`): Promise<Layout | undefined> {
  let meta: zarr.ArrayMetadata;
  try {
    meta = JSON.parse(new TextDecoder().decode(await store.get(key))) as zarr.ArrayMetadata;
  } catch {
    return undefined; // a v2 array: zarrita opened it from .zarray
  }
  if (meta.zarr_format !== 3 || meta.node_type !== 'array' || !Array.isArray(meta.codecs)) return undefined;
  const codec = meta.codecs.find((c) => c.name === 'sharding_indexed');
  if (!codec) return undefined;
  const config = codec.configuration as unknown as ShardingConfig;
  return {
    meta,
    shard: meta.chunk_grid.configuration.chunk_shape as unknown as Vec3,
    chunks: config.chunk_shape as unknown as Vec3,
    config,
  };
}

/** The shard shape of a sharding_indexed array, undefined otherwise (what openArray reports). */
export async function shardShapeOf(arr: ZArray): Promise<Vec3 | undefined> {
  return (await layoutOf(arr))?.shard;
}

/**
 * A new zarrita Array over the same sharded array. zarrita caches every shard index it reads
 * for the life of an Array object and never drops it, so through one long-lived Array a shard
 * rewritten since (by us or by another worker) reads through its stale index, and the cache
 * grows with every shard touched. A fresh Array per read scopes the cache to that read.
 */
export async function uncachedArray(arr: ZArray): Promise<ZArray> {
  const layout = await layoutOf(arr);
  return layout ? new zarr.Array(arr.store, arr.path, layout.meta) as ZArray : arr;
}

// ---------------------------------------------------------------- create

/** Inner chunk codecs after `bytes`, for each compression choice. */
function compressorCodecs(compression: ShardCompression): CodecMeta[] {
  switch (compression) {
    case 'zstd':
      return [{ name: 'zstd', configuration: { level: 3, checksum: false } }];
    case 'blosc':
      // numcodecs.js always shuffles in units of 4 bytes whatever the dtype (its blosc header
      // says typesize 4), so that is the typesize this metadata states.
      return [{ name: 'blosc', configuration: { cname: 'zstd', clevel: 3, shuffle: 'shuffle', typesize: 4, blocksize: 0 } }];
    case 'none':
      return [];
  }
}

function checkShape(arrayPath: string, name: string, v: Vec3): void {
  if (v.length !== 3 || !v.every((n) => Number.isInteger(n) && n > 0)) {
    throw new OutputError(arrayPath, `${name} must be three positive integers, got [${v.join(', ')}]`);
  }
}

/**
 * Create (or overwrite the metadata of) a Zarr v3 array whose storage chunks are shards of
 * `shard`, each holding inner chunks of `chunks`, and open it.
 */
export async function createShardedArray(arrayPath: string, o: CreateShardedArrayOptions): Promise<VolumeArray> {
  checkShape(arrayPath, 'shape', o.shape);
  checkShape(arrayPath, 'shard', o.shard);
  checkShape(arrayPath, 'chunks', o.chunks);
  if (o.shard.some((s, a) => s % o.chunks[a] !== 0)) {
    throw new OutputError(arrayPath, `inner chunks ${o.chunks.join('x')} do not divide the shard ${o.shard.join('x')}`);
  }
  const names = o.dimensionNames === undefined ? ['z', 'y', 'x'] : o.dimensionNames;
  await fs.promises.mkdir(arrayPath, { recursive: true });
  await writeJsonAtomic(path.join(arrayPath, 'zarr.json'), {
    zarr_format: 3,
    node_type: 'array',
    shape: o.shape,
    data_type: o.dtype,
    chunk_grid: { name: 'regular', configuration: { chunk_shape: o.shard } },
    chunk_key_encoding: { name: 'default', configuration: { separator: '/' } },
    fill_value: 0,
    codecs: [{
      name: 'sharding_indexed',
      configuration: {
        chunk_shape: o.chunks,
        codecs: [{ name: 'bytes', configuration: { endian: 'little' } }, ...compressorCodecs(o.compression ?? 'zstd')],
        index_codecs: [{ name: 'bytes', configuration: { endian: 'little' } }, { name: 'crc32c' }],
        index_location: 'end',
      },
    }],
    attributes: o.attributes ?? {},
    ...(names ? { dimension_names: names } : {}),
  });
  return openArray(arrayPath);
}

// ---------------------------------------------------------------- encoding

interface Writer {
  dtype: DType;
  /** One element holding the fill value (its bits are what "all fill" compares). */
  fill: TypedArray;
  encodeChunk: ChunkEncoder;
  /** index_codecs after bytes: with or without a trailing crc32c. */
  indexCrc: boolean;
  shardKey(index: Vec3): string;
}

async function buildWriter(va: VolumeArray, layout: Layout): Promise<Writer> {
  const fail = (m: string): never => {
    throw new OutputError(va.path, `cannot write this sharded array: ${m}`);
  };
  const { config, meta } = layout;
  if ((config.index_location ?? 'end') !== 'end') fail(`index_location "${config.index_location}" (readers here only find an index at the end)`);
  const ic = config.index_codecs ?? [];
  const indexCrc = ic.length === 2 && ic[1].name === 'crc32c';
  if (!isLittleBytes(ic[0], 8) || !(ic.length === 1 || indexCrc)) {
    fail(`index_codecs ${ic.map((c) => c.name).join(', ')} (only bytes little-endian, optionally + crc32c)`);
  }
  return {
    dtype: va.dtype,
    fill: parseFill(va.dtype, meta.fill_value, fail),
    indexCrc,
    shardKey: keyEncoder(meta.chunk_key_encoding),
    encodeChunk: await chunkEncoder(config.codecs, va.dtype, layout.chunks, meta.fill_value, fail, { crc32c: () => new Crc32cCodec() }),
  };
}

const EMPTY = 0xffffffffffffffffn;

/**
 * The slabs of a shard, one row of inner chunks deep in z each (`depth` = the inner chunk's;
 * the last one shorter at the array's edge): `slab(z)` gives inner-chunk row z as a z, y, x array
 * of the shard's clipped y, x extent, or undefined past the array.
 */
type SlabSource = (z: number) => Promise<Array3 | undefined>;

/** The slabs of data already whole in memory: zero-copy views (a z range of a C-order array is contiguous). */
function slabsOf(data: Array3, depth: number): SlabSource {
  const plane = data.shape[1] * data.shape[2];
  return async (z) => {
    const z0 = z * depth;
    if (z0 >= data.shape[0]) return undefined;
    const d = Math.min(depth, data.shape[0] - z0);
    return array3(data.data.subarray(z0 * plane, (z0 + d) * plane) as typeof data.data, [d, data.shape[1], data.shape[2]]);
  };
}

/**
 * The bytes of one shard file, slab by slab (only one slab need be in memory: see
 * writeShardBySlabs). Inner chunks past the array's edge are encoded full-size, padded with fill,
 * as the spec has it; chunks all fill value are left out. Sequential on purpose: zarrita's
 * compressors are synchronous wasm, so concurrency would only hold more encoded chunks in memory.
 * Undefined when every inner chunk is fill (and `keepEmpty` is off).
 */
async function encodeShard(slab: SlabSource, chunks: Vec3, shard: Vec3, w: Writer, signal?: AbortSignal, keepEmpty = true): Promise<Uint8Array | undefined> {
  const per = [shard[0] / chunks[0], shard[1] / chunks[1], shard[2] / chunks[2]];
  const n = per[0] * per[1] * per[2];
  const indexBytes = new Uint8Array(16 * n);
  const index = new DataView(indexBytes.buffer);
  const parts: Uint8Array[] = [];
  let offset = 0;
  let i = 0;
  for (let z = 0; z < per[0]; z++) {
    const data = await slab(z);
    const whole = data ? boxOfShape(data.shape) : undefined;
    for (let y = 0; y < per[1]; y++) for (let x = 0; x < per[2]; x++, i++) {
      signal?.throwIfAborted();
      const cb = box([0, y * chunks[1], x * chunks[2]], [chunks[0], (y + 1) * chunks[1], (x + 1) * chunks[2]]);
      const inside = whole ? intersect(cb, whole) : undefined;
      let bytes: Uint8Array | undefined;
      if (data && inside && !isEmpty(inside) && !isFillRegion(data, inside, w.fill)) bytes = await w.encodeChunk(sliceChunk(data, cb, w.dtype, w.fill));
      if (bytes) {
        index.setBigUint64(16 * i, BigInt(offset), true);
        index.setBigUint64(16 * i + 8, BigInt(bytes.length), true);
        parts.push(bytes);
        offset += bytes.length;
      } else {
        index.setBigUint64(16 * i, EMPTY, true);
        index.setBigUint64(16 * i + 8, EMPTY, true);
      }
    }
  }
  if (!parts.length && !keepEmpty) return undefined;
  parts.push(w.indexCrc ? withCrc32c(indexBytes) : indexBytes);
  const out = new Uint8Array(offset + parts[parts.length - 1].length);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

// ---------------------------------------------------------------- writing

function shardIndexText(i: Vec3): string {
  return `shard ${i.join('/')}`;
}

/** The box of shard `i` clipped to the array; an OutputError when `i` is off the shard grid. */
function shardBox(va: VolumeArray, shard: Vec3, i: Vec3): Box {
  const ok = i.length === 3 && i.every((v, a) => Number.isInteger(v) && v >= 0 && v * shard[a] < va.shape[a]);
  if (!ok) throw new OutputError(va.path, `${shardIndexText(i)} lies outside the shard grid of ${va.shape.join('x')} in shards of ${shard.join('x')}`);
  const begin: Vec3 = [i[0] * shard[0], i[1] * shard[1], i[2] * shard[2]];
  return intersect(box(begin, [begin[0] + shard[0], begin[1] + shard[1], begin[2] + shard[2]]), boxOfShape(va.shape));
}

async function shardedLayout(va: VolumeArray): Promise<Layout> {
  const layout = await layoutOf(fileArray(va));
  if (!layout) throw new OutputError(va.path, 'not a sharded array (no sharding_indexed codec in zarr.json)');
  return layout;
}

/**
 * Write one whole shard. `data` covers the shard's box clipped to the array (edge shards are
 * partial). The file is replaced atomically (temp + rename); a shard all fill value has no file
 * (a stale one is removed; with `writeFillChunks`, an index of empty inner chunks), which readers
 * take as fill. Same data, same bytes.
 */
export async function writeShard(va: VolumeArray, shardIndex: Vec3, data: Array3, o: IoOptions = {}): Promise<void> {
  const layout = await shardedLayout(va);
  const sb = shardBox(va, layout.shard, shardIndex);
  const where = `${shardIndexText(shardIndex)} (${boxToString(sb)})`;
  const want = shapeOf(sb);
  if (data.shape.some((s, a) => s !== want[a])) {
    throw new OutputError(va.path, `${where}: data of shape ${data.shape.join('x')} does not match the shard's ${want.join('x')}`);
  }
  if (dtypeOf(data.data) !== va.dtype) {
    throw new OutputError(va.path, `${where}: data of dtype ${dtypeOf(data.data)} written to a ${va.dtype} array`);
  }
  layout.writer ??= buildWriter(va, layout);
  // A failed build is not cached: the next write reports it again.
  const w = await layout.writer.catch((err: unknown) => {
    layout.writer = undefined;
    throw err;
  });
  const arr = fileArray(va);
  const store = arr.store;
  const key = arr.resolve(w.shardKey(shardIndex)).path;
  try {
    // With writeFillChunks (an input being written) the shard keeps a file: its index, every
    // inner chunk marked empty; a missing shard would fail a run reading it by default.
    if (!o.writeFillChunks && isAllFill(data.data, w.fill)) {
      await fs.promises.rm(path.join(store.root, key), { force: true });
      return;
    }
    await store.set(key, (await encodeShard(slabsOf(data, layout.chunks[0]), layout.chunks, layout.shard, w, o.signal))!);
  } catch (cause) {
    if (o.signal?.aborted) throw cause;
    throw new OutputError(va.path, `cannot write ${where}: ${(cause as Error).message}`, { cause });
  }
}

/**
 * Write one whole shard without holding it: `paint(slab, z0)` fills each slab (one row of inner
 * chunks deep, zeroed, shard sections z0 …) and it is encoded before the next — the memory of a
 * slab, not of the shard (relabel's uint64 ids: 201 MB instead of 805 MB for a FAFB chunk). The
 * same bytes as writeShard of the whole data; no file when every voxel is fill.
 */
export async function writeShardBySlabs(va: VolumeArray, shardIndex: Vec3, paint: (slab: Array3, z0: number) => void | Promise<void>, o: IoOptions = {}): Promise<void> {
  const layout = await shardedLayout(va);
  const sb = shardBox(va, layout.shard, shardIndex);
  const where = `${shardIndexText(shardIndex)} (${boxToString(sb)})`;
  layout.writer ??= buildWriter(va, layout);
  const w = await layout.writer.catch((err: unknown) => {
    layout.writer = undefined;
    throw err;
  });
  const [D, H, W] = shapeOf(sb);
  const depth = layout.chunks[0];
  const buffer = array3(allocate(va.dtype, depth * H * W), [depth, H, W]);
  const source: SlabSource = async (z) => {
    const z0 = z * depth;
    if (z0 >= D) return undefined;
    const d = Math.min(depth, D - z0);
    const slab = d === depth ? buffer : array3(buffer.data.subarray(0, d * H * W) as typeof buffer.data, [d, H, W]);
    fillWith(slab.data, w.fill);
    await paint(slab, z0);
    return slab;
  };
  const arr = fileArray(va);
  const key = arr.resolve(w.shardKey(shardIndex)).path;
  try {
    const bytes = await encodeShard(source, layout.chunks, layout.shard, w, o.signal, !!o.writeFillChunks);
    if (bytes) await arr.store.set(key, bytes);
    else await fs.promises.rm(path.join(arr.store.root, key), { force: true });
  } catch (cause) {
    if (o.signal?.aborted) throw cause;
    throw new OutputError(va.path, `cannot write ${where}: ${(cause as Error).message}`, { cause });
  }
}

/**
 * writeRegion for a sharded array: `region` must be a union of whole shards (clipped at the
 * array's edge), each then written by writeShard, one at a time so memory stays one shard.
 */
export async function writeShardedRegion(va: VolumeArray, region: Box, data: Array3, o: IoOptions = {}): Promise<void> {
  const layout = await shardedLayout(va);
  const s = layout.shard;
  const aligned = [0, 1, 2].every((a) =>
    region.begin[a] % s[a] === 0 && (region.end[a] % s[a] === 0 || region.end[a] === va.shape[a]));
  if (!aligned) {
    throw new OutputError(va.path, `region ${boxToString(region)} is not shard-aligned: writes to a sharded array must cover whole shards of ${s.join('x')} (clipped at the array's edge ${va.shape.join('x')})`);
  }
  const rs = shapeOf(region);
  if (data.shape.some((v, a) => v !== rs[a])) {
    throw new OutputError(va.path, `region ${boxToString(region)}: data of shape ${data.shape.join('x')} does not match the region`);
  }
  const lo = region.begin.map((v, a) => v / s[a]);
  const hi = region.end.map((v, a) => Math.ceil(v / s[a]));
  for (let z = lo[0]; z < hi[0]; z++) for (let y = lo[1]; y < hi[1]; y++) for (let x = lo[2]; x < hi[2]; x++) {
    o.signal?.throwIfAborted();
    const i: Vec3 = [z, y, x];
    const sb = shardBox(va, s, i);
    await writeShard(va, i, equals(sb, region) ? data : crop(data, region.begin, sb), o);
  }
}
