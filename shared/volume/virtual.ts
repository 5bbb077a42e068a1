// `virtual:` inputs: a synthetic volume of any shape whose chunks are rendered when read, never
// stored. They exist to run the pipeline at the scale it is built for (FAFB is
// 7062×301923×376277 voxels, ~800 TB of uint8) without the disk, and to do it on a volume whose
// ground truth is known:
//
//   tessera run --input 'virtual:em?shape=7062,301923,376277&seed=3' --output out.zarr
//
// The string is `virtual:<em|ct>?shape=Z,Y,X[&chunk=z,y,x][&seed=N][&fg=F]`. The image is the one
// `tessera synth` writes for the same kind, shape, seed and fg (synthScene, the same three-level
// pyramid: see synth/pyramid.ts), so a run on either reads the same voxels and writes the same
// segmentation. Each level is a Zarr v3 array (raw little-endian bytes) behind a read-only
// zarrita store that answers `k/zarr.json` from the parameters and `k/c/z/y/x` by rendering that
// chunk: nothing is cached here (each read renders again), so memory is flat whatever the shape.
//
// A level-k chunk is the level-0 chunk divided by the pyramid's factor, so it covers the same
// level-0 region and costs the same to render at every level (stage one reads level 2).
import * as path from 'node:path';
import * as zarr from 'zarrita';
import { type Box, type Vec3, boxOfShape, intersect, isEmpty, shapeOf } from '../geometry/box.ts';
import { array3, copyRegion } from '../array/array3.ts';
import { allocate } from './dtype.ts';
import { InputError } from '../errors.ts';
import { isRemote } from './remote.ts';
import {
  type SynthKind, type SynthScene, DEFAULT_FG, SYNTH_DTYPE, SYNTH_SPACING, SYNTH_UNIT, synthScene,
} from '../synth/index.ts';
import { PYRAMID_LEVELS, levelFactor, levelShapes, renderLevel } from '../synth/pyramid.ts';
import type { VolumeArray } from './zarr.ts';
import type { Image, Level } from './ome.ts';

export const VIRTUAL_PREFIX = 'virtual:';

/**
 * Storage chunk by kind when the string names none: half the synthetic presets' io.chunk in y
 * and x, so a task's halo renders a half chunk of its neighbours, not a whole io.chunk.
 */
export const VIRTUAL_CHUNK: Record<SynthKind, Vec3> = { em: [32, 256, 256], ct: [32, 192, 192] };

/**
 * CT scenes are an explicit object list placed for the whole volume at creation (lesions are
 * checked against each other, so the cost grows faster than the volume: ~0.3 s at 2^27 voxels,
 * ~1.5 s at 2^28, ~25 s at 2^30). Larger CT volumes are refused; EM scenes are generated per tile and have no limit.
 */
export const VIRTUAL_CT_MAX_VOXELS = 2 ** 28;

/** One rendered chunk at most this many voxels (it is allocated whole on each read). */
const MAX_CHUNK_VOXELS = 2 ** 27;

/** Voxel coordinates feed 32-bit hashes (synth/random.ts): beyond this they would wrap. */
const MAX_SIDE = 2 ** 31 - 1;

export interface VirtualSpec {
  kind: SynthKind;
  shape: Vec3;
  /** Level-0 storage chunk. */
  chunk: Vec3;
  seed: number;
  fg: number;
}

/** Is `input` a `virtual:` input (not a path)? */
export function isVirtual(input: string): boolean {
  return input.startsWith(VIRTUAL_PREFIX);
}

/**
 * An input as recorded for other processes (the NATS run record): a path made absolute, a
 * `virtual:` string or a URL (https://, s3://, gs://) unchanged (it names no local file, and
 * resolving it would make it one; every worker opens the same URL).
 */
export function resolveInput(input: string): string {
  return isVirtual(input) || isRemote(input) ? input : path.resolve(input);
}

const KEYS = ['shape', 'chunk', 'seed', 'fg'] as const;

function vec3Of(input: string, key: string, text: string, what: string): Vec3 {
  const parts = text.split(',');
  const v = parts.map((p) => (/^\d+$/.test(p.trim()) ? Number(p) : NaN));
  if (v.length !== 3 || !v.every((n) => Number.isSafeInteger(n) && n > 0)) {
    throw new InputError(input, `${key}=${text}: expected ${what} as three positive integers Z,Y,X`);
  }
  return v as unknown as Vec3;
}

/** Parse a `virtual:` input; an InputError names the input and the key or value that is wrong. */
export function parseVirtual(input: string): VirtualSpec {
  const rest = input.slice(VIRTUAL_PREFIX.length);
  const q = rest.indexOf('?');
  const kind = q < 0 ? rest : rest.slice(0, q);
  if (kind !== 'em' && kind !== 'ct') throw new InputError(input, `kind "${kind}": expected virtual:em?… or virtual:ct?…`);
  const params = new URLSearchParams(q < 0 ? '' : rest.slice(q + 1));
  const seen = new Set<string>();
  for (const key of params.keys()) {
    if (!(KEYS as readonly string[]).includes(key)) throw new InputError(input, `unknown key "${key}" (use ${KEYS.join(', ')})`);
    if (seen.has(key)) throw new InputError(input, `key "${key}" is given twice`);
    seen.add(key);
  }
  const shapeText = params.get('shape');
  if (shapeText === null) throw new InputError(input, 'key "shape" is required (shape=Z,Y,X)');
  const shape = vec3Of(input, 'shape', shapeText, 'the volume shape');
  if (shape.some((v) => v > MAX_SIDE)) throw new InputError(input, `shape=${shapeText}: each side must be at most ${MAX_SIDE}`);
  const chunkText = params.get('chunk');
  const chunk = chunkText === null ? VIRTUAL_CHUNK[kind] : vec3Of(input, 'chunk', chunkText, 'the storage chunk');
  if (chunk[0] * chunk[1] * chunk[2] > MAX_CHUNK_VOXELS) {
    throw new InputError(input, `chunk=${chunk.join(',')}: ${chunk[0] * chunk[1] * chunk[2]} voxels, more than ${MAX_CHUNK_VOXELS} (each read renders a whole chunk)`);
  }
  const seedText = params.get('seed');
  const seed = seedText === null ? 1 : Number(seedText);
  if (seedText !== null && (!/^-?\d+$/.test(seedText) || !Number.isSafeInteger(seed))) {
    throw new InputError(input, `seed=${seedText}: expected an integer`);
  }
  const fgText = params.get('fg');
  const fg = fgText === null ? DEFAULT_FG : Number(fgText);
  if (fgText !== null && (fgText.trim() === '' || !(fg >= 0 && fg <= 0.05))) {
    throw new InputError(input, `fg=${fgText}: expected a foreground fraction in [0, 0.05]`);
  }
  const voxels = shape[0] * shape[1] * shape[2];
  if (kind === 'ct' && voxels > VIRTUAL_CT_MAX_VOXELS) {
    throw new InputError(input, `shape=${shapeText}: a virtual CT volume holds at most ${VIRTUAL_CT_MAX_VOXELS} voxels (its lesions are placed for the whole volume up front); use virtual:em for larger volumes`);
  }
  return { kind, shape, chunk, seed, fg };
}

/** The level-k chunk: the level-0 chunk over the level's factor (at least 1). */
function levelChunk(chunk: Vec3, k: number): Vec3 {
  const f = levelFactor(k);
  return chunk.map((c, a) => Math.max(1, Math.ceil(c / f[a]))) as unknown as Vec3;
}

function arrayMeta(shape: Vec3, chunk: Vec3, dtype: string): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({
    zarr_format: 3,
    node_type: 'array',
    shape,
    data_type: dtype,
    chunk_grid: { name: 'regular', configuration: { chunk_shape: chunk } },
    chunk_key_encoding: { name: 'default', configuration: { separator: '/' } },
    codecs: [{ name: 'bytes', configuration: { endian: 'little' } }],
    fill_value: 0,
    attributes: {},
  }));
}

const KEY = /^\/(\d+)\/(?:zarr\.json|c\/(\d+)\/(\d+)\/(\d+))$/;

/**
 * A read-only zarrita store over the scene's pyramid: `/k/zarr.json` and `/k/c/z/y/x` for each
 * level k; undefined for anything else (zarrita probes `.zattrs`, `.zarray`). An edge chunk is
 * rendered where it lies inside the level and padded with the fill value to a whole chunk, as
 * zarrita decodes whole chunks only.
 */
export function virtualStore(scene: SynthScene, chunk: Vec3): zarr.AsyncReadable {
  const shapes = levelShapes(scene.shape);
  const chunks = shapes.map((_, k) => levelChunk(chunk, k));
  const meta = shapes.map((s, k) => arrayMeta(s, chunks[k], scene.dtype));
  return {
    async get(key: string): Promise<Uint8Array | undefined> {
      const m = KEY.exec(key);
      if (!m) return undefined;
      const k = Number(m[1]);
      if (k >= PYRAMID_LEVELS) return undefined;
      if (m[2] === undefined) return meta[k];
      const c = chunks[k];
      const index = [Number(m[2]), Number(m[3]), Number(m[4])];
      const whole: Box = {
        begin: index.map((i, a) => i * c[a]) as unknown as Vec3,
        end: index.map((i, a) => (i + 1) * c[a]) as unknown as Vec3,
      };
      const inside = intersect(whole, boxOfShape(shapes[k]));
      if (isEmpty(inside)) return undefined;
      let data = renderLevel(scene, k, inside);
      if (shapeOf(inside).some((v, a) => v !== c[a])) {
        const padded = array3(allocate(scene.dtype, c[0] * c[1] * c[2]), c);
        copyRegion(data, inside.begin, padded, whole.begin, inside);
        data = padded;
      }
      // Typed arrays hold the platform's byte order: little-endian on every platform Node runs on.
      return new Uint8Array(data.data.buffer, data.data.byteOffset, data.data.byteLength);
    },
  };
}

/**
 * Open a `virtual:` input as an image: levels 0, 1, 2 at the kind's synthetic spacing, each a
 * VolumeArray whose `path` is the input string (messages name it). Costs the scene (EM: nothing;
 * CT: its object list) and three metadata documents, whatever the shape.
 */
export async function openVirtualImage(input: string, o: { finite?: boolean } = {}): Promise<Image> {
  const spec = parseVirtual(input);
  const scene = synthScene({ kind: spec.kind, shape: spec.shape, seed: spec.seed, fg: spec.fg });
  const store = virtualStore(scene, spec.chunk);
  const dtype = SYNTH_DTYPE[spec.kind];
  const levels: Level[] = [];
  for (let k = 0; k < PYRAMID_LEVELS; k++) {
    const arr = await zarr.open.v3(zarr.root(store).resolve(String(k)), { kind: 'array' });
    const array: VolumeArray = {
      path: input,
      shape: arr.shape as unknown as Vec3,
      chunks: arr.chunks as unknown as Vec3,
      dtype,
      ...(o.finite ? { finite: true } : {}),
      zarr: arr,
    };
    const f = levelFactor(k);
    levels.push({ key: String(k), spacing: SYNTH_SPACING[spec.kind].map((s, a) => s * f[a]) as unknown as Vec3, array });
  }
  return { path: input, unit: SYNTH_UNIT[spec.kind], levels };
}
