// What a tissue mask leaves of a FAFB run, through the real skip code: a neuropil mask of a stated
// shape is written as real Zarr, then task indices sampled over the fafb preset's whole grid are
// asked what the task code asks (tasks/mask.ts: tissueReach → reachBox → anyTissue on the mask).
// The shares that run replace the "neuropil = 1/16 of the box" assumption of the projection
// (bench/fafb-sim.ts, `project`).
//
// The mask: bench/cpu-model.ts's neuropil ellipsoid (5·10¹³ voxels, every section, the brain's
// 590 × 340 µm aspect), rasterised at 24 × 256 × 256 input voxels per mask voxel (≈ 1 µm³ at
// 40 × 4 × 4 nm): a mask voxel is tissue when its centre lies inside. 295 × 1,180 × 1,470 mask
// voxels in 16 × 64 × 64 chunks, written slab by slab (never held whole).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Vec3, boxOfShape, volumeOf } from '../shared/geometry/box.ts';
import { blockReach, indexOf, rangeSize } from '../shared/geometry/grid.ts';
import { array3 } from '../shared/array/array3.ts';
import { multiscalesAttrs } from '../shared/volume/ome.ts';
import { createArray, createGroup, writeRegion } from '../shared/volume/zarr.ts';
import { anyTissue, openMask } from '../shared/volume/mask.ts';
import { loadConfig } from '../shared/config/load.ts';
import { taskGraph, boxesReach, stage2Chunks } from '../shared/tasks/graph.ts';
import { reachBox, tissueReach } from '../shared/tasks/mask.ts';
import { mulberry32 } from '../shared/synth/random.ts';
import { fafbTissue, NEUROPIL_VOXELS } from './cpu-model.ts';
import { FAFB_SHAPE } from './scale.ts';

export const MASK_FACTOR: Vec3 = [24, 256, 256];
const MASK_CHUNK: Vec3 = [16, 64, 64];

export interface MaskKind {
  /** Tasks of the kind over the whole grid, sampled, and of the sample those with tissue in reach (that run). */
  tasks: number;
  sampled: number;
  run: number;
  /** run / sampled, weighted by the task's voxels (chunks at the volume's far edges are smaller). */
  voxelShare: number;
}

export interface FafbMask {
  /** How the mask was made (one line). */
  shape: string;
  maskShape: Vec3;
  factor: Vec3;
  /** Voxels the mask calls tissue (mask voxels × factor volume) and their share of the bounding box. */
  tissueVoxels: number;
  tissueShare: number;
  /** Per kind of the two-stage and one-stage graphs (fafb preset). */
  kinds: Record<string, MaskKind>;
  seconds: { write: number; sample: number };
}

/** Write the neuropil mask as an NGFF group (level "0"); returns its tissue voxel count in input voxels. */
async function writeNeuropilMask(file: string): Promise<{ maskShape: Vec3; tissue: number }> {
  const t = fafbTissue(FAFB_SHAPE, NEUROPIL_VOXELS);
  const f = MASK_FACTOR;
  const maskShape = FAFB_SHAPE.map((v, a) => Math.ceil(v / f[a])) as unknown as Vec3;
  await createGroup(file, multiscalesAttrs('fafb-neuropil', 'nanometer', [[40 * f[0], 4 * f[1], 4 * f[2]]], ['0']));
  const va = await createArray(path.join(file, '0'), { shape: maskShape, chunks: MASK_CHUNK, dtype: 'uint8' });
  let tissue = 0;
  const [, Y, X] = maskShape;
  for (let z0 = 0; z0 < maskShape[0]; z0 += MASK_CHUNK[0]) {
    const depth = Math.min(MASK_CHUNK[0], maskShape[0] - z0);
    const slab = new Uint8Array(depth * Y * X);
    for (let dz = 0; dz < depth; dz++) {
      const cz = ((z0 + dz + 0.5) * f[0] - t.centre[0]) / t.semi[0];
      for (let y = 0; y < Y; y++) {
        const cy = ((y + 0.5) * f[1] - t.centre[1]) / t.semi[1];
        const r = 1 - cz * cz - cy * cy;
        if (r <= 0) continue;
        // The row's x interval inside the ellipse, in mask voxels whose centre lies inside.
        const half = t.semi[2] * Math.sqrt(r);
        const x0 = Math.max(0, Math.ceil((t.centre[2] - half) / f[2] - 0.5));
        const x1 = Math.min(X - 1, Math.floor((t.centre[2] + half) / f[2] - 0.5));
        if (x1 < x0) continue;
        slab.fill(1, (dz * Y + y) * X + x0, (dz * Y + y) * X + x1 + 1);
        tissue += x1 - x0 + 1;
      }
    }
    await writeRegion(va, { begin: [z0, 0, 0], end: [z0 + depth, Y, X] }, array3(slab, [depth, Y, X]));
  }
  return { maskShape, tissue: tissue * f[0] * f[1] * f[2] };
}

/**
 * The mask's effect on the fafb preset's grid: `samples` task indices per kind, uniform over the
 * grid (seeded), each asked whether tissue lies in its reach, as the task would ask.
 */
export async function fafbMask(dir: string, samples: number): Promise<FafbMask> {
  const file = path.join(dir, 'fafb-neuropil-mask.zarr');
  fs.rmSync(file, { recursive: true, force: true });
  const t0 = performance.now();
  const { maskShape, tissue } = await writeNeuropilMask(file);
  const t1 = performance.now();
  const mask = await openMask({ path: file }, { shape: FAFB_SHAPE, spacing: [40, 4, 4] });
  const kinds: Record<string, MaskKind> = {};
  for (const mode of ['two-stage', 'one-stage'] as const) {
    const c = loadConfig({ preset: 'fafb', overrides: { mode } });
    const factor = c.stage1.spacing.map((s, a) => s / c.spacing[a]) as unknown as Vec3;
    const graph = taskGraph(c, FAFB_SHAPE, boxOfShape(FAFB_SHAPE), factor);
    const g = { stage1Block: graph.stage1Block, stage2Block: stage2Chunks(c), view: mode === 'two-stage' ? boxesReach(c, factor) : [0, 0, 0] as Vec3 };
    for (const k of graph.kinds) {
      if (!tissueReach(k.name, [0, 0, 0], g)) continue;
      const rng = mulberry32(0x7e55 + Object.keys(kinds).length);
      const n = rangeSize(k.range);
      let run = 0, vRun = 0, vAll = 0;
      for (let s = 0; s < samples; s++) {
        const index = indexOf(k.range, Math.floor(rng() * n));
        // The task's own voxels: its block of chunks, clipped to the volume.
        const v = volumeOf(reachBox(blockReach(index, k.block, [0, 0, 0]), graph.chunk, graph.volume));
        vAll += v;
        if (await anyTissue(mask, reachBox(tissueReach(k.name, index, g)!, graph.chunk, graph.volume))) { run++; vRun += v; }
      }
      kinds[k.name] = { tasks: n, sampled: samples, run, voxelShare: vAll ? vRun / vAll : 0 };
    }
  }
  const t2 = performance.now();
  fs.rmSync(file, { recursive: true, force: true });
  const box = FAFB_SHAPE[0] * FAFB_SHAPE[1] * FAFB_SHAPE[2];
  return {
    shape: `bench/cpu-model.ts's neuropil ellipsoid (${(NEUROPIL_VOXELS / 1e13).toFixed(0)} × 10¹³ voxels, every section, 590 × 340 µm aspect) rasterised at ${MASK_FACTOR.join(' × ')} input voxels per mask voxel (${maskShape.join(' × ')} mask voxels, uint8 NGFF, a mask voxel is tissue when its centre is inside)`,
    maskShape, factor: mask.factor, tissueVoxels: tissue, tissueShare: tissue / box, kinds,
    seconds: { write: Math.round(t1 - t0) / 1000, sample: Math.round(t2 - t1) / 1000 },
  };
}
