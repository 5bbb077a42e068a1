// OME-Zarr (NGFF) multiscale images: read 0.4 (Zarr v2, attrs.multiscales) and 0.5 (Zarr v3,
// attrs.ome.multiscales); write 0.4 so Debian's python3-zarr and NGFF 0.4 viewers open it.
import * as path from 'node:path';
import * as fs from 'node:fs';
import type { Vec3 } from '../geometry/box.ts';
import { type VolumeArray, type OpenArrayOptions, openArray, readGroupAttributes } from './zarr.ts';
import { writeJsonAtomic } from './store.ts';
import { InputError } from '../errors.ts';
import { isVirtual, openVirtualImage } from './virtual.ts';
import { RemoteClient, RemoteStore, checkRemoteUrl, displayUrl, isRemote, remoteJoin, remoteParent } from './remote.ts';

export interface Level {
  /** Dataset path inside the image group ("0", "1", …). */
  readonly key: string;
  /** Voxel size in the image's unit, [z, y, x]. */
  readonly spacing: Vec3;
  readonly array: VolumeArray;
}

export interface Image {
  readonly path: string;
  readonly unit: string | undefined;
  /** Finest first. */
  readonly levels: readonly Level[];
}

interface Multiscale {
  axes?: Array<{ name: string; type?: string; unit?: string } | string>;
  datasets: Array<{ path: string; coordinateTransformations?: Array<{ type: string; scale?: number[] }> }>;
  coordinateTransformations?: Array<{ type: string; scale?: number[] }>;
}

function multiscalesOf(attrs: Record<string, unknown>, where: string): Multiscale[] | undefined {
  const ome = attrs.ome as { multiscales?: unknown } | undefined;
  const ms = ome?.multiscales ?? attrs.multiscales;
  if (ms === undefined) return undefined;
  const ok = Array.isArray(ms) && ms.every((m) => m && typeof m === 'object' && Array.isArray((m as Multiscale).datasets)
    && (m as Multiscale).datasets.every((d) => d && typeof d === 'object' && typeof d.path === 'string'));
  if (!ok) throw new InputError(where, '"multiscales" must be a list of {datasets: [{path, coordinateTransformations}], …} (NGFF)');
  return ms as Multiscale[];
}

function scaleOf(ts: Multiscale['datasets'][number]['coordinateTransformations']): number[] | undefined {
  return ts?.find((t) => t.type === 'scale')?.scale;
}

/**
 * Open an image: an NGFF multiscale group, a bare 3D array (one level whose spacing is
 * `fallbackSpacing`), a `virtual:` input (a synthetic volume rendered on read, virtual.ts), or
 * any of these at an https://, s3:// or gs:// URL (remote.ts).
 * Axes other than the last three must have size 1.
 */
export async function openImage(imagePath: string, fallbackSpacing: Vec3 = [1, 1, 1], opts: OpenArrayOptions = {}): Promise<Image> {
  if (isVirtual(imagePath)) return openVirtualImage(imagePath, opts);
  if (isRemote(imagePath)) return openRemoteImage(imagePath, fallbackSpacing, opts);
  if (!fs.existsSync(imagePath)) throw new InputError(imagePath, 'no such file or directory');
  if (isArrayNode(imagePath)) {
    // A bare array (v2 with or without .zattrs, or v3): one level. When it is a dataset of its
    // parent's multiscales (`vol.zarr/1`), that level's scale applies — never the fallback.
    const own = await scaleInParent(imagePath);
    return { path: imagePath, unit: own?.unit, levels: [{ key: '', spacing: own?.spacing ?? fallbackSpacing, array: await openArray(imagePath, opts) }] };
  }
  const attrs = readGroupAttributes(imagePath);
  const ms = attrs ? multiscalesOf(attrs, path.join(imagePath, fs.existsSync(path.join(imagePath, 'zarr.json')) ? 'zarr.json' : '.zattrs')) : undefined;
  if (!ms || ms.length === 0) {
    if (attrs !== undefined) {
      // A group without multiscales: accept a "0" array inside, as many tools write.
      if (fs.existsSync(path.join(imagePath, '0'))) {
        return { path: imagePath, unit: undefined, levels: [{ key: '0', spacing: fallbackSpacing, array: await openArray(path.join(imagePath, '0'), opts) }] };
      }
      throw new InputError(imagePath, 'a Zarr group without NGFF multiscales metadata and without a "0" array');
    }
    return { path: imagePath, unit: undefined, levels: [{ key: '', spacing: fallbackSpacing, array: await openArray(imagePath, opts) }] };
  }
  return imageOf(imagePath, ms[0], (key) => openArray(path.join(imagePath, key), opts), (key) => path.join(imagePath, key));
}

/** The image a multiscales entry describes, its levels opened by `open` (finest first, checked). */
async function imageOf(imagePath: string, m: Multiscale, open: (key: string) => Promise<VolumeArray>, where: (key: string) => string): Promise<Image> {
  const axes = (m.axes ?? []).map((a) => (typeof a === 'string' ? { name: a } : a));
  const nd = axes.length || 3;
  const global = scaleOf(m.coordinateTransformations) ?? new Array(nd).fill(1);
  const unit = axes.find((a) => a.type === 'space' || ['x', 'y', 'z'].includes(a.name))?.unit;
  const levels: Level[] = [];
  for (const d of m.datasets) {
    const scale = scaleOf(d.coordinateTransformations);
    if (!scale || scale.length < 3) throw new InputError(imagePath, `dataset "${d.path}" has no scale transformation`);
    const sp = scale.slice(-3).map((s, i) => s * (global.slice(-3)[i] ?? 1));
    levels.push({ key: d.path, spacing: sp as unknown as Vec3, array: await open(d.path) });
  }
  levels.sort((a, b) => a.spacing[0] * a.spacing[1] * a.spacing[2] - b.spacing[0] * b.spacing[1] * b.spacing[2]);
  checkPyramid(imagePath, levels, where);
  return { path: imagePath, unit, levels };
}

/** A node at a URL: array or group (with its attributes), from its metadata documents. */
export async function remoteNode(url: string, client: RemoteClient): Promise<{ kind: 'array' | 'group' | 'none'; attrs?: Record<string, unknown>; file: string }> {
  const store = new RemoteStore(url, client);
  const json = async (name: `/${string}`) => {
    const b = await store.get(name);
    if (!b) return undefined;
    try {
      return JSON.parse(new TextDecoder().decode(b)) as Record<string, unknown>;
    } catch (err) {
      throw new InputError(remoteJoin(displayUrl(url), name), `is not valid JSON (${(err as Error).message})`);
    }
  };
  const v3 = await json('/zarr.json');
  if (v3) return { kind: v3.node_type === 'array' ? 'array' : 'group', attrs: (v3.attributes as Record<string, unknown>) ?? {}, file: 'zarr.json' };
  if (await json('/.zarray')) return { kind: 'array', file: '.zattrs' };
  const attrs = await json('/.zattrs');
  if (attrs || (await json('/.zgroup'))) return { kind: 'group', attrs: attrs ?? {}, file: '.zattrs' };
  return { kind: 'none', file: '' };
}

/** `scaleInParent` for an array at a URL: its level's voxel size in the parent's multiscales. */
export async function remoteScaleInParent(url: string, o: OpenArrayOptions & { remote: RemoteClient }): Promise<{ spacing: Vec3; unit?: string } | undefined> {
  const parent = remoteParent(url);
  const up = parent ? await remoteNode(parent, o.remote).catch(() => undefined) : undefined;
  if (!parent || up?.kind !== 'group' || !up.attrs || !multiscalesOf(up.attrs, displayUrl(parent))) return undefined;
  const img = await openRemoteImage(parent, [1, 1, 1], o);
  const name = new URL(url).pathname.replace(/\/+$/, '').split('/').pop();
  const level = img.levels.find((l) => l.key === name);
  return level ? { spacing: level.spacing, unit: img.unit } : undefined;
}

/**
 * `openImage` for an https://, s3:// or gs:// input: the same cases (NGFF group, a bare array,
 * a dataset of a multiscales parent, a group with a "0" array), read through one RemoteClient.
 */
async function openRemoteImage(url: string, fallbackSpacing: Vec3, opts: OpenArrayOptions): Promise<Image> {
  checkRemoteUrl(url);
  const client = opts.remote ?? new RemoteClient();
  const o = { ...opts, remote: client };
  const shown = displayUrl(url);
  const node = await remoteNode(url, client);
  if (node.kind === 'none') throw new InputError(shown, 'no Zarr metadata there (zarr.json, .zarray, .zgroup): not a Zarr array or group, or the URL is wrong');
  if (node.kind === 'array') {
    const own = await remoteScaleInParent(url, o);
    return { path: shown, unit: own?.unit, levels: [{ key: '', spacing: own?.spacing ?? fallbackSpacing, array: await openArray(url, o) }] };
  }
  const ms = node.attrs ? multiscalesOf(node.attrs, `${shown}/${node.file}`) : undefined;
  if (!ms || ms.length === 0) {
    const zero = remoteJoin(url, '0');
    if ((await remoteNode(zero, client)).kind === 'array') return { path: shown, unit: undefined, levels: [{ key: '0', spacing: fallbackSpacing, array: await openArray(zero, o) }] };
    throw new InputError(shown, 'a Zarr group without NGFF multiscales metadata and without a "0" array');
  }
  const img = await imageOf(shown, ms[0], (key) => openArray(remoteJoin(url, key), o), (key) => `${shown}/${key}`);
  return img;
}

/** Is `p` a Zarr array (v2 `.zarray`, or v3 `zarr.json` with node_type "array")? */
export function isArrayNode(p: string): boolean {
  if (fs.existsSync(path.join(p, '.zarray'))) return true;
  const v3 = path.join(p, 'zarr.json');
  if (!fs.existsSync(v3)) return false;
  try {
    return (JSON.parse(fs.readFileSync(v3, 'utf8')) as { node_type?: string }).node_type === 'array';
  } catch {
    return false;
  }
}

/** The voxel size of an array that is a dataset of its parent group's multiscales. */
export async function scaleInParent(arrayPath: string): Promise<{ spacing: Vec3; unit?: string } | undefined> {
  const parent = path.dirname(path.resolve(arrayPath));
  const attrs = readGroupAttributes(parent);
  if (!attrs || !multiscalesOf(attrs, parent)) return undefined;
  const img = await openImage(parent);
  const level = img.levels.find((l) => l.key === path.basename(path.resolve(arrayPath)));
  return level ? { spacing: level.spacing, unit: img.unit } : undefined;
}

/**
 * Every level's shape must follow from level 0's and its scale (floor or ceil of the scaled
 * shape): a level edited or written at another size would be read at the wrong place silently.
 */
function checkPyramid(imagePath: string, levels: Level[], where: (key: string) => string): void {
  const [first, ...rest] = levels;
  for (const l of rest) {
    const want = first.array.shape.map((n, a) => (n * first.spacing[a]) / l.spacing[a]);
    const bad = l.array.shape.findIndex((n, a) => n < Math.floor(want[a] - 1e-6) || n > Math.ceil(want[a] + 1e-6));
    if (bad >= 0) {
      throw new InputError(where(l.key), `pyramid level "${l.key}" has shape ${l.array.shape.join('x')}, but its scale [${l.spacing}] and level "${first.key}" (${first.array.shape.join('x')} at [${first.spacing}]) make it ${want.map((w) => Math.round(w * 100) / 100).join('x')} (axis ${'zyx'[bad]} differs)`);
    }
  }
}

/**
 * The coarsest level not coarser than `target` on any axis (1 % slack), and the factor that is
 * left to downsample on the fly (1 where the level matches).
 */
export function pickLevel(image: Image, target: Vec3): { level: Level; factor: Vec3 } {
  let best = image.levels[0];
  for (const l of image.levels) {
    if (l.spacing.every((s, a) => s <= target[a] * 1.01)) {
      const vol = (x: Vec3) => x[0] * x[1] * x[2];
      if (vol(l.spacing) > vol(best.spacing)) best = l;
    }
  }
  const factor = best.spacing.map((s, a) => {
    const f = target[a] / s;
    return Math.abs(f - Math.round(f)) < 0.01 ? Math.max(1, Math.round(f)) : Math.max(1, f);
  }) as unknown as Vec3;
  return { level: best, factor };
}

/** NGFF 0.4 multiscales attributes for a 3D image with the given level spacings. */
export function multiscalesAttrs(name: string, unit: string, spacings: readonly Vec3[], keys?: readonly string[], translations?: readonly Vec3[]): Record<string, unknown> {
  return {
    multiscales: [{
      version: '0.4',
      name,
      axes: ['z', 'y', 'x'].map((n) => ({ name: n, type: 'space', unit })),
      datasets: spacings.map((s, i) => ({
        path: keys?.[i] ?? String(i),
        coordinateTransformations: [
          { type: 'scale', scale: [...s] },
          ...(translations?.[i]?.some((t) => t !== 0) ? [{ type: 'translation', translation: [...translations[i]] }] : []),
        ],
      })),
    }],
  };
}

/**
 * Cumulative downsampling factors of a label pyramid's levels 1, 2, …: each level halves the
 * axes whose voxel side is below twice the finest (EM at 40×4×4 nm halves y and x until they
 * reach z, then all three), as long as a chunk task's region at that level is still whole
 * storage chunks of `outputChunk` (so each task writes its own level chunks, nothing shared),
 * and until a level fits in one storage chunk.
 */
export function pyramidFactors(spacing: Vec3, chunk: Vec3, outputChunk: Vec3, shape: Vec3, maxLevels = 8): Vec3[] {
  const levels: Vec3[] = [];
  let f: Vec3 = [1, 1, 1];
  for (let l = 0; l < maxLevels; l++) {
    const size = [0, 1, 2].map((a) => Math.ceil(shape[a] / f[a]));
    if (size.every((v, a) => v <= outputChunk[a])) break;
    const side = spacing.map((s, a) => s * f[a]);
    const finest = Math.min(...side);
    const next = f.map((v, a) => (side[a] < 2 * finest ? v * 2 : v)) as unknown as Vec3;
    if (next.some((v, a) => chunk[a] % v !== 0 || (chunk[a] / v) % outputChunk[a] !== 0)) break;
    levels.push(next);
    f = next;
  }
  return levels;
}

/** A Zarr v3 group (zarr.json) with attributes. */
export async function createGroupV3(groupPath: string, attributes: Record<string, unknown>): Promise<void> {
  await fs.promises.mkdir(groupPath, { recursive: true });
  await writeJsonAtomic(path.join(groupPath, 'zarr.json'), { zarr_format: 3, node_type: 'group', attributes });
}

/** NGFF 0.4 attributes → NGFF 0.5 (everything under `ome`, the version said once). */
export function ngff05(attrs: Record<string, unknown>): Record<string, unknown> {
  const strip = (v: unknown): unknown => (Array.isArray(v) ? v.map(strip) : v && typeof v === 'object'
    ? Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'version').map(([k, x]) => [k, strip(x)])) : v);
  const { tessera, ...ngff } = attrs;
  return { ...(tessera ? { tessera } : {}), ...(Object.keys(ngff).length ? { ome: { version: '0.5', ...(strip(ngff) as object) } } : {}) };
}
