// Encoding storage chunks ourselves, for the two writers that bypass zarrita's `set`: the shard
// writer (zarrita cannot write shards) and the chunk-aligned writer (zarrita's `set` copies
// through a generic strided setter and encodes every chunk, fill or not). The codecs are
// zarrita's own, from its registry, built from the array's metadata, so a chunk written here
// decodes exactly as one zarrita wrote.
import * as zarr from 'zarrita';
import { type Box, type Vec3, boxOfShape, contains, shapeOf } from '../geometry/box.ts';
import { type Array3, array3, copyRegion } from '../array/array3.ts';
import { type DType, type TypedArray, allocate } from './dtype.ts';

export type CodecMeta = zarr.CodecMetadata;

type ByteCodec = { encode(x: unknown): Uint8Array | Promise<Uint8Array> };
type CodecClass = { fromConfig(config: unknown, meta: unknown): ByteCodec };

/** Encodes one whole storage chunk (C order, the chunk's full shape) to its stored bytes. */
export type ChunkEncoder = (chunk: TypedArray) => Promise<Uint8Array>;

/**
 * The codec of `meta` from zarrita's registry. `own`: codecs that zarrita's registry cannot
 * encode with and that the caller provides (the shard index's crc32c).
 */
async function registered(meta: CodecMeta, chunkMeta: unknown, fail: (m: string) => never, own: Record<string, () => ByteCodec>): Promise<ByteCodec> {
  if (own[meta.name]) return own[meta.name]();
  const load = (zarr.registry as unknown as Map<string, () => Promise<CodecClass> | CodecClass>).get(meta.name);
  if (!load || !['bytes', 'zstd', 'blosc'].includes(meta.name)) fail(`cannot write codec "${meta.name}"`);
  let config = meta.configuration;
  if (meta.name === 'blosc') {
    // v3 names the shuffle; numcodecs.js takes the numeric mode of the v2 form.
    const c = (config ?? {}) as { shuffle?: unknown };
    const shuffle = ({ noshuffle: 0, shuffle: 1, bitshuffle: 2 } as Record<string, number>)[String(c.shuffle ?? 'noshuffle')] ?? c.shuffle;
    config = { ...c, shuffle } as typeof config;
  }
  return (await load!()).fromConfig(config, chunkMeta);
}

export function isLittleBytes(meta: CodecMeta | undefined, itemSize: number): boolean {
  if (meta?.name !== 'bytes') return false;
  const endian = (meta.configuration as { endian?: string } | undefined)?.endian;
  return endian === 'little' || (endian === undefined && itemSize === 1);
}

/**
 * The encoder of a chunk of `chunks` through `codecs` (the first must be `bytes`, little-endian;
 * then any of blosc and zstd). `fail` reports what cannot be written (it throws).
 */
export async function chunkEncoder(
  codecs: readonly CodecMeta[], dtype: DType, chunks: Vec3, fillValue: unknown, fail: (m: string) => never,
  own: Record<string, () => ByteCodec> = {},
): Promise<ChunkEncoder> {
  const item = allocate(dtype, 0).BYTES_PER_ELEMENT;
  if (!isLittleBytes(codecs[0], item)) fail(`chunk codecs must start with bytes (little-endian), got ${codecs[0]?.name}`);
  const chunkMeta = { dataType: dtype, shape: [...chunks], codecs, fillValue };
  const built = await Promise.all(codecs.map((c) => registered(c, chunkMeta, fail, own)));
  const stride = [chunks[1] * chunks[2], chunks[2], 1];
  return async (chunk) => {
    // zarrita's bytes codec views chunk.buffer whole: chunks here always own their buffer.
    let bytes = await built[0].encode({ data: chunk, shape: chunkMeta.shape, stride });
    for (let i = 1; i < built.length; i++) bytes = await built[i].encode(bytes);
    return bytes;
  };
}

/** One element holding the array's fill value (its bits are what "all fill" compares). */
export function parseFill(dtype: DType, v: unknown, fail: (m: string) => never): TypedArray {
  const f = allocate(dtype, 1);
  if (v === null || v === undefined || v === 0) return f;
  if (typeof v === 'number') f[0] = v;
  else if (v === 'NaN' || v === 'Infinity' || v === '-Infinity') f[0] = Number(v);
  else if (typeof v === 'string' && /^0x[0-9a-f]+$/i.test(v)) {
    // A float's exact bits, little-endian like every buffer here.
    let bits = BigInt(v);
    const b = new Uint8Array(f.buffer);
    for (let i = 0; i < b.length; i++, bits >>= 8n) b[i] = Number(bits & 0xffn);
  } else fail(`unsupported fill_value ${JSON.stringify(v)}`);
  if (typeof v === 'number' && !dtype.startsWith('float') && f[0] !== v) fail(`fill_value ${v} does not fit ${dtype}`);
  return f;
}

/** The chunk key of chunk coordinates `c` under a v2 or v3 chunk_key_encoding. */
export function keyEncoder(e: zarr.ArrayMetadata['chunk_key_encoding']): (c: Vec3) => string {
  if (e.name === 'v2') return (c) => c.join(e.configuration?.separator ?? '.');
  const sep = e.configuration?.separator ?? '/';
  return (c) => ['c', ...c].join(sep);
}

/** An unsigned-integer view of the same bits, so "is fill" compares bits (-0 ≠ 0, NaN = NaN). */
function bitsOf(a: TypedArray): Uint8Array | Uint16Array | Uint32Array | BigUint64Array {
  switch (a.BYTES_PER_ELEMENT) {
    case 1: return new Uint8Array(a.buffer, a.byteOffset, a.length);
    case 2: return new Uint16Array(a.buffer, a.byteOffset, a.length);
    case 4: return new Uint32Array(a.buffer, a.byteOffset, a.length);
    default: return new BigUint64Array(a.buffer, a.byteOffset, a.length);
  }
}

/**
 * The bits of `a` as unsigned words of at most 4 bytes, `per` words an element: 8-byte elements
 * (uint64 ids) are compared as two uint32 words, since reading a BigUint64Array makes a BigInt
 * per element (2.4 s to scan one FAFB chunk of uint64 ids).
 */
function wordsOf(a: TypedArray): { w: Uint8Array | Uint16Array | Uint32Array; per: number } {
  if (a.BYTES_PER_ELEMENT === 8) return { w: new Uint32Array(a.buffer, a.byteOffset, 2 * a.length), per: 2 };
  return { w: bitsOf(a) as Uint8Array | Uint16Array | Uint32Array, per: 1 };
}

/** Words [from, to) of `w` all equal the fill's words (`f`, `per` of them, repeating). */
function wordsAreFill(w: Uint8Array | Uint16Array | Uint32Array, from: number, to: number, f: ArrayLike<number>, per: number): boolean {
  if (per === 1) {
    const f0 = f[0];
    for (let i = from; i < to; i++) if (w[i] !== f0) return false;
    return true;
  }
  const f0 = f[0], f1 = f[1];
  for (let i = from; i < to; i += 2) if (w[i] !== f0 || w[i + 1] !== f1) return false;
  return true;
}

export function isAllFill(a: TypedArray, fill: TypedArray): boolean {
  const { w, per } = wordsOf(a);
  return wordsAreFill(w, 0, w.length, wordsOf(fill).w, per);
}

/**
 * Whether every voxel of `region` (in `src`'s own coordinates) holds the fill value: row by
 * row in place, so a chunk of fill costs a scan and no copy (most of a sparse segmentation).
 */
export function isFillRegion(src: Array3, region: Box, fill: TypedArray): boolean {
  const { w, per } = wordsOf(src.data);
  const f = wordsOf(fill).w;
  const [, H, W] = src.shape;
  for (let z = region.begin[0]; z < region.end[0]; z++) {
    for (let y = region.begin[1]; y < region.end[1]; y++) {
      const row = (z * H + y) * W;
      if (!wordsAreFill(w, (row + region.begin[2]) * per, (row + region.end[2]) * per, f, per)) return false;
    }
  }
  return true;
}

export function fillWith(a: TypedArray, fill: TypedArray): void {
  const v = bitsOf(a);
  const f = bitsOf(fill)[0];
  if (v instanceof BigUint64Array) v.fill(f as bigint);
  else v.fill(f as number);
}

/**
 * Storage chunk `cb` (a box in `src`'s coordinates, the chunk's full shape) cut out of `src` by
 * row copies into a new buffer (or `into`, of the chunk's size, every element overwritten); the
 * part past `src`'s edge holds the fill value, as zarrita pads an edge chunk. A buffer of its
 * own: zarrita's bytes codec views the whole buffer.
 */
export function sliceChunk(src: Array3, cb: Box, dtype: DType, fill: TypedArray, into?: TypedArray): TypedArray {
  const s = shapeOf(cb);
  const chunk = into ?? allocate(dtype, s[0] * s[1] * s[2]);
  if (!contains(boxOfShape(src.shape), cb)) fillWith(chunk, fill);
  copyRegion(src, [0, 0, 0], array3(chunk, s), cb.begin, cb);
  return chunk;
}
