// `tessera synth`: write a synthetic volume in Tessera's input layout — an NGFF multiscale
// image (levels 0, 1, 2 at [1, 2, 2] steps) with ground truth at labels/gt/0 — tile by tile,
// so memory stays flat whatever the shape. Tiles are multiples of 4 in y and x, so each tile's
// pyramid is exact and each storage chunk of every level is written by exactly one tile.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OutputError } from '../errors.ts';
import pLimit from 'p-limit';
import { type Vec3, boxOfShape, intersect, shapeOf } from '../geometry/box.ts';
import { planGrid } from '../geometry/grid.ts';
import type { Array3 } from '../array/array3.ts';
import { createArray, createGroup, writeRegion, type VolumeArray } from '../volume/zarr.ts';
import { createGroupV3, multiscalesAttrs, ngff05 } from '../volume/ome.ts';
import { createShardedArray } from '../volume/shard.ts';
import type { DType } from '../volume/dtype.ts';
import { type SynthOptions, SYNTH_CLASSES, renderImage, renderLabels, synthScene } from '../synth/index.ts';
import { PYRAMID_LEVELS, PYRAMID_STEP, levelBox, nextLevel } from '../synth/pyramid.ts';

export { PYRAMID_LEVELS, PYRAMID_STEP } from '../synth/pyramid.ts';

export interface SynthWriteOptions extends SynthOptions {
  out: string;
  /** Replace an existing Zarr at `out` (removed completely first). Anything else there is refused. */
  overwrite?: boolean;
  /** Storage chunk of every array (the inner chunk when `shard` is set). @default [16, 128, 128] */
  chunks?: Vec3;
  /**
   * Write Zarr v3 (NGFF 0.5) with shards of this shape at level 0 (level k: shard / 2^k in y
   * and x), each holding inner chunks of `chunks` — the layout that keeps sparse reads small.
   * @default Zarr v2 (NGFF 0.4), one file per chunk
   */
  shard?: Vec3;
  onTile?: (done: number, total: number) => void;
}

export async function writeSynth(o: SynthWriteOptions): Promise<{ foreground: number; voxels: number }> {
  if (fs.existsSync(o.out)) {
    const zarr = ['.zgroup', '.zarray', 'zarr.json'].some((f) => fs.existsSync(path.join(o.out, f)));
    if (!o.overwrite) throw new OutputError(o.out, 'exists; pass --overwrite to replace it');
    if (!zarr) throw new OutputError(o.out, 'exists and is not a Zarr group or array; refusing to replace it, even with --overwrite');
    fs.rmSync(o.out, { recursive: true, force: true });
  }
  const scene = synthScene(o);
  const chunks = o.chunks ?? [16, 128, 128];
  const sh = o.shard;
  const levelShard = (k: number): Vec3 | undefined => sh && (sh.map((v, a) => v / PYRAMID_STEP[a] ** k) as unknown as Vec3);
  if (sh && [0, 1, 2].some((a) => levelShard(PYRAMID_LEVELS - 1)![a] % chunks[a] !== 0)) {
    throw new OutputError(o.out, `shard ${sh.join('x')} must be a multiple of the inner chunk ${chunks.join('x')} × ${PYRAMID_STEP.map((s) => s ** (PYRAMID_LEVELS - 1)).join('x')} (levels ${PYRAMID_LEVELS - 1} deep)`);
  }
  const group = (p: string, attrs: Record<string, unknown>) => (sh ? createGroupV3(p, ngff05(attrs)) : createGroup(p, attrs));
  const array = (p: string, shape: Vec3, dtype: DType, k: number) => (sh
    ? createShardedArray(p, { shape, shard: levelShard(k)!, chunks, dtype })
    : createArray(p, { shape, chunks, dtype }));
  const spacing = scene.spacing;
  const spacings: Vec3[] = [];
  const arrays: VolumeArray[] = [];
  await group(o.out, {});
  let shape = scene.shape;
  for (let k = 0; k < PYRAMID_LEVELS; k++) {
    const f = PYRAMID_STEP.map((s) => s ** k);
    spacings.push(spacing.map((s, a) => s * f[a]) as unknown as Vec3);
    arrays.push(await array(path.join(o.out, String(k)), shape, scene.dtype, k));
    shape = shape.map((v, a) => Math.ceil(v / PYRAMID_STEP[a])) as unknown as Vec3;
  }
  await group(o.out, {
    ...multiscalesAttrs(`synthetic-${o.kind}`, scene.unit, spacings),
    tessera: { synth: { kind: o.kind, shape: scene.shape, seed: o.seed, fg: scene.fg } },
  });
  await group(path.join(o.out, 'labels'), { labels: ['gt'] });
  await group(path.join(o.out, 'labels', 'gt'), {
    ...multiscalesAttrs('gt', scene.unit, [spacing]),
    'image-label': { version: '0.4', properties: SYNTH_CLASSES[o.kind].map((c, i) => ({ 'label-value': i, class: c })) },
  });
  const gt = await array(path.join(o.out, 'labels', 'gt', '0'), scene.shape, 'uint8', 0);

  // Tiles: one shard, or chunk depth in z and 4 storage chunks in y and x (multiples of 4 keep
  // levels exact); each storage chunk or shard of every level is written by one tile.
  const tile: Vec3 = sh ?? [chunks[0], chunks[1] * 4, chunks[2] * 4];
  const tiles = planGrid(boxOfShape(scene.shape), tile, [0, 0, 0]);
  let foreground = 0;
  let done = 0;
  const limit = pLimit(2);
  await Promise.all(tiles.map((t) => limit(async () => {
    const region = intersect(t.writeBox, boxOfShape(scene.shape));
    const image = renderImage(scene, region);
    const labels = renderLabels(scene, region);
    for (let i = 0; i < labels.data.length; i++) foreground += labels.data[i] ? 1 : 0;
    // The image is a later run's input, which fails on a missing chunk by default: every
    // chunk gets a file. Labels are read only as ground truth, where a missing chunk is 0.
    await writeRegion(arrays[0], region, image, { writeFillChunks: true });
    await writeRegion(gt, region, labels);
    let level: Array3 = image;
    for (let k = 1; k < PYRAMID_LEVELS; k++) {
      level = nextLevel(level, scene.dtype);
      const lb = levelBox(region, k);
      if (shapeOf(lb).some((v, a) => v !== level.shape[a])) throw new Error(`synth: pyramid tile mismatch at level ${k}`);
      await writeRegion(arrays[k], lb, level, { writeFillChunks: true });
    }
    o.onTile?.(++done, tiles.length);
  })));
  return { foreground, voxels: scene.shape[0] * scene.shape[1] * scene.shape[2] };
}
