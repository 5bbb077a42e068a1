// Checked codecs. Blosc decodes garbage (a corrupt or truncated chunk file) to an empty buffer
// without an error, and zarrita's bytes codec then views whatever length it got: a corrupt
// chunk would read back as zeros. These wrappers make a chunk whose bytes do not decode to
// exactly one chunk of data fail loudly, so the caller can name the chunk.
import * as zarr from 'zarrita';
import { NATIVE_ZSTD, bloscZstdDecode, bloscZstdEncode, zstdDecode, zstdEncode } from './zstd.ts';

type CodecClass = { fromConfig(config: unknown, meta: unknown): Codec };
type Codec = { kind: string; encode(x: unknown): unknown; decode(x: unknown): unknown; computeEncodedSize?(n: number): number };

function wrap(load: () => Promise<CodecClass> | CodecClass, check: (config: unknown, meta: any) => { before?: (b: Uint8Array) => void; after?: (out: any) => void }): () => Promise<CodecClass> {
  return async () => {
    const Inner = await load();
    return {
      fromConfig(config: unknown, meta: unknown): Codec {
        const inner = Inner.fromConfig(config, meta);
        const c = check(config, meta);
        return {
          kind: inner.kind,
          encode: (x) => inner.encode(x),
          computeEncodedSize: inner.computeEncodedSize?.bind(inner),
          decode: async (x) => {
            c.before?.(x as Uint8Array);
            const out = await inner.decode(x);
            c.after?.(out);
            return out;
          },
        };
      },
    };
  };
}

const ITEM: Record<string, number> = { int8: 1, uint8: 1, bool: 1, int16: 2, uint16: 2, float16: 2, int32: 4, uint32: 4, float32: 4, int64: 8, uint64: 8, float64: 8 };

let installed = false;

export function installCheckedCodecs(): void {
  if (installed) return;
  installed = true;
  const reg = zarr.registry as unknown as Map<string, () => Promise<CodecClass> | CodecClass>;
  const blosc = reg.get('blosc')!;
  const bytes = reg.get('bytes')!;
  const checkedBlosc = wrap(blosc as () => Promise<CodecClass>, () => ({
    before: (b) => {
      // Blosc header: version, versionlz, flags, typesize, nbytes u32, blocksize u32, cbytes u32.
      if (b.byteLength < 16) throw new Error(`corrupt blosc chunk: ${b.byteLength} bytes, shorter than the 16-byte header`);
      const cbytes = b[12] | (b[13] << 8) | (b[14] << 16) | (b[15] << 24);
      if (cbytes !== b.byteLength) throw new Error(`corrupt blosc chunk: header says ${cbytes >>> 0} bytes, file has ${b.byteLength}`);
    },
  }));
  // Blosc frames with zstd inside are read by node:zlib (zstd.ts), the rest by numcodecs; Zarr's
  // zstd codec wholly by node:zlib where this Node has it.
  const nativeBlosc: typeof blosc = async () => {
    const Checked = await checkedBlosc();
    return {
      fromConfig(config: unknown, meta: any): Codec {
        const inner = Checked.fromConfig(config, meta);
        const c = (config ?? {}) as { cname?: string; clevel?: number; shuffle?: unknown; typesize?: number };
        // Shuffled in units of the stated typesize (v3), else the element size.
        const shuffle = c.shuffle === 1 || c.shuffle === 'shuffle' ? true : c.shuffle === 0 || c.shuffle === 'noshuffle' || c.shuffle === undefined ? false : undefined;
        const size = c.typesize ?? ITEM[meta?.dataType as string] ?? 1;
        const encode = NATIVE_ZSTD && c.cname === 'zstd' && shuffle !== undefined
          ? (x: unknown) => bloscZstdEncode(x as Uint8Array, size, c.clevel ?? 5, shuffle)
          : (x: unknown) => inner.encode(x);
        return { ...inner, encode, decode: async (x) => (NATIVE_ZSTD && bloscZstdDecode(x as Uint8Array)) || inner.decode(x) };
      },
    };
  };
  reg.set('blosc', nativeBlosc);
  reg.set('numcodecs.blosc', nativeBlosc);
  if (NATIVE_ZSTD) {
    const zstd: typeof blosc = () => ({
      fromConfig: (config) => {
        const c = (config ?? {}) as { level?: number; checksum?: boolean };
        return { kind: 'bytes_to_bytes', encode: (x) => zstdEncode(x as Uint8Array, c.level ?? 0, c.checksum === true), decode: (x) => zstdDecode(x as Uint8Array) };
      },
    });
    reg.set('zstd', zstd);
    reg.set('numcodecs.zstd', zstd);
  }
  reg.set('bytes', wrap(bytes, (_config, meta) => {
    const n = (meta.shape as number[]).reduce((a: number, b: number) => a * b, 1);
    const item = ITEM[meta.dataType as string];
    return {
      after: (out) => {
        if (item && out.data.length !== n) throw new Error(`corrupt chunk: decodes to ${out.data.length * item} bytes, expected ${n * item}`);
      },
    };
  }));
}
