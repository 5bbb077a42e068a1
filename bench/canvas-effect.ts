// How much does a crop's stage-two prediction depend on what shares its canvas? nnU-Net
// networks use instance normalisation, so canvas neighbours (and padding) shift the statistics
// a crop is normalised with. For a sample of packed canvases, run each crop once in its canvas
// and once alone in an otherwise empty canvas, and compare on what is pasted: the crop's target
// (its context is read, never pasted).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Box } from '../shared/geometry/box.ts';
import { array3, crop } from '../shared/array/array3.ts';
import { loadConfig } from '../shared/config/load.ts';
import { openRun } from '../shared/run/context.ts';
import { normalize } from '../shared/infer/model.ts';
import { readFull } from '../shared/volume/source.ts';
import { type Packing, type Placement } from '../shared/pipeline/pack.ts';
import { channelOf, stage2 } from '../shared/pipeline/stage2.ts';
import { silentLogger } from '../shared/log.ts';
import { openArray, readRegion } from '../shared/volume/zarr.ts';

export interface CanvasEffect {
  crops: number;
  meanAbsDiff: number;
  maxAbsDiff: number;
  flipFraction: number;
  /**
   * Against the one-stage output on the same voxels (unresized crops only): how often the crop
   * packed with neighbours, and alone, take a different class than nnU-Net's sliding window.
   * Instance normalisation makes "alone" no reference of its own: these say which is closer.
   */
  oneStage?: { voxels: number; packedFlipFraction: number; aloneFlipFraction: number };
}

export async function measureCanvasEffect(vol: string, twoStageOut: string, preset: string, maxCrops: number, oneStageOut?: string): Promise<CanvasEffect> {
  const doc = JSON.parse(fs.readFileSync(path.join(twoStageOut, 'boxes.json'), 'utf8')) as {
    canvasShape: [number, number, number]; canvases: number;
    boxes: Array<{ id: number; placements: Array<{ canvas: number; source: Box; dest: Box; target: Box; resized: boolean }> }>;
  };
  const placements: Placement[] = doc.boxes.flatMap((b) => b.placements.map((p) => ({ boxId: b.id, ...p })));
  const packing: Packing = { canvasShape: doc.canvasShape, canvases: doc.canvases, placements, fillRatio: 0 };
  const ctx = await openRun({ config: loadConfig({ preset, overrides: { mode: 'one-stage' } }), input: vol, log: silentLogger() });
  try {
    const card = ctx.cards.fullres;
    const read = async (b: Box) => {
      const raw = await readFull(ctx.src, b);
      return array3(normalize(raw.data, card.normalization), raw.shape);
    };
    const opts = { batch: 1, mirror: false, fill: 0 };
    const shared = [...new Set(placements.map((p) => p.canvas))].filter((c) => placements.filter((p) => p.canvas === c).length > 1);
    const reference = oneStageOut ? await openArray(path.join(oneStageOut, 'probabilities', '0')) : undefined;
    let n = 0, sum = 0, max = 0, flips = 0, voxels = 0, refVoxels = 0, packedOff = 0, aloneOff = 0;
    for (const ci of shared) {
      if (n >= maxCrops) break;
      const [together] = await stage2(packing, [ci], read, ctx.fullres, opts);
      const full = channelOf(together, 0, packing.canvasShape);
      for (const p of placements.filter((q) => q.canvas === ci)) {
        if (n >= maxCrops) break;
        const aloneP: Packing = { ...packing, canvases: 1, placements: [{ ...p, canvas: 0 }] };
        const [alone] = await stage2(aloneP, [0], read, ctx.fullres, opts);
        // Compare where the crop is pasted from: its target inside the placement (the context
        // around it is read but never pasted); a resized piece is compared whole.
        const at = p.resized ? p.dest : {
          begin: p.target.begin.map((v, a) => v - p.source.begin[a] + p.dest.begin[a]) as unknown as Box['begin'],
          end: p.target.end.map((v, a) => v - p.source.begin[a] + p.dest.begin[a]) as unknown as Box['end'],
        };
        const a = crop(channelOf(alone, 0, packing.canvasShape), [0, 0, 0], at);
        const t = crop(full, [0, 0, 0], at);
        for (let i = 0; i < a.data.length; i++) {
          const d = Math.abs(a.data[i] - t.data[i]);
          sum += d;
          if (d > max) max = d;
          if ((a.data[i] > 0.5) !== (t.data[i] > 0.5)) flips++;
        }
        voxels += a.data.length;
        if (reference && !p.resized) {
          const ref = await readRegion(reference, p.target);
          for (let i = 0; i < ref.data.length; i++) {
            const r = ref.data[i] > 0.5;
            if ((t.data[i] > 0.5) !== r) packedOff++;
            if ((a.data[i] > 0.5) !== r) aloneOff++;
          }
          refVoxels += ref.data.length;
        }
        n++;
      }
    }
    const r = (x: number) => Math.round(x * 1e5) / 1e5;
    return {
      crops: n, meanAbsDiff: r(voxels ? sum / voxels : 0), maxAbsDiff: r(max), flipFraction: r(voxels ? flips / voxels : 0),
      ...(reference ? { oneStage: { voxels: refVoxels, packedFlipFraction: r(refVoxels ? packedOff / refVoxels : 0), aloneFlipFraction: r(refVoxels ? aloneOff / refVoxels : 0) } } : {}),
    };
  } finally {
    await ctx.pool.close();
  }
}
