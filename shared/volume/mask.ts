// Tissue masks: an NGFF image group (level "0" unless another is named) or a bare Zarr array,
// uint8 or bool, nonzero = tissue, at a voxel size that is a whole multiple of the input's. One
// mask voxel covers `factor` input voxels per axis, from the origin. Read lazily, a region at a
// time (a FAFB mask 64× coarser still has 10⁹ voxels): nothing of it is held between reads.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Box, type Vec3, boxOfShape, intersect, isEmpty, shapeOf } from '../geometry/box.ts';
import { type IoOptions, type VolumeArray, openArray } from './zarr.ts';
import { readRegion } from './zarr.ts';
import { isArrayNode, openImage } from './ome.ts';
import { InputError } from '../errors.ts';

/** What the config's `mask` says: a path, and the NGFF level to read. */
export interface MaskSpec {
  readonly path: string;
  /** Dataset path inside an NGFF group. @default "0" */
  readonly level?: string;
}

export interface TissueMask {
  readonly spec: MaskSpec;
  readonly array: VolumeArray;
  /** Input voxels per mask voxel, per axis (whole numbers). */
  readonly factor: Vec3;
  /** What decides the voxels a run gets from it (the run identity's mask line). */
  readonly describe: string;
}

/** Mask voxels read at once by anyTissue: a region larger than this is looked at in z-slabs. */
const SLAB_VOXELS = 1 << 24;

/**
 * A bare array's factor from the shapes: f per axis with ceil(input / f) = mask (a mask as long
 * as the input, or the input downsampled with its last voxel partial). Refuses any other shape,
 * naming both.
 */
export function factorFromShapes(input: Vec3, mask: Vec3, where: string): Vec3 {
  return [0, 1, 2].map((a) => {
    const f = Math.max(1, Math.round(input[a] / mask[a]));
    if (Math.ceil(input[a] / f) !== mask[a]) {
      throw new InputError(where, `mask shape ${mask.join('x')} is not the input's shape ${input.join('x')} divided by a whole factor along ${'zyx'[a]} (a bare array's voxel size is derived from the shapes; give an NGFF group with a scale otherwise)`);
    }
    return f;
  }) as unknown as Vec3;
}

/** An NGFF level's factor from its voxel size: a whole multiple of the input's (1 % slack), and a shape that covers the input. */
export function factorFromScale(inputSpacing: Vec3, maskSpacing: Vec3, input: Vec3, mask: Vec3, where: string): Vec3 {
  return [0, 1, 2].map((a) => {
    const r = maskSpacing[a] / inputSpacing[a];
    const f = Math.round(r);
    if (f < 1 || Math.abs(r - f) > 0.01 * f) {
      throw new InputError(where, `mask voxel size [${maskSpacing}] is not a whole multiple of the input's [${inputSpacing}] along ${'zyx'[a]} (${Math.round(r * 1000) / 1000}×)`);
    }
    const want = input[a] / f;
    if (mask[a] < Math.floor(want) || mask[a] > Math.ceil(want)) {
      throw new InputError(where, `mask shape ${mask.join('x')} at ${f}× the input's voxel size along ${'zyx'[a]} should be ${Math.ceil(want)} there (input shape ${input.join('x')})`);
    }
    return f;
  }) as unknown as Vec3;
}

/** The mask voxels under full-resolution box `b` (every mask voxel that covers part of it). */
export function toMaskBox(b: Box, factor: Vec3): Box {
  return {
    begin: b.begin.map((v, a) => Math.floor(v / factor[a])) as unknown as Vec3,
    end: b.end.map((v, a) => Math.ceil(v / factor[a])) as unknown as Vec3,
  };
}

/** Open `spec` against an input of `shape` at `spacing`; every problem is one InputError naming the mask. */
export async function openMask(spec: MaskSpec, input: { shape: Vec3; spacing: Vec3 }): Promise<TissueMask> {
  const p = spec.path;
  if (!fs.existsSync(p)) throw new InputError(p, 'mask: no such file or directory');
  let array: VolumeArray;
  let factor: Vec3;
  let where = p;
  try {
    if (isArrayNode(p)) {
      if (spec.level !== undefined) throw new InputError(p, `mask: level "${spec.level}" named, but this is a bare array (levels are datasets of an NGFF group)`);
      array = await openArray(p, { boolAsUint8: true });
      checkDtype(array);
      factor = factorFromShapes(input.shape, array.shape, p);
    } else {
      const img = await openImage(p, [1, 1, 1], { boolAsUint8: true });
      const key = spec.level ?? '0';
      const level = img.levels.find((l) => l.key === key);
      if (!level) throw new InputError(p, `mask: no level "${key}" (levels: ${img.levels.map((l) => `"${l.key}"`).join(', ')})`);
      where = path.join(p, key);
      array = level.array;
      checkDtype(array);
      // A group without NGFF multiscales (a "0" array inside) has no scale: shapes decide.
      factor = isNgff(p)
        ? factorFromScale(input.spacing, level.spacing, input.shape, array.shape, where)
        : factorFromShapes(input.shape, array.shape, where);
    }
  } catch (err) {
    if (err instanceof InputError && !err.message.includes('mask')) throw new InputError(where, `mask: ${err.message.replace(/^[^:]*: /, '')}`, undefined, { cause: err });
    throw err;
  }
  const describe = `${where}: ${array.shape.join('x')} ${array.dtype}, chunks ${array.chunks.join(',')}, factor ${factor.join(',')}`;
  return { spec, array, factor, describe };
}

function isNgff(p: string): boolean {
  for (const f of ['.zattrs', 'zarr.json']) {
    try {
      const doc = JSON.parse(fs.readFileSync(path.join(p, f), 'utf8')) as { multiscales?: unknown; attributes?: { ome?: unknown; multiscales?: unknown } };
      if (doc.multiscales || doc.attributes?.ome || doc.attributes?.multiscales) return true;
    } catch {
      // Not this format.
    }
  }
  return false;
}

function checkDtype(a: VolumeArray): void {
  if (a.dtype !== 'uint8') throw new InputError(a.path, `mask: dtype ${a.dtype} is not a mask's (uint8 or bool, nonzero = tissue)`);
}

/** Is there tissue anywhere in full-resolution box `b`? Reads the mask under it in slabs, stopping at the first tissue voxel. */
export async function anyTissue(m: TissueMask, b: Box, io: IoOptions = {}): Promise<boolean> {
  const mb = intersect(toMaskBox(b, m.factor), boxOfShape(m.array.shape));
  if (isEmpty(mb)) return false;
  const s = shapeOf(mb);
  const depth = Math.max(1, Math.floor(SLAB_VOXELS / (s[1] * s[2])));
  for (let z = mb.begin[0]; z < mb.end[0]; z += depth) {
    const slab: Box = { begin: [z, mb.begin[1], mb.begin[2]], end: [Math.min(mb.end[0], z + depth), mb.end[1], mb.end[2]] };
    const a = await readRegion(m.array, slab, 'constant', 0, io);
    if (anyNonzero(a.data as Uint8Array)) return true;
  }
  return false;
}

export function anyNonzero(d: Uint8Array): boolean {
  for (let i = 0; i < d.length; i++) if (d[i] !== 0) return true;
  return false;
}

/**
 * Background outside the mask in arrays over full-resolution box `b`: each voxel whose mask voxel
 * is 0 gets 0 in `seg` and in every array of `also`. Reads only the mask under `b` (never a
 * voxel-sized copy of it). Returns the voxels set to background.
 */
export async function maskOut(m: TissueMask, b: Box, seg: Uint8Array, also: readonly Float32Array[], io: IoOptions = {}): Promise<number> {
  const mb = toMaskBox(b, m.factor);
  const src = (await readRegion(m.array, mb, 'constant', 0, io)).data as Uint8Array;
  if (!src.includes(0)) return 0;
  const f = m.factor, ms = shapeOf(mb), s = shapeOf(b);
  const col = new Int32Array(s[2]);
  for (let x = 0; x < s[2]; x++) col[x] = Math.floor((b.begin[2] + x) / f[2]) - mb.begin[2];
  let n = 0;
  let o = 0;
  for (let z = 0; z < s[0]; z++) {
    const mz = Math.floor((b.begin[0] + z) / f[0]) - mb.begin[0];
    for (let y = 0; y < s[1]; y++, o += s[2]) {
      const row = (mz * ms[1] + Math.floor((b.begin[1] + y) / f[1]) - mb.begin[1]) * ms[2];
      for (let x = 0; x < s[2]; x++) {
        if (src[row + col[x]] !== 0) continue;
        seg[o + x] = 0;
        for (let k = 0; k < also.length; k++) also[k][o + x] = 0;
        n++;
      }
    }
  }
  return n;
}

/**
 * The mask over full-resolution box `b`, one byte per voxel (nearest: each voxel takes the mask
 * voxel that covers it; outside the mask's extent is no tissue). Returns the count of tissue voxels too.
 */
export async function tissueOver(m: TissueMask, b: Box, io: IoOptions = {}): Promise<{ tissue: Uint8Array; count: number }> {
  const mb = toMaskBox(b, m.factor);
  const src = await readRegion(m.array, mb, 'constant', 0, io);
  return upsampleMask(src.data as Uint8Array, shapeOf(mb), mb.begin, b, m.factor);
}

/** Nearest upsampling of mask voxels (`data`, `shape`, starting at mask voxel `at`) onto full-resolution box `b`, as 0/1. */
export function upsampleMask(data: Uint8Array, shape: Vec3, at: Vec3, b: Box, f: Vec3): { tissue: Uint8Array; count: number } {
  const s = shapeOf(b);
  const out = new Uint8Array(s[0] * s[1] * s[2]);
  // The mask column of each x, once.
  const col = new Int32Array(s[2]);
  for (let x = 0; x < s[2]; x++) col[x] = Math.floor((b.begin[2] + x) / f[2]) - at[2];
  let count = 0;
  let o = 0;
  for (let z = 0; z < s[0]; z++) {
    const mz = Math.floor((b.begin[0] + z) / f[0]) - at[0];
    for (let y = 0; y < s[1]; y++) {
      const row = (mz * shape[1] + Math.floor((b.begin[1] + y) / f[1]) - at[1]) * shape[2];
      for (let x = 0; x < s[2]; x++, o++) {
        if (data[row + col[x]] !== 0) { out[o] = 1; count++; }
      }
    }
  }
  return { tissue: out, count };
}
