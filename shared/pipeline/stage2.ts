// Stage two: the full-resolution model on packed canvases. Each canvas is assembled from
// normalised volume reads (resized where the packing says so), run in batches, and turned into
// foreground probabilities per canvas. Canvases are independent (instance normalisation is per
// sample), so the result of a canvas does not depend on its batch mates.
import type { Box } from '../geometry/box.ts';
import { type Array3, array3 } from '../array/array3.ts';
import type { Model } from '../infer/model.ts';
import { MIRRORS, flipInto, toProbabilities } from '../infer/sliding.ts';
import { type Packing, assembleCanvas } from './pack.ts';

export interface Stage2Options {
  /** Canvases per network call. */
  batch: number;
  /** Average over the 8 axis flips. */
  mirror: boolean;
  /** Canvas voxels no crop covers (normalised units). */
  fill: number;
  signal?: AbortSignal;
}

/** Foreground channels of one canvas: fg × D × H × W probabilities. */
export interface CanvasPrediction {
  canvas: number;
  channels: number;
  data: Float32Array;
}

/**
 * Run the canvases `indices` of `packing`. `read` returns the normalised volume over a source
 * box (padded outside the volume).
 */
export async function stage2(
  packing: Packing, indices: readonly number[], read: (source: Box) => Promise<Array3<Float32Array>>,
  model: Model, o: Stage2Options,
): Promise<CanvasPrediction[]> {
  const shape = packing.canvasShape;
  const vox = shape[0] * shape[1] * shape[2];
  const canvases: Array3<Float32Array>[] = [];
  for (const ci of indices) {
    const sources = new Map<string, Array3<Float32Array>>();
    for (const p of packing.placements) {
      if (p.canvas !== ci) continue;
      const key = `${p.source.begin}|${p.source.end}`;
      if (!sources.has(key)) sources.set(key, await read(p.source));
    }
    canvases.push(assembleCanvas(packing, ci, (s) => sources.get(`${s.begin}|${s.end}`)!, o.fill));
  }
  const mirrors = o.mirror ? MIRRORS : MIRRORS.slice(0, 1);
  const sums: Float32Array[] = [];
  let fg = 0;
  for (const flip of mirrors) {
    for (let b0 = 0; b0 < canvases.length; b0 += Math.max(1, o.batch)) {
      const group = canvases.slice(b0, b0 + Math.max(1, o.batch));
      const input = new Float32Array(group.length * vox);
      group.forEach((c, i) => {
        if (flip.some(Boolean)) flipInto(c.data, input.subarray(i * vox, (i + 1) * vox), 1, shape, flip);
        else input.set(c.data, i * vox);
      });
      const r = await model.run(input, [group.length, 1, ...shape], o.signal);
      const k = r.dims[1];
      const softmax = model.card.output === 'softmax' && k > 1;
      fg = softmax ? k - 1 : k;
      group.forEach((_, i) => {
        const block = r.data.subarray(i * k * vox, (i + 1) * k * vox);
        toProbabilities(block, k, vox, model.card.output);
        let fgBlock = block.subarray((k - fg) * vox);
        if (flip.some(Boolean)) {
          const un = new Float32Array(fg * vox);
          flipInto(fgBlock, un, fg, shape, flip);
          fgBlock = un;
        }
        const j = b0 + i;
        if (!sums[j]) sums[j] = new Float32Array(fg * vox);
        const s = sums[j];
        for (let v = 0; v < s.length; v++) s[v] += fgBlock[v];
      });
    }
  }
  return indices.map((canvas, j) => {
    const data = sums[j];
    if (mirrors.length > 1) for (let v = 0; v < data.length; v++) data[v] /= mirrors.length;
    return { canvas, channels: fg, data };
  });
}

/** One foreground channel of a canvas prediction as an Array3. */
export function channelOf(p: CanvasPrediction, c: number, shape: readonly [number, number, number]): Array3<Float32Array> {
  const vox = shape[0] * shape[1] * shape[2];
  return array3(p.data.subarray(c * vox, (c + 1) * vox), shape);
}
