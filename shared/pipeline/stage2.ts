// Stage two: the full-resolution model on packed canvases. Each canvas is assembled from
// normalised volume reads (resized where the packing says so), run in batches, and turned into
// foreground probabilities per canvas. Canvases are independent (instance normalisation is per
// sample), so the result of a canvas does not depend on its batch mates.
import { type Box, type Vec3, boxOfShape } from '../geometry/box.ts';
import { type Array3, array3, crop } from '../array/array3.ts';
import type { Model } from '../infer/model.ts';
import { MIRRORS, activate, flipInto, foregroundCount } from '../infer/sliding.ts';
import { type Packing, assembleCanvas } from './pack.ts';
import { runExtent } from './pack-common.ts';
import { type ContextFill, contextFill } from './pack-fill.ts';

export interface Stage2Options {
  /** Canvases per network call. */
  batch: number;
  /** Average over the 8 axis flips. */
  mirror: boolean;
  /** Canvas voxels no crop covers (normalised units), unless `context` fills them. */
  fill: number;
  /** Fill the canvas around crops with real volume context (pack-fill.ts; `pack.fill: context`). */
  context?: boolean;
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
    const context = o.context ? canvasContext(packing, ci, model.card.divisor) : undefined;
    for (const b of context?.reads ?? packing.placements.filter((p) => p.canvas === ci).map((p) => p.source)) {
      const key = `${b.begin}|${b.end}`;
      if (!sources.has(key)) sources.set(key, await read(b));
    }
    canvases.push(assembleCanvas(packing, ci, (s) => sources.get(`${s.begin}|${s.end}`)!, o.fill, context));
  }
  const mirrors = o.mirror ? MIRRORS : MIRRORS.slice(0, 1);
  // Every channel is summed over the mirrors (in logit space, as nnU-Net averages mirrors) and
  // activated once at the end; the background channel is dropped after the softmax.
  const sums: Float32Array[] = [];
  let k = 0;
  for (let b0 = 0; b0 < canvases.length; b0 += Math.max(1, o.batch)) {
    const group = indices.slice(b0, b0 + Math.max(1, o.batch));
    // Run only the occupied part of the group's canvases (rounded up to what the network
    // needs): a canvas that is mostly unused space would be mostly fill, which both wastes
    // work and, through instance normalisation, distorts the prediction of what it holds.
    const ext = occupied(packing, group, model.card.divisor);
    const ev = ext[0] * ext[1] * ext[2];
    const parts = group.map((_, i) => crop(canvases[b0 + i], [0, 0, 0], boxOfShape(ext)));
    for (const flip of mirrors) {
      const input = new Float32Array(group.length * ev);
      parts.forEach((c, i) => {
        if (flip.some(Boolean)) flipInto(c.data, input.subarray(i * ev, (i + 1) * ev), 1, ext, flip);
        else input.set(c.data, i * ev);
      });
      const r = await model.run(input, [group.length, 1, ...ext], o.signal);
      k = r.dims[1];
      group.forEach((_, i) => {
        let block = r.data.subarray(i * k * ev, (i + 1) * k * ev);
        if (flip.some(Boolean)) {
          const un = new Float32Array(k * ev);
          flipInto(block, un, k, ext, flip);
          block = un;
        }
        const j = b0 + i;
        if (!sums[j]) sums[j] = new Float32Array(k * vox);
        for (let c = 0; c < k; c++) {
          const dst = array3(sums[j].subarray(c * vox, (c + 1) * vox), shape);
          const src = array3(block.subarray(c * ev, (c + 1) * ev), ext);
          addInto(src, dst);
        }
      });
    }
  }
  const fg = foregroundCount(model.card, k);
  return indices.map((canvas, j) => {
    const data = sums[j];
    if (mirrors.length > 1) for (let v = 0; v < data.length; v++) data[v] /= mirrors.length;
    activate(data, k, vox, model.card);
    return { canvas, channels: fg, data: data.slice((k - fg) * vox) };
  });
}

/**
 * The context fill of canvas `ci` over its own occupied extent (what the network runs), so a
 * canvas is assembled the same whatever it is batched with.
 */
function canvasContext(packing: Packing, ci: number, divisor: Vec3): ContextFill {
  return contextFill(packing.placements.filter((p) => p.canvas === ci), occupied(packing, [ci], divisor));
}

/** The canvas extent [0, ext) holding every placement of `canvases`, rounded up to `divisor`. */
export function occupied(packing: Packing, canvases: readonly number[], divisor: Vec3): Vec3 {
  const ext = [1, 1, 1];
  for (const p of packing.placements) {
    if (!canvases.includes(p.canvas)) continue;
    for (let a = 0; a < 3; a++) ext[a] = Math.max(ext[a], p.dest.end[a]);
  }
  return runExtent(ext, packing.canvasShape, divisor);
}

/** dst[region of src's shape at the origin] += src. */
function addInto(src: Array3<Float32Array>, dst: Array3<Float32Array>): void {
  const [D, H, W] = src.shape;
  const [, dh, dw] = dst.shape;
  for (let z = 0; z < D; z++) for (let y = 0; y < H; y++) {
    const so = (z * H + y) * W;
    const d = (z * dh + y) * dw;
    for (let x = 0; x < W; x++) dst.data[d + x] += src.data[so + x];
  }
}

/** One foreground channel of a canvas prediction as an Array3. */
export function channelOf(p: CanvasPrediction, c: number, shape: readonly [number, number, number]): Array3<Float32Array> {
  const vox = shape[0] * shape[1] * shape[2];
  return array3(p.data.subarray(c * vox, (c + 1) * vox), shape);
}
