// Reading an image at the resolutions the pipeline asks for: the full resolution, or the
// stage-one resolution from the matching NGFF pyramid level (area-averaged on the fly from a
// finer level when none matches). Low-resolution grids are anchored at the volume origin:
// low-res voxel i covers full-res [i·F, (i+1)·F) along an axis with factor F.
import { type Box, type Vec3, box, boxOfShape, contains, intersect, isEmpty, shapeOf, unionVolume, volumeOf } from '../geometry/box.ts';
import { type Array3, array3, copyRegion, crop } from '../array/array3.ts';
import { allocate } from './dtype.ts';
import { Lru } from '../cache.ts';
import { downsampleMean, resizeLinear } from '../array/resample.ts';
import { type Image, type Level, pickLevel } from './ome.ts';
import { type IoOptions, type PadMode, gatherMirror, mirrorSource, readRegion } from './zarr.ts';

export interface Source {
  readonly image: Image;
  /** Full-resolution level. */
  readonly full: Level;
  readonly shape: Vec3;
  readonly spacing: Vec3;
  readonly pad: PadMode;
  readonly padValue: number;
  readonly io: IoOptions;
}

export function source(image: Image, pad: PadMode, padValue: number, io: IoOptions = {}): Source {
  const full = image.levels[0];
  return { image, full, shape: full.array.shape, spacing: full.spacing, pad, padValue, io };
}

/** Read a full-resolution region (may reach outside the volume: padded). */
export function readFull(src: Source, region: Box): Promise<Array3> {
  return readRegion(src.full.array, region, src.pad, src.padValue, src.io);
}

export interface LowGrid {
  /** Full-res voxels per low-res voxel. */
  factor: Vec3;
  /** Shape of the whole volume at low resolution. */
  shape: Vec3;
  level: Level;
  /** What is left to downsample from `level` on the fly (1 where the level matches). */
  rest: Vec3;
}

export function lowGrid(src: Source, targetSpacing: Vec3): LowGrid {
  const factor = targetSpacing.map((s, a) => s / src.spacing[a]) as unknown as Vec3;
  const { level, factor: rest } = pickLevel(src.image, targetSpacing);
  return { factor, shape: lowShapeOf(src.shape, factor), level, rest };
}

function lowShapeOf(shape: Vec3, f: Vec3): Vec3 {
  return shape.map((s, a) => Math.max(1, Math.ceil(s / f[a] - 1e-6))) as unknown as Vec3;
}

/**
 * Full-res box → low-res box. Boundaries map by rounding, so boxes that tile the full
 * resolution tile the low resolution too (neighbours share the rounded boundary), and the
 * volume's end maps to the low-res volume's end.
 */
export function toLowBox(g: LowGrid, b: Box, fullShape: Vec3): Box {
  const m = (v: number, a: number) =>
    v >= fullShape[a] ? g.shape[a] + Math.round((v - fullShape[a]) / g.factor[a]) : Math.round(v / g.factor[a]);
  return box([m(b.begin[0], 0), m(b.begin[1], 1), m(b.begin[2], 2)], [m(b.end[0], 0), m(b.end[1], 1), m(b.end[2], 2)]);
}

/** Read a low-res region (padded outside the low-res volume as `src.pad` says). */
export async function readLow(src: Source, g: LowGrid, region: Box): Promise<Array3> {
  if (g.rest.every((r) => r === 1)) return readRegion(g.level.array, region, src.pad, src.padValue, src.io);
  const vol = boxOfShape(g.shape);
  // Which low-res voxels the read needs: the region itself where inside, the reflected (or no)
  // voxels outside; then downsample just those from the level and pad.
  const need = contains(vol, region) ? region : src.pad === 'mirror' ? mirrorSource(region, g.shape) : intersect(region, vol);
  if (isEmpty(need)) {
    const s = shapeOf(region);
    return array3(new Float32Array(s[0] * s[1] * s[2]).fill(src.padValue), s);
  }
  const r = g.rest;
  const lvl = intersect(box(
    [Math.floor(need.begin[0] * r[0]), Math.floor(need.begin[1] * r[1]), Math.floor(need.begin[2] * r[2])],
    [Math.ceil(need.end[0] * r[0]), Math.ceil(need.end[1] * r[1]), Math.ceil(need.end[2] * r[2])],
  ), boxOfShape(g.level.array.shape));
  const raw = await readRegion(g.level.array, lvl, src.pad, src.padValue, src.io);
  // Partial blocks at the far edge average what they hold, as the pyramid does.
  const low = downsampleFrom(raw, r, shapeOf(need));
  if (need === region) return low;
  return src.pad === 'mirror' ? gatherMirror(low, need, region, g.shape) : padTo(low, need, region, 'constant', src.padValue);
}

function downsampleFrom(raw: Array3, r: Vec3, shape: Vec3): Array3 {
  const integer = r.every((v) => Number.isInteger(v));
  const low = integer ? downsampleMean(raw, r) : resizeLinear(raw, shape);
  if (low.shape.every((v, a) => v === shape[a])) return low;
  return crop(low, [0, 0, 0], boxOfShape(shape));
}

/** Place `a` (covering `have`) into an array covering `want`, padding the rest. */
export function padTo(a: Array3, have: Box, want: Box, pad: PadMode, value: number): Array3 {
  const ws = shapeOf(want);
  if (shapeOf(have).every((v, i) => v === ws[i]) && have.begin.every((v, i) => v === want.begin[i])) return a;
  const C = a.data.constructor as new (n: number) => Array3['data'];
  const out = { data: new C(ws[0] * ws[1] * ws[2]), shape: ws } as Array3;
  const hs = a.shape;
  const idx = (v: number, lo: number, n: number) => {
    let i = v - lo;
    if (i >= 0 && i < n) return i;
    if (pad === 'constant') return -1;
    if (n === 1) return 0;
    const period = 2 * n - 2;
    i = ((i % period) + period) % period;
    return i >= n ? period - i : i;
  };
  let o = 0;
  for (let z = 0; z < ws[0]; z++) {
    const sz = idx(want.begin[0] + z, have.begin[0], hs[0]);
    for (let y = 0; y < ws[1]; y++) {
      const sy = idx(want.begin[1] + y, have.begin[1], hs[1]);
      for (let x = 0; x < ws[2]; x++) {
        const sx = idx(want.begin[2] + x, have.begin[2], hs[2]);
        out.data[o++] = sz < 0 || sy < 0 || sx < 0 ? value : a.data[(sz * hs[1] + sy) * hs[2] + sx];
      }
    }
  }
  return out;
}

/** A reader of full-resolution regions that decodes each storage chunk once while it is cached. */
export interface CachedReader {
  read(region: Box): Promise<Array3>;
  /** Voxels of the storage chunks decoded so far. */
  decoded(): number;
  /** Distinct voxels asked for so far (inside the volume): overlapping reads count once. */
  needed(): number;
}

/**
 * Stage two reads many small boxes close together; through zarrita each read decodes every
 * storage chunk it touches, so neighbouring boxes decode the same chunks again and again. This
 * reader fetches whole storage chunks through `cache`, an LRU whose capacity is in bytes of
 * decoded voxels (not chunks: small storage chunks would otherwise be evicted after a few
 * kilobytes), and cuts regions from them (padding outside the volume as readFull does). The
 * cache may be shared by several readers of the same source; each counts what it decoded and
 * the distinct voxels it asked for (boxes whose contexts overlap do not inflate what was needed).
 */
export function cachedReader(src: Source, cache: Lru<Array3>): CachedReader {
  const va = src.full.array;
  const vol = boxOfShape(va.shape);
  const cs = va.chunks;
  const bytes = allocate(va.dtype, 0).BYTES_PER_ELEMENT;
  let decoded = 0;
  // What each touched storage chunk was asked for (a few boxes per chunk); the distinct voxels
  // are counted when asked, by the union of those boxes, never by a per-voxel bitmap (a block of
  // 256 storage chunks would hold 64 MiB of bitmaps for a figure).
  const asked = new Map<string, Box[]>();
  const mark = (key: string, part: Box) => {
    const parts = asked.get(key);
    if (parts) parts.push(part); else asked.set(key, [part]);
  };
  const inside = async (b: Box): Promise<Array3> => {
    const s = shapeOf(b);
    const out = array3(allocate(va.dtype, s[0] * s[1] * s[2]), s);
    const lo = [0, 1, 2].map((a) => Math.floor(b.begin[a] / cs[a]));
    const hi = [0, 1, 2].map((a) => Math.ceil(b.end[a] / cs[a]));
    const reads: Promise<void>[] = [];
    for (let z = lo[0]; z < hi[0]; z++) for (let y = lo[1]; y < hi[1]; y++) for (let x = lo[2]; x < hi[2]; x++) {
      const cb = intersect(box([z * cs[0], y * cs[1], x * cs[2]], [(z + 1) * cs[0], (y + 1) * cs[1], (x + 1) * cs[2]]), vol);
      mark(`${z}/${y}/${x}`, intersect(cb, b));
      reads.push(cache.get(`${z}/${y}/${x}`, () => {
        decoded += volumeOf(cb);
        return readRegion(va, cb, 'constant', 0, src.io);
      }, volumeOf(cb) * bytes).then((chunk) => { copyRegion(chunk, cb.begin, out, b.begin, intersect(cb, b)); }));
    }
    await Promise.all(reads);
    return out;
  };
  return {
    async read(region: Box): Promise<Array3> {
      const within = intersect(region, vol);
      if (contains(vol, region)) return inside(region);
      if (src.pad === 'mirror') {
        const from = mirrorSource(region, va.shape);
        return gatherMirror(await inside(from), from, region, va.shape);
      }
      const s = shapeOf(region);
      const out = array3(allocate(va.dtype, s[0] * s[1] * s[2]), s);
      if (src.padValue !== 0) out.data.fill(src.padValue);
      if (!isEmpty(within)) copyRegion(await inside(within), within.begin, out, region.begin, within);
      return out;
    },
    decoded: () => decoded,
    needed: () => { let n = 0; for (const parts of asked.values()) n += unionVolume(parts); return n; },
  };
}
