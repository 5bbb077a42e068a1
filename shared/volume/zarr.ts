// Zarr arrays as Tessera sees them: 3D, one of a few dtypes, opened from a directory (v2 or
// v3, auto-detected), read by box with a halo and padding, written chunk by chunk.
import * as zarr from 'zarrita';
import pLimit from 'p-limit';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Box, type Vec3, boxOfShape, intersect, isEmpty, shapeOf, contains, boxToString } from '../geometry/box.ts';
import { type Array3, array3, copyRegion } from '../array/array3.ts';
import { type DType, type TypedArray, allocate, isDType } from './dtype.ts';
import { AtomicFileStore, writeJsonAtomic } from './store.ts';
import { InputError, OutputError } from '../errors.ts';

export interface VolumeArray {
  /** Directory of the array on disk (for messages). */
  readonly path: string;
  readonly shape: Vec3;
  readonly chunks: Vec3;
  readonly dtype: DType;
  readonly zarr: zarr.Array<zarr.DataType, AtomicFileStore>;
}

export type PadMode = 'constant' | 'mirror';

export interface IoOptions {
  /** Chunk requests in flight at once. @default 8 */
  concurrency?: number;
  signal?: AbortSignal;
}

interface ChunkQueue { add(fn: () => Promise<void>): void; onIdle(): Promise<void[]> }

function queue(concurrency: number): () => ChunkQueue {
  return () => {
    const limit = pLimit(concurrency);
    const pending: Promise<void>[] = [];
    return {
      add: (fn: () => Promise<void>) => void pending.push(limit(fn)),
      onIdle: () => Promise.all(pending),
    };
  };
}

/** Split "root.zarr/a/b" into the store root (the outermost *.zarr directory) and the key. */
function locate(arrayPath: string): { root: string; key: string } {
  const abs = path.resolve(arrayPath);
  const parts = abs.split(path.sep);
  const i = parts.findIndex((p) => p.endsWith('.zarr'));
  if (i < 0 || i === parts.length - 1) return { root: abs, key: '' };
  return { root: parts.slice(0, i + 1).join(path.sep), key: parts.slice(i + 1).join('/') };
}

export async function openArray(arrayPath: string): Promise<VolumeArray> {
  const { root, key } = locate(arrayPath);
  if (!fs.existsSync(root)) throw new InputError(arrayPath, 'no such file or directory');
  const store = new AtomicFileStore(root);
  let arr: zarr.Array<zarr.DataType, AtomicFileStore>;
  try {
    arr = await zarr.open(zarr.root(store).resolve(key), { kind: 'array' });
  } catch (cause) {
    throw new InputError(arrayPath, `not a Zarr array (${(cause as Error).message})`, undefined, { cause });
  }
  if (arr.shape.length !== 3) throw new InputError(arrayPath, `expected a 3D array, got shape [${arr.shape.join(', ')}]`);
  if (!isDType(arr.dtype)) throw new InputError(arrayPath, `unsupported dtype ${arr.dtype}`);
  return {
    path: arrayPath,
    shape: arr.shape as unknown as Vec3,
    chunks: arr.chunks as unknown as Vec3,
    dtype: arr.dtype,
    zarr: arr,
  };
}

export interface CreateArrayOptions {
  shape: Vec3;
  chunks: Vec3;
  dtype: DType;
  /** blosc/zstd by default; null stores raw chunks. */
  compressor?: Record<string, unknown> | null;
  attributes?: Record<string, unknown>;
}

const V2_DTYPE: Record<DType, string> = {
  uint8: '|u1', int8: '|i1', uint16: '<u2', int16: '<i2', uint32: '<u4', int32: '<i4', float32: '<f4', float64: '<f8',
};

export const DEFAULT_COMPRESSOR = { id: 'blosc', cname: 'zstd', clevel: 3, shuffle: 1, blocksize: 0 } as const;

/**
 * Create (or overwrite the metadata of) a Zarr v2 array. We write v2 so that NGFF 0.4 readers
 * and Debian's python3-zarr open the output; zarrita's create() only makes v3.
 */
export async function createArray(arrayPath: string, o: CreateArrayOptions): Promise<VolumeArray> {
  await fs.promises.mkdir(arrayPath, { recursive: true });
  await writeJsonAtomic(path.join(arrayPath, '.zarray'), {
    zarr_format: 2,
    shape: o.shape,
    chunks: o.chunks,
    dtype: V2_DTYPE[o.dtype],
    compressor: o.compressor === undefined ? DEFAULT_COMPRESSOR : o.compressor,
    fill_value: 0,
    order: 'C',
    filters: null,
    dimension_separator: '/',
  });
  if (o.attributes) await writeJsonAtomic(path.join(arrayPath, '.zattrs'), o.attributes);
  return openArray(arrayPath);
}

/** Create a Zarr v2 group with attributes (NGFF metadata lives here). */
export async function createGroup(groupPath: string, attributes: Record<string, unknown> = {}): Promise<void> {
  await fs.promises.mkdir(groupPath, { recursive: true });
  await writeJsonAtomic(path.join(groupPath, '.zgroup'), { zarr_format: 2 });
  await writeJsonAtomic(path.join(groupPath, '.zattrs'), attributes);
}

/** Read group attributes of a v2 (.zattrs) or v3 (zarr.json) group; undefined when absent. */
export function readGroupAttributes(groupPath: string): Record<string, unknown> | undefined {
  const v3 = path.join(groupPath, 'zarr.json');
  if (fs.existsSync(v3)) {
    const meta = JSON.parse(fs.readFileSync(v3, 'utf8')) as { attributes?: Record<string, unknown> };
    return meta.attributes ?? {};
  }
  const v2 = path.join(groupPath, '.zattrs');
  if (fs.existsSync(v2)) return JSON.parse(fs.readFileSync(v2, 'utf8')) as Record<string, unknown>;
  if (fs.existsSync(path.join(groupPath, '.zgroup'))) return {};
  return undefined;
}

function reflect(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * n - 2;
  let m = ((i % period) + period) % period;
  if (m >= n) m = period - m;
  return m;
}

/**
 * Read `region` (may reach outside the array) into a dense array of the array's dtype.
 * Outside the array: `constant` fills `value`, `mirror` reflects (numpy 'reflect' mode).
 */
export async function readRegion(
  va: VolumeArray, region: Box, pad: PadMode = 'constant', value = 0, o: IoOptions = {},
): Promise<Array3> {
  const shape = shapeOf(region);
  const inside = intersect(region, boxOfShape(va.shape));
  let core: Array3 | undefined;
  if (!isEmpty(inside)) {
    try {
      const got = await zarr.get(
        va.zarr,
        [0, 1, 2].map((a) => zarr.slice(inside.begin[a], inside.end[a])),
        { createQueue: queue(o.concurrency ?? 8), signal: o.signal },
      );
      core = array3(got.data as TypedArray, shapeOf(inside));
    } catch (cause) {
      throw new InputError(va.path, `cannot read region ${boxToString(inside)}: ${(cause as Error).message}`,
        chunkNames(va, inside), { cause });
    }
  }
  if (core && contains(inside, region)) return core;
  const out = array3(allocate(va.dtype, shape[0] * shape[1] * shape[2]), shape);
  if (pad === 'constant' || !core) {
    if (value !== 0) out.data.fill(value);
    if (core) copyRegion(core, inside.begin, out, region.begin, inside);
    return out;
  }
  const [Z, Y, X] = va.shape;
  const [iz, iy, ix] = inside.begin;
  const [cy, cx] = [core.shape[1], core.shape[2]];
  let o2 = 0;
  for (let z = 0; z < shape[0]; z++) {
    const sz = reflect(region.begin[0] + z, Z) - iz;
    for (let y = 0; y < shape[1]; y++) {
      const sy = reflect(region.begin[1] + y, Y) - iy;
      const row = (sz * cy + sy) * cx;
      for (let x = 0; x < shape[2]; x++) {
        const sx = reflect(region.begin[2] + x, X) - ix;
        out.data[o2++] = core.data[row + sx];
      }
    }
  }
  return out;
}

/** "z/y/x" storage chunk keys a region touches (the first few), for error messages. */
function chunkNames(va: VolumeArray, region: Box): string {
  const names: string[] = [];
  for (let z = Math.floor(region.begin[0] / va.chunks[0]); z * va.chunks[0] < region.end[0]; z++) {
    for (let y = Math.floor(region.begin[1] / va.chunks[1]); y * va.chunks[1] < region.end[1]; y++) {
      for (let x = Math.floor(region.begin[2] / va.chunks[2]); x * va.chunks[2] < region.end[2]; x++) {
        names.push(`${z}/${y}/${x}`);
      }
    }
  }
  return names.length <= 4 ? names.join(', ') : `${names.slice(0, 4).join(', ')} … (${names.length} chunks)`;
}

/**
 * Write `data` at `region` (must lie inside the array). Chunk-aligned regions write whole
 * storage chunks, each atomically, so concurrent writers of disjoint chunk-aligned regions
 * never race.
 */
export async function writeRegion(va: VolumeArray, region: Box, data: Array3, o: IoOptions = {}): Promise<void> {
  if (!contains(boxOfShape(va.shape), region)) {
    throw new OutputError(va.path, `region ${boxToString(region)} lies outside the array ${va.shape.join('x')}`);
  }
  const s = shapeOf(region);
  try {
    await zarr.set(
      va.zarr,
      [0, 1, 2].map((a) => zarr.slice(region.begin[a], region.end[a])),
      { data: data.data as never, shape: [...s], stride: [s[1] * s[2], s[2], 1] },
      { createQueue: queue(o.concurrency ?? 8), signal: o.signal },
    );
  } catch (cause) {
    throw new OutputError(va.path, `cannot write region ${boxToString(region)}: ${(cause as Error).message}`, { cause });
  }
}
