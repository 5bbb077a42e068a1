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
import { InputError, isTesseraError, OutputError } from '../errors.ts';
import { installCheckedCodecs } from './codecs.ts';
import { shardShapeOf, uncachedArray, writeShardedRegion } from './shard.ts';
import { writeChunkedRegion } from './chunked.ts';
import { keyEncoder } from './encode.ts';
import { RemoteClient, RemoteStore, checkRemoteUrl, displayUrl, isRemote } from './remote.ts';

installCheckedCodecs();

export interface VolumeArray {
  /** Directory of the array on disk, or its URL without credentials (for messages). */
  readonly path: string;
  /**
   * A remote array's metadata document (zarr.json or .zarray), kept from opening it: the run
   * identity hashes it as it hashes a local array's file.
   */
  readonly metadataDoc?: Record<string, unknown>;
  readonly shape: Vec3;
  /**
   * The storage chunk shape; for a sharded array, the inner chunk shape (what zarrita reports
   * as `.chunks` there: the unit it reads and decodes), not the shard.
   */
  readonly chunks: Vec3;
  /** The shard shape (one file each) when the array uses sharding_indexed; writes cover whole shards. */
  readonly shard?: Vec3;
  readonly dtype: DType;
  /** Reads refuse NaN and ±Inf (an input, see checkFinite). */
  readonly finite?: boolean;
  /**
   * For a sharded array, zarrita caches shard indices on this object forever; readRegion reads
   * through a fresh one (see uncachedArray) so that rewritten shards are seen. Its store is a
   * directory, or for a `virtual:` input a read-only store that renders chunks (virtual.ts).
   */
  readonly zarr: zarr.Array<zarr.DataType, ArrayStore>;
}

/** What an array is read through: files, or (inputs only) a read-only store (virtual.ts). */
export type ArrayStore = AtomicFileStore | zarr.AsyncReadable;

/** `va`'s zarrita array over files; an OutputError for a read-only (virtual:) array. */
export function fileArray(va: VolumeArray): zarr.Array<zarr.DataType, AtomicFileStore> {
  if (!(va.zarr.store instanceof AtomicFileStore)) throw new OutputError(va.path, 'is read-only (a virtual: input has no files)');
  return va.zarr as zarr.Array<zarr.DataType, AtomicFileStore>;
}

export type PadMode = 'constant' | 'mirror';

export interface IoOptions {
  /** Chunk requests in flight at once. @default 8 */
  concurrency?: number;
  signal?: AbortSignal;
  /**
   * Writes: also write storage chunks that are all fill value. By default they get no file (a
   * reader takes a missing chunk as the fill value); an array that will be a run's input needs
   * them, since an input's missing chunk fails the run unless io.missingChunks is "fill".
   * @default false
   */
  writeFillChunks?: boolean;
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

export interface OpenArrayOptions {
  /**
   * A storage chunk with no file: `fail` — an InputError naming it (an input read as fill value
   * gives a wrong result that looks right); `fill` — the fill value, counted in `missing`.
   * @default reads the fill value silently (outputs: a chunk never written is background)
   */
  missing?: 'fail' | 'fill';
  /** Counts the missing chunks read with `missing: 'fill'`. */
  counter?: { missing: number };
  /** Refuse NaN and ±Inf on read (inputs: see checkFinite). @default false */
  finite?: boolean;
  /** Open a `bool` array as uint8 (0 or 1): tissue masks may be either. @default false */
  boolAsUint8?: boolean;
  /** The client a URL input's levels share (bounded requests, retries, counters); one per input. */
  remote?: RemoteClient;
}

export async function openArray(arrayPath: string, o: OpenArrayOptions = {}): Promise<VolumeArray> {
  const remote = isRemote(arrayPath);
  if (remote) checkRemoteUrl(arrayPath);
  const { root, key } = remote ? { root: arrayPath, key: '' } : locate(arrayPath);
  const shown = remote ? displayUrl(arrayPath) : arrayPath;
  if (!remote && !fs.existsSync(root)) throw new InputError(arrayPath, 'no such file or directory');
  // Store keys are "/<array key>/<chunk key>"; messages name the chunk key within the array.
  const chunkKey = (k: string) => k.replace(/^\//, '').slice(key ? key.length + 1 : 0);
  const onMissing = o.missing === 'fail'
    ? (k: string) => {
      throw new InputError(shown, `storage chunk ${chunkKey(k)} is missing (it would be read as the fill value); restore it, or pass --allow-missing (io.missingChunks: "fill") to accept that`, chunkKey(k));
    }
    : o.missing === 'fill' ? () => { if (o.counter) o.counter.missing++; } : undefined;
  const store = remote ? new RemoteStore(arrayPath, o.remote ?? new RemoteClient(), onMissing) : new AtomicFileStore(root, onMissing);
  let arr: zarr.Array<zarr.DataType, AtomicFileStore>;
  try {
    arr = await zarr.open(zarr.root(store as AtomicFileStore).resolve(key), { kind: 'array' });
  } catch (cause) {
    if (isTesseraError(cause)) throw cause;
    throw new InputError(shown, `not a Zarr array (${(cause as Error).message})`, undefined, { cause });
  }
  if (arr.shape.length !== 3) throw new InputError(shown, `expected a 3D array, got shape [${arr.shape.join(', ')}]`);
  const asUint8 = o.boolAsUint8 === true && arr.dtype === 'bool';
  if (!asUint8 && !isDType(arr.dtype)) throw new InputError(shown, `unsupported dtype ${arr.dtype}`);
  const shard = await shardShapeOf(arr);
  return {
    path: shown,
    ...(store instanceof RemoteStore ? { metadataDoc: await remoteMetadata(store) } : {}),
    shape: arr.shape as unknown as Vec3,
    chunks: arr.chunks as unknown as Vec3,
    ...(shard ? { shard } : {}),
    ...(o.finite ? { finite: true } : {}),
    dtype: asUint8 ? 'uint8' : arr.dtype as DType,
    zarr: arr,
  };
}

/** The metadata document zarrita read (kept by the store): zarr.json (v3) or .zarray (v2). */
async function remoteMetadata(store: RemoteStore): Promise<Record<string, unknown>> {
  const bytes = (await store.get('/zarr.json')) ?? (await store.get('/.zarray'));
  return bytes ? JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown> : {};
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
  uint8: '|u1', int8: '|i1', uint16: '<u2', int16: '<i2', uint32: '<u4', int32: '<i4', float32: '<f4', float64: '<f8', uint64: '<u8',
};

export const DEFAULT_COMPRESSOR = { id: 'blosc', cname: 'zstd', clevel: 3, shuffle: 1, blocksize: 0 } as const;

/**
 * Instance ids unshuffled: runs of one 4- or 8-byte id compress better whole than split into
 * byte planes (the bench run's uint32 ids: 159 kB unshuffled, 364 kB shuffled, a third of the
 * encoding time).
 */
export const LABEL_COMPRESSOR = { ...DEFAULT_COMPRESSOR, shuffle: 0 } as const;

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
/** A metadata document: a JSON object, or an InputError naming the file. */
function readJsonFile(file: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new InputError(file, `is not valid JSON (${(err as Error).message})`, undefined, { cause: err });
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new InputError(file, 'is not a JSON object');
  return v as Record<string, unknown>;
}

export function readGroupAttributes(groupPath: string): Record<string, unknown> | undefined {
  const v3 = path.join(groupPath, 'zarr.json');
  if (fs.existsSync(v3)) {
    const meta = readJsonFile(v3) as { attributes?: Record<string, unknown> };
    return meta.attributes ?? {};
  }
  const v2 = path.join(groupPath, '.zattrs');
  if (fs.existsSync(v2)) return readJsonFile(v2) as Record<string, unknown>;
  if (fs.existsSync(path.join(groupPath, '.zgroup'))) return {};
  return undefined;
}

/** numpy 'reflect' index of i on an axis of n voxels (no edge repeat). */
export function reflect(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * n - 2;
  let m = ((i % period) + period) % period;
  if (m >= n) m = period - m;
  return m;
}

/** The smallest box of the volume holding every voxel a mirror-padded read of `region` takes. */
export function mirrorSource(region: Box, shape: Vec3): Box {
  const lo: number[] = [];
  const hi: number[] = [];
  for (let a = 0; a < 3; a++) {
    let mn = Infinity;
    let mx = -Infinity;
    for (let v = region.begin[a]; v < region.end[a]; v++) {
      const r = reflect(v, shape[a]);
      if (r < mn) mn = r;
      if (r > mx) mx = r;
    }
    lo.push(mn);
    hi.push(mx + 1);
  }
  return { begin: lo as unknown as Vec3, end: hi as unknown as Vec3 };
}

/** Mirror-pad: gather `region` from `core` (which covers `coreBox` of a volume of `shape`). */
export function gatherMirror(core: Array3, coreBox: Box, region: Box, shape: Vec3): Array3 {
  const s = shapeOf(region);
  const C = core.data.constructor as new (n: number) => TypedArray;
  const out = array3(new C(s[0] * s[1] * s[2]), s);
  const [cy, cx] = [core.shape[1], core.shape[2]];
  const xs = Int32Array.from({ length: s[2] }, (_, x) => reflect(region.begin[2] + x, shape[2]) - coreBox.begin[2]);
  let o = 0;
  for (let z = 0; z < s[0]; z++) {
    const sz = reflect(region.begin[0] + z, shape[0]) - coreBox.begin[0];
    for (let y = 0; y < s[1]; y++) {
      const row = (sz * cy + reflect(region.begin[1] + y, shape[1]) - coreBox.begin[1]) * cx;
      for (let x = 0; x < s[2]; x++) out.data[o++] = core.data[row + xs[x]];
    }
  }
  return out;
}

/** The zarrita Array to read `va` through (a fresh one for sharded arrays: see uncachedArray). */
function reader(va: VolumeArray): Promise<VolumeArray['zarr']> {
  return va.shard ? uncachedArray(va.zarr as zarr.Array<zarr.DataType, AtomicFileStore>) : Promise.resolve(va.zarr);
}

/**
 * Refuse NaN and ±Inf in a float input: normalisation would spread them through every patch
 * they touch and the result would look like a valid, empty segmentation. Names the storage
 * chunk and the voxel.
 */
function checkFinite(va: VolumeArray, b: Box, data: Float32Array | Float64Array): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v - v === 0) continue;
    const s = shapeOf(b);
    const at = [Math.floor(i / (s[1] * s[2])) + b.begin[0], Math.floor(i / s[2]) % s[1] + b.begin[1], (i % s[2]) + b.begin[2]];
    const c = va.shard ?? va.chunks;
    throw new InputError(va.path, `holds ${Number.isNaN(v) ? 'NaN' : v > 0 ? '+Infinity' : '-Infinity'} at voxel [${at.join(', ')}]: replace non-finite values before segmenting`,
      `${va.shard ? 'c/' : ''}${at.map((p, a) => Math.floor(p / c[a])).join('/')}`);
  }
}

async function getBox(va: VolumeArray, b: Box, o: IoOptions): Promise<Array3> {
  try {
    const got = await zarr.get(
      await reader(va),
      [0, 1, 2].map((a) => zarr.slice(b.begin[a], b.end[a])),
      { createQueue: queue(o.concurrency ?? 8), signal: o.signal },
    );
    // zarrita hands a bool array back as a BoolArray over bytes (0 or 1): read those.
    const data = (got.data instanceof zarr.BoolArray ? new Uint8Array(got.data.buffer, got.data.byteOffset, got.data.length) : got.data) as TypedArray;
    if (va.finite && (data instanceof Float32Array || data instanceof Float64Array)) checkFinite(va, b, data);
    return array3(data, shapeOf(b));
  } catch (cause) {
    if (isTesseraError(cause)) throw cause;
    if (o.signal?.aborted) throw cause;
    throw new InputError(va.path, `cannot read region ${boxToString(b)}: ${(cause as Error).message}`,
      await failingChunks(va, b, o), { cause });
  }
}

/**
 * Read `region` (may reach outside the array) into a dense array of the array's dtype.
 * Outside the array: `constant` fills `value`, `mirror` reflects (numpy 'reflect' mode).
 */
export async function readRegion(
  va: VolumeArray, region: Box, pad: PadMode = 'constant', value = 0, o: IoOptions = {},
): Promise<Array3> {
  const vol = boxOfShape(va.shape);
  if (contains(vol, region)) return getBox(va, region, o);
  if (pad === 'mirror') {
    const src = mirrorSource(region, va.shape);
    return gatherMirror(await getBox(va, src, o), src, region, va.shape);
  }
  const shape = shapeOf(region);
  const out = array3(allocate(va.dtype, shape[0] * shape[1] * shape[2]), shape);
  if (value !== 0) out.data.fill(value);
  const inside = intersect(region, vol);
  if (!isEmpty(inside)) copyRegion(await getBox(va, inside, o), inside.begin, out, region.begin, inside);
  return out;
}

/** The storage chunks (shards, when sharded) of `region` that fail to read on their own (error path only). */
async function failingChunks(va: VolumeArray, region: Box, o: IoOptions): Promise<string> {
  const bad: string[] = [];
  const c = va.shard ?? va.chunks;
  const prefix = va.shard ? 'c/' : '';
  for (let z = Math.floor(region.begin[0] / c[0]); z * c[0] < region.end[0]; z++) {
    for (let y = Math.floor(region.begin[1] / c[1]); y * c[1] < region.end[1]; y++) {
      for (let x = Math.floor(region.begin[2] / c[2]); x * c[2] < region.end[2]; x++) {
        const b = intersect({ begin: [z * c[0], y * c[1], x * c[2]], end: [(z + 1) * c[0], (y + 1) * c[1], (x + 1) * c[2]] }, boxOfShape(va.shape));
        try {
          await zarr.get(await reader(va), [0, 1, 2].map((a) => zarr.slice(b.begin[a], b.end[a])), { signal: o.signal });
        } catch {
          bad.push(`${prefix}${z}/${y}/${x}`);
        }
      }
    }
  }
  if (bad.length === 0) return 'unknown';
  return bad.length <= 8 ? bad.join(', ') : `${bad.slice(0, 8).join(', ')} … (${bad.length} chunks)`;
}

/**
 * Write `data` at `region` (must lie inside the array). Chunk-aligned regions write whole
 * storage chunks, each atomically, so concurrent writers of disjoint chunk-aligned regions
 * never race; a storage chunk all fill value gets no file (see IoOptions.writeFillChunks and
 * chunked.ts). A sharded array takes only shard-aligned regions (whole shards, clipped at the
 * array's edge): a shard is one file, rewritten whole.
 */
export async function writeRegion(va: VolumeArray, region: Box, data: Array3, o: IoOptions = {}): Promise<void> {
  if (!contains(boxOfShape(va.shape), region)) {
    throw new OutputError(va.path, `region ${boxToString(region)} lies outside the array ${va.shape.join('x')}`);
  }
  if (va.shard) return writeShardedRegion(va, region, data, o);
  const s = shapeOf(region);
  const arr = fileArray(va);
  try {
    if (await writeChunkedRegion(va, region, data, o)) return;
    await zarr.set(
      arr,
      [0, 1, 2].map((a) => zarr.slice(region.begin[a], region.end[a])),
      { data: data.data as never, shape: [...s], stride: [s[1] * s[2], s[2], 1] },
      { createQueue: queue(o.concurrency ?? 8), signal: o.signal },
    );
  } catch (cause) {
    throw new OutputError(va.path, `cannot write region ${boxToString(region)}: ${(cause as Error).message}`, { cause });
  }
}

/** How a chunk (shard) index is spelt as a file under the array, from its metadata on disk; undefined when not a file array. */
/** HEAD requests in flight per anyStored call on a URL input (the client bounds the process's total). */
const STORED_BATCH = 16;

const STORED_KEYS = new WeakMap<VolumeArray, ((c: Vec3) => string) | null>();

function storedKeyOf(va: VolumeArray): ((c: Vec3) => string) | undefined {
  let k = STORED_KEYS.get(va);
  if (k === undefined) {
    k = null;
    try {
      const store = va.zarr.store;
      const v2 = path.join(va.path, '.zarray');
      // The array's metadata document: kept from a URL, else read beside its chunks.
      const doc = store instanceof RemoteStore
        ? va.metadataDoc
        : store instanceof AtomicFileStore
          ? JSON.parse(fs.readFileSync(fs.existsSync(v2) ? v2 : path.join(va.path, 'zarr.json'), 'utf8')) as Record<string, unknown>
          : undefined;
      if (doc) k = keyOfDoc(doc);
    } catch {
      k = null;
    }
    STORED_KEYS.set(va, k);
  }
  return k ?? undefined;
}

/** Chunk (or shard) coordinates → the stored key, from a v2 `.zarray` or a v3 `zarr.json` (encode.ts's keyEncoder). */
function keyOfDoc(doc: Record<string, unknown>): (c: Vec3) => string {
  if (doc.zarr_format === 2) return keyEncoder({ name: 'v2', configuration: { separator: ((doc.dimension_separator as string | undefined) ?? '.') as '.' | '/' } });
  return keyEncoder((doc.chunk_key_encoding ?? { name: 'default' }) as zarr.ArrayMetadata['chunk_key_encoding']);
}

export async function anyStored(va: VolumeArray, region: Box): Promise<boolean> {
  const key = storedKeyOf(va);
  if (!key) return true;
  const r = intersect(region, boxOfShape(va.shape));
  if (isEmpty(r)) return false;
  const c = va.shard ?? va.chunks;
  const lo = r.begin.map((v, a) => Math.floor(v / c[a]));
  const hi = r.end.map((v, a) => Math.ceil(v / c[a]));
  const keys: string[] = [];
  for (let z = lo[0]; z < hi[0]; z++) for (let y = lo[1]; y < hi[1]; y++) for (let x = lo[2]; x < hi[2]; x++) keys.push(key([z, y, x]));
  const store = va.zarr.store;
  if (!(store instanceof RemoteStore)) return keys.some((k) => fs.existsSync(path.join(va.path, k)));
  // Over the network: HEADs a batch at a time, stopping at the first batch that finds one.
  for (let i = 0; i < keys.length; i += STORED_BATCH) {
    const found = await Promise.all(keys.slice(i, i + STORED_BATCH).map((k) => store.has(`/${k}`)));
    if (found.some(Boolean)) return true;
  }
  return false;
}
