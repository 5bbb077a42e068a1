// How much does a crop's stage-two prediction depend on what shares its canvas? For a sample
// of packed canvases, run each crop once in its canvas and once in situ: at the same place in a
// canvas of the same extent that holds the volume around it instead of its neighbours (what the
// network would see if the canvas were a tile of the volume), and compare on what is pasted:
// the crop's target (its context is read, never pasted). The in-situ reference does not depend
// on the fill or on the networks' normalisation: an "alone in an empty canvas" reference would,
// since instance normalisation takes its statistics from whatever surrounds the crop.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Box, boxOfShape, translate } from '../shared/geometry/box.ts';
import { array3, crop } from '../shared/array/array3.ts';
import { loadConfig } from '../shared/config/load.ts';
import { openRun } from '../shared/run/context.ts';
import { normalize } from '../shared/infer/model.ts';
import { readFull } from '../shared/volume/source.ts';
import { type Packing, type Placement } from '../shared/pipeline/pack.ts';
import { channelOf, occupied, stage2 } from '../shared/pipeline/stage2.ts';
import { vec } from '../shared/pipeline/pack-common.ts';
import { silentLogger } from '../shared/log.ts';
import { openArray, readRegion } from '../shared/volume/zarr.ts';

export interface CanvasEffect {
  crops: number;
  meanAbsDiff: number;
  maxAbsDiff: number;
  flipFraction: number;
  /**
   * Against the one-stage output on the same voxels: how often the crop packed with neighbours,
   * and in situ, take a different class than nnU-Net's sliding window (in situ vs one-stage is
   * the floor: one window against Gaussian-blended overlapping tiles).
   */
  oneStage?: { voxels: number; packedFlipFraction: number; inSituFlipFraction: number };
  /**
   * The network's own sensitivity to where a voxel sits in its window, for scale: the crop in
   * situ vs in situ with the window moved by a quarter of the canvas extent along each axis
   * where the crop stays inside (as overlapping sliding-window tiles see a voxel). Packing that
   * flips no more voxels than this perturbs a crop no more than moving the window does.
   */
  shifted: { voxels: number; flipFraction: number };
}

/** `overrides`: the two-stage run's config overrides (its `pack.fill` decides the canvases' fill). */
export async function measureCanvasEffect(
  vol: string, twoStageOut: string, preset: string, maxCrops: number, oneStageOut?: string, overrides: Record<string, unknown> = {},
): Promise<CanvasEffect> {
  const doc = JSON.parse(fs.readFileSync(path.join(twoStageOut, 'boxes.json'), 'utf8')) as {
    canvasShape: [number, number, number]; canvases: number;
    boxes: Array<{ id: number; placements: Array<{ canvas: number; source: Box; dest: Box; target: Box; resized: boolean }> }>;
  };
  const placements: Placement[] = doc.boxes.flatMap((b) => b.placements.map((p) => ({ boxId: b.id, ...p })));
  const packing: Packing = { canvasShape: doc.canvasShape, canvases: doc.canvases, placements, fillRatio: 0 };
  const config = loadConfig({ preset, overrides: { ...overrides, mode: 'two-stage' } });
  const ctx = await openRun({ config, input: vol, log: silentLogger() });
  try {
    const card = ctx.cards.fullres;
    const read = async (b: Box) => {
      const raw = await readFull(ctx.src, b);
      return array3(normalize(raw.data, card.normalization), raw.shape);
    };
    const fill = config.pack.fill === 'min' ? normalize([0], card.normalization)[0] : 0;
    const opts = { batch: 1, mirror: false, fill, context: config.pack.fill === 'context' };
    const shared = [...new Set(placements.map((p) => p.canvas))].filter((c) => placements.filter((p) => p.canvas === c).length > 1);
    const reference = oneStageOut ? await openArray(path.join(oneStageOut, 'probabilities', '0')) : undefined;
    let n = 0, sum = 0, max = 0, flips = 0, voxels = 0, refVoxels = 0, packedOff = 0, inSituOff = 0, shiftVoxels = 0, shiftFlips = 0;
    for (const ci of shared) {
      if (n >= maxCrops) break;
      const [together] = await stage2(packing, [ci], read, ctx.fullres, opts);
      const full = channelOf(together, 0, packing.canvasShape);
      const ext = occupied(packing, [ci], card.divisor);
      // A resized piece has no in-situ counterpart (its canvas scale is not the volume's).
      for (const p of placements.filter((q) => q.canvas === ci && !q.resized)) {
        if (n >= maxCrops) break;
        const shift = vec((a) => p.source.begin[a] - p.dest.begin[a]);
        const window = { ...p, canvas: 0, source: translate(boxOfShape(ext), shift), dest: boxOfShape(ext) };
        const [inSitu] = await stage2({ ...packing, canvases: 1, placements: [window] }, [0], read, ctx.fullres, opts);
        // Compare where the crop is pasted from: its target inside the placement (the context
        // around it is read but never pasted).
        const at = translate(p.target, vec((a) => -shift[a]));
        const a = crop(channelOf(inSitu, 0, packing.canvasShape), [0, 0, 0], at);
        const t = crop(full, [0, 0, 0], at);
        const q = vec((a) => Math.floor(ext[a] / 4));
        const move = vec((a) => (at.begin[a] - q[a] >= 0 ? q[a] : at.end[a] + q[a] <= ext[a] ? -q[a] : 0));
        if (move.some((m) => m !== 0)) {
          const moved = { ...window, source: translate(window.source, move) };
          const [m] = await stage2({ ...packing, canvases: 1, placements: [moved] }, [0], read, ctx.fullres, opts);
          const b = crop(channelOf(m, 0, packing.canvasShape), [0, 0, 0], translate(at, vec((k) => -move[k])));
          for (let i = 0; i < a.data.length; i++) if ((a.data[i] > 0.5) !== (b.data[i] > 0.5)) shiftFlips++;
          shiftVoxels += a.data.length;
        }
        for (let i = 0; i < a.data.length; i++) {
          const d = Math.abs(a.data[i] - t.data[i]);
          sum += d;
          if (d > max) max = d;
          if ((a.data[i] > 0.5) !== (t.data[i] > 0.5)) flips++;
        }
        voxels += a.data.length;
        if (reference) {
          const ref = await readRegion(reference, p.target);
          for (let i = 0; i < ref.data.length; i++) {
            const r = ref.data[i] > 0.5;
            if ((t.data[i] > 0.5) !== r) packedOff++;
            if ((a.data[i] > 0.5) !== r) inSituOff++;
          }
          refVoxels += ref.data.length;
        }
        n++;
      }
    }
    const r = (x: number) => Math.round(x * 1e5) / 1e5;
    return {
      crops: n, meanAbsDiff: r(voxels ? sum / voxels : 0), maxAbsDiff: r(max), flipFraction: r(voxels ? flips / voxels : 0),
      shifted: { voxels: shiftVoxels, flipFraction: r(shiftVoxels ? shiftFlips / shiftVoxels : 0) },
      ...(reference ? { oneStage: { voxels: refVoxels, packedFlipFraction: r(refVoxels ? packedOff / refVoxels : 0), inSituFlipFraction: r(refVoxels ? inSituOff / refVoxels : 0) } } : {}),
    };
  } finally {
    await ctx.pool.close();
  }
}
