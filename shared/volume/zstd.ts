// zstd chunks — Zarr v3's `zstd` codec and Blosc frames with zstd inside — written and read by
// Node's own zstd (node:zlib) instead of numcodecs' WebAssembly builds, which copy every byte in
// and out of their memory one at a time in JavaScript: 2.2 ms to encode one 16×128×128 uint8
// storage chunk of a sparse segmentation, against 0.1 ms here — paste and relabel write every
// chunk of the output. The frames are ordinary Blosc 1 frames (c-blosc's README_HEADER: 16-byte
// header, block starts, one stream per block): numcodecs and python's c-blosc read them (tested).
//
// Written: one block holding the whole chunk, byte-shuffled by the array's element size (as
// c-blosc does for the item size it is given; numcodecs.js always declares 4), not split (flag
// 0x10), zstd at c-blosc's mapping of the clevel; a chunk that does not compress is stored as a
// memcpy frame. Read: zstd frames whose blocks are not split (c-blosc splits only for its fast
// codecs), shuffled or not, and stored frames; other compressors, split blocks and bit-shuffle
// go back to numcodecs (`undefined`).
import * as nodeZlib from 'node:zlib';

// node:zlib's zstd (Node 22.15+), typed here: the project's @types/node predates it.
const zlib = nodeZlib as unknown as {
  zstdCompressSync?(b: Uint8Array, o: { params: Record<number, number> }): Uint8Array;
  zstdDecompressSync(b: Uint8Array): Uint8Array;
  constants: { ZSTD_c_compressionLevel: number; ZSTD_c_checksumFlag: number };
};

const HEADER = 16;
const VERSION = 2;
const ZSTD_FORMAT = 4;
const ZSTD_VERSION = 1;
const SHUFFLE = 0x1;
const MEMCPYED = 0x2;
const BITSHUFFLE = 0x4;
const DONT_SPLIT = 0x10;
/** c-blosc (1.x) passes clevel c to zstd as 2c − 1 below 9, else zstd's maximum. */
const zstdLevel = (clevel: number) => (clevel < 9 ? 2 * clevel - 1 : 22);

/** Whether this Node has zstd in node:zlib (22.15 and later). */
export const NATIVE_ZSTD = typeof zlib.zstdCompressSync === 'function';

/**
 * Byte-shuffle `src` (n elements of `size` bytes): byte j of every element, then j + 1. Whole
 * 4-byte words at a time where aligned, and zero words skipped (the output starts zeroed): a
 * sparse label chunk is mostly zeros.
 */
function shuffle(src: Uint8Array, size: number): Uint8Array {
  const n = src.length / size;
  const out = new Uint8Array(src.length);
  if ((size === 4 || size === 8) && src.byteOffset % 4 === 0) {
    const w = new Uint32Array(src.buffer, src.byteOffset, src.length >> 2);
    const per = size >> 2;
    for (let i = 0; i < n; i++) {
      for (let h = 0; h < per; h++) {
        const v = w[i * per + h];
        if (v === 0) continue;
        const o = 4 * h * n + i;
        out[o] = v; out[o + n] = v >>> 8; out[o + 2 * n] = v >>> 16; out[o + 3 * n] = v >>> 24;
      }
    }
    return out;
  }
  for (let j = 0; j < size; j++) for (let i = 0, o = j * n; i < n; i++) out[o + i] = src[i * size + j];
  return out;
}

/**
 * Undo shuffle() into `out` at `at`. A block that is not a whole number of elements (numcodecs.js
 * declares item size 4 whatever the data) was shuffled over its whole elements, the rest kept.
 */
function unshuffle(src: Uint8Array, size: number, out: Uint8Array, at: number): void {
  const n = Math.floor(src.length / size);
  for (let j = 0; j < size; j++) for (let i = 0, s = j * n; i < n; i++) out[at + i * size + j] = src[s + i];
  out.set(src.subarray(n * size), at + n * size);
}

/** A Blosc 1 frame of `bytes` (elements of `size` bytes), zstd at Blosc level `clevel`, shuffled when `doShuffle`. */
export function bloscZstdEncode(bytes: Uint8Array, size: number, clevel: number, doShuffle: boolean): Uint8Array {
  const n = bytes.length;
  const typesize = n % size === 0 && size <= 255 ? size : 1;
  const shuffled = doShuffle && typesize > 1;
  const body = zlib.zstdCompressSync!(shuffled ? shuffle(bytes, typesize) : bytes, { params: { [zlib.constants.ZSTD_c_compressionLevel]: zstdLevel(clevel) } });
  const head = (flags: number, cbytes: number, blocksize: number) => {
    const h = new Uint8Array(cbytes);
    const v = new DataView(h.buffer);
    h[0] = VERSION; h[1] = ZSTD_VERSION; h[2] = flags | (ZSTD_FORMAT << 5); h[3] = typesize;
    v.setUint32(4, n, true); v.setUint32(8, blocksize, true); v.setUint32(12, cbytes, true);
    return { h, v };
  };
  if (n === 0 || body.length + 8 >= n) {
    // Stored: the header then the bytes as they are (c-blosc's memcpy frame).
    const { h } = head(MEMCPYED | DONT_SPLIT, HEADER + n, n);
    h.set(bytes, HEADER);
    return h;
  }
  // One block: its start (after the header and the one start), its stream's size, the stream.
  const { h, v } = head((shuffled ? SHUFFLE : 0) | DONT_SPLIT, HEADER + 8 + body.length, n);
  v.setUint32(HEADER, HEADER + 4, true);
  v.setUint32(HEADER + 4, body.length, true);
  h.set(body, HEADER + 8);
  return h;
}

/**
 * The bytes of a Blosc 1 frame whose compressor is zstd, or undefined for any other frame (the
 * caller decodes it the usual way). Throws on a frame that is not what its header says.
 */
export function bloscZstdDecode(frame: Uint8Array): Uint8Array | undefined {
  if (frame.length < HEADER || frame[0] < 1 || frame[0] > VERSION) return undefined;
  const flags = frame[2];
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const typesize = frame[3];
  const n = v.getUint32(4, true), blocksize = v.getUint32(8, true), cbytes = v.getUint32(12, true);
  if (cbytes !== frame.length) throw new Error(`corrupt blosc chunk: header says ${cbytes} bytes, file has ${frame.length}`);
  if (flags & MEMCPYED) {
    if (frame.length !== HEADER + n) throw new Error(`corrupt blosc chunk: a stored frame of ${n} bytes in ${frame.length}`);
    return frame.slice(HEADER);
  }
  // Split streams (c-blosc splits only for its fast codecs, or when told to) go to numcodecs.
  const split = !(flags & DONT_SPLIT) && typesize > 1;
  if (flags >> 5 !== ZSTD_FORMAT || (flags & BITSHUFFLE) || split || typesize === 0 || blocksize === 0) return undefined;
  const nblocks = Math.ceil(n / blocksize);
  const shuffled = (flags & SHUFFLE) !== 0 && typesize > 1;
  // One unshuffled block (what Tessera writes): its bytes are the chunk, no copy into another.
  if (nblocks === 1 && !shuffled) return own(blockBytes(frame, v, 0, n));
  const out = new Uint8Array(n);
  for (let b = 0; b < nblocks; b++) {
    const got = blockBytes(frame, v, b, Math.min(blocksize, n - b * blocksize));
    if (shuffled) unshuffle(got, typesize, out, b * blocksize);
    else out.set(got, b * blocksize);
  }
  return out;
}

/** Block `b` of a frame, `size` bytes once decoded: its one stream's size, then zstd (or the bytes as they are when no smaller). */
function blockBytes(frame: Uint8Array, v: DataView, b: number, size: number): Uint8Array {
  const at = v.getUint32(HEADER + 4 * b, true);
  if (at + 4 > frame.length) throw new Error(`corrupt blosc chunk: block ${b} starts past the end`);
  const len = v.getUint32(at, true);
  const src = frame.subarray(at + 4, at + 4 + len);
  if (src.length !== len) throw new Error(`corrupt blosc chunk: block ${b} runs past the end`);
  const got = len === size ? src : zlib.zstdDecompressSync(src);
  if (got.length !== size) throw new Error(`corrupt blosc chunk: block ${b} decodes to ${got.length} bytes, expected ${size}`);
  return got;
}

/** A zstd frame of `bytes` (Zarr v3's `zstd` codec: level, optional content checksum). */
export function zstdEncode(bytes: Uint8Array, level: number, checksum: boolean): Uint8Array {
  return own(zlib.zstdCompressSync!(bytes, { params: { [zlib.constants.ZSTD_c_compressionLevel]: level, [zlib.constants.ZSTD_c_checksumFlag]: checksum ? 1 : 0 } }));
}

/** The bytes of a zstd frame (node:zlib names what is wrong with a corrupt one). */
export function zstdDecode(frame: Uint8Array): Uint8Array {
  return own(zlib.zstdDecompressSync(frame));
}

/**
 * `b` as a Uint8Array that owns its whole buffer: node:zlib hands back Buffers that may be views
 * of a shared pool, and zarrita's bytes codec views a chunk's `.buffer` whole.
 */
function own(b: Uint8Array): Uint8Array {
  return b.byteOffset === 0 && b.buffer.byteLength === b.length ? new Uint8Array(b.buffer) : new Uint8Array(b);
}
