// nnU-Net v2's sliding-window inference (predict_sliding_window_return_logits): tiles at step =
// patch × step fraction spread evenly over the volume, a Gaussian importance map (σ = patch/8,
// centred at patch // 2) weighting each tile's *logits*, mirroring test-time augmentation
// averaged in logit space, the weighted sum divided by the summed weights and only then turned
// into probabilities; inputs smaller than a patch padded with zeros centred, as nnU-Net's
// pad_nd_image does. A model whose graph already outputs probabilities (card `output:
// "probabilities"`) has its probabilities averaged instead, never activated twice.
// test/golden.test.ts checks all of this against a PyTorch reference of nnU-Net's code.
// Tiles run in batches on a Model (inference threads); results are accumulated strictly in
// tile order so the sum — and hence the output — is bit-identical run to run.
import { type Box, type Vec3, boxOfShape } from '../geometry/box.ts';
import { type Array3, array3 } from '../array/array3.ts';
import type { Model, ModelCard } from './model.ts';

export interface SlidingOptions {
  patch: Vec3;
  /** Tile step as a fraction of the patch. @default 0.5 */
  step: number;
  /** Average over all 8 axis flips (nnU-Net mirroring TTA). @default false */
  mirror: boolean;
  /** Tiles per network call. @default 2 */
  batch: number;
  /** Network calls in flight at once (≥ the number of inference threads keeps them busy). @default 2 */
  inFlight: number;
  signal?: AbortSignal;
}

/** Tile start positions along one axis (nnU-Net compute_steps_for_sliding_window). */
export function tileSteps(size: number, patch: number, step: number): number[] {
  if (size <= patch) return [0];
  const n = Math.ceil((size - patch) / (patch * step)) + 1;
  const actual = (size - patch) / (n - 1);
  return Array.from({ length: n }, (_, i) => roundHalfEven(actual * i));
}

/** numpy's np.round: halves go to the even neighbour (nnU-Net's tile positions use it). */
function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * nnU-Net's Gaussian importance map: a unit impulse at patch // 2 blurred with σ = patch/8 per
 * axis (separable, so a product of 1-D Gaussians), peak 1, zeros replaced by the smallest
 * non-zero value. (nnU-Net scales it by 10; the scale cancels in the division.)
 */
export function gaussianMap(patch: Vec3): Float32Array {
  const [gz, gy, gx] = [gaussAxis(patch[0]), gaussAxis(patch[1]), gaussAxis(patch[2])];
  const out = new Float32Array(patch[0] * patch[1] * patch[2]);
  let min = Infinity;
  let o = 0;
  for (let z = 0; z < patch[0]; z++) for (let y = 0; y < patch[1]; y++) for (let x = 0; x < patch[2]; x++) {
    const v = gz[z] * gy[y] * gx[x];
    out[o++] = v;
    if (v > 0 && v < min) min = v;
  }
  for (let i = 0; i < out.length; i++) if (out[i] === 0) out[i] = min;
  return out;
}

/** Flip a C×D×H×W block (C channels) along the axes in `flip` ([z, y, x] booleans). */
export function flipInto(src: Float32Array, dst: Float32Array, channels: number, s: Vec3, flip: readonly boolean[]): void {
  const [D, H, W] = s;
  const vox = D * H * W;
  for (let c = 0; c < channels; c++) {
    const base = c * vox;
    for (let z = 0; z < D; z++) {
      const zz = flip[0] ? D - 1 - z : z;
      for (let y = 0; y < H; y++) {
        const yy = flip[1] ? H - 1 - y : y;
        const so = base + (z * H + y) * W;
        const dO = base + (zz * H + yy) * W;
        if (flip[2]) for (let x = 0; x < W; x++) dst[dO + W - 1 - x] = src[so + x];
        else dst.set(src.subarray(so, so + W), dO);
      }
    }
  }
}

/** In-place softmax (or sigmoid) over the channel axis of a K×V block → probabilities. */
export function toProbabilities(logits: Float32Array, k: number, vox: number, output: 'softmax' | 'sigmoid'): void {
  if (output === 'sigmoid' || k === 1) {
    for (let i = 0; i < logits.length; i++) logits[i] = 1 / (1 + Math.exp(-logits[i]));
    return;
  }
  for (let v = 0; v < vox; v++) {
    let m = -Infinity;
    for (let c = 0; c < k; c++) m = Math.max(m, logits[c * vox + v]);
    let sum = 0;
    for (let c = 0; c < k; c++) {
      const e = Math.exp(logits[c * vox + v] - m);
      logits[c * vox + v] = e;
      sum += e;
    }
    for (let c = 0; c < k; c++) logits[c * vox + v] /= sum;
  }
}

/** Foreground channels of a K-channel output: softmax drops the background channel 0. */
export function foregroundCount(card: Pick<ModelCard, 'activation'>, k: number): number {
  return card.activation === 'softmax' && k > 1 ? k - 1 : k;
}

/**
 * Turn a K×V block of network output into probabilities in place: the card's activation when
 * the graph outputs logits; nothing when it already outputs probabilities.
 */
export function activate(block: Float32Array, k: number, vox: number, card: Pick<ModelCard, 'output' | 'activation'>): void {
  if (card.output === 'logits') toProbabilities(block, k, vox, card.activation);
}

export const MIRRORS: readonly (readonly boolean[])[] = [
  [false, false, false], [true, false, false], [false, true, false], [false, false, true],
  [true, true, false], [true, false, true], [false, true, true], [true, true, true],
];

/**
 * Gaussian importance of one axis (nnU-Net: σ = p/8 around p // 2), float64. gaussianMap is
 * their product, gz·gy·gx in that order, stored as float32 (never 0: each factor ≥ e⁻⁸).
 */
export function gaussAxis(p: number): Float64Array {
  const sg = p / 8;
  const c = Math.floor(p / 2);
  return Float64Array.from({ length: p }, (_, i) => Math.exp(-((i - c) ** 2) / (2 * sg * sg)));
}

/** Per-axis factors of the summed tile importance over a region: weight(z, y, x) = z·y·x. */
export type TileWeights = readonly [Float64Array, Float64Array, Float64Array];

/**
 * The summed importance of every tile over `region`, for tiles on the product grid `starts`
 * (per axis): the grid is a product and the map separable, so the sum is a product of per-axis
 * sums — no per-tile pass, no volume-sized array, and a task that saw only some of the tiles
 * still knows the total (the factors depend on the absolute voxel, not on the region). Never 0:
 * each axis factor is at least e^−8 where a tile covers the voxel.
 */
export function tileWeights(starts: readonly (readonly number[])[], patch: Vec3, region: Box): TileWeights {
  const axes = [0, 1, 2].map((a) => {
    const g = gaussAxis(patch[a]);
    const w = new Float64Array(region.end[a] - region.begin[a]);
    for (const t of starts[a]) {
      for (let i = Math.max(t, region.begin[a]); i < Math.min(t + patch[a], region.end[a]); i++) w[i - region.begin[a]] += g[i - t];
    }
    return w;
  });
  return [axes[0], axes[1], axes[2]];
}

/**
 * Run `model` on `tiles` (patch-sized, at absolute starts) and return, per output channel, the
 * sum over tiles of output × Gaussian over `region`. `input` holds the normalised volume over
 * `inputBox`; tile voxels outside it are 0 (nnU-Net pads with 0). Mirrors are averaged (in the
 * output's space: logits when the graph gives logits). Results are consumed strictly in tile
 * order, so the sums are bit-identical whatever the batching and threads.
 */
export async function accumulateTiles(
  input: Array3<Float32Array>, inputBox: Box, tiles: readonly Vec3[], region: Box, model: Model, o: SlidingOptions,
): Promise<Float32Array[]> {
  const patch = o.patch;
  const [iD, iH, iW] = input.shape;
  const [D, H, W] = [0, 1, 2].map((a) => region.end[a] - region.begin[a]);
  const vox = patch[0] * patch[1] * patch[2];
  const mirrors = o.mirror ? MIRRORS : MIRRORS.slice(0, 1);
  const gauss = gaussianMap(patch);
  const scale = 1 / mirrors.length;

  // One job = a batch of (tile, mirror) pairs.
  const jobs: Array<Array<{ tile: Vec3; flip: readonly boolean[] }>> = [];
  let cur: Array<{ tile: Vec3; flip: readonly boolean[] }> = [];
  for (const tile of tiles) for (const flip of mirrors) {
    cur.push({ tile, flip });
    if (cur.length === Math.max(1, o.batch)) { jobs.push(cur); cur = []; }
  }
  if (cur.length) jobs.push(cur);

  const build = (job: (typeof jobs)[number]): Float32Array => {
    const buf = new Float32Array(job.length * vox);
    const tmp = new Float32Array(vox);
    job.forEach(({ tile, flip }, b) => {
      tmp.fill(0);
      const t = [0, 1, 2].map((a) => tile[a] - inputBox.begin[a]);
      const xa = Math.max(0, -t[2]);
      const xb = Math.min(patch[2], iW - t[2]);
      for (let z = 0; z < patch[0]; z++) {
        const sz = t[0] + z;
        if (sz < 0 || sz >= iD) continue;
        for (let y = 0; y < patch[1]; y++) {
          const sy = t[1] + y;
          if (sy < 0 || sy >= iH) continue;
          const src = (sz * iH + sy) * iW + t[2] + xa;
          if (xb > xa) tmp.set(input.data.subarray(src, src + xb - xa), (z * patch[1] + y) * patch[2] + xa);
        }
      }
      const dst = buf.subarray(b * vox, (b + 1) * vox);
      if (flip.some(Boolean)) flipInto(tmp, dst, 1, patch, flip);
      else dst.set(tmp);
    });
    return buf;
  };

  // Every output channel is accumulated: softmax needs the background logit too.
  let acc: Float32Array[] | undefined;
  const flipped = new Float32Array(vox);
  const accumulate = (job: (typeof jobs)[number], out: Float32Array, k: number) => {
    acc ??= Array.from({ length: k }, () => new Float32Array(D * H * W));
    job.forEach(({ tile, flip }, b) => {
      // The part of the tile inside the region (a task accumulates only what it keeps).
      const lo = [0, 1, 2].map((a) => Math.max(0, region.begin[a] - tile[a]));
      const hi = [0, 1, 2].map((a) => Math.min(patch[a], region.end[a] - tile[a]));
      if (lo.some((v, a) => v >= hi[a])) return;
      const t = [0, 1, 2].map((a) => tile[a] - region.begin[a]);
      for (let c = 0; c < k; c++) {
        let ch = out.subarray((b * k + c) * vox, (b * k + c + 1) * vox);
        if (flip.some(Boolean)) { flipInto(ch, flipped, 1, patch, flip); ch = flipped; }
        const a = acc![c];
        for (let z = lo[0]; z < hi[0]; z++) for (let y = lo[1]; y < hi[1]; y++) {
          const dst = ((t[0] + z) * H + t[1] + y) * W + t[2];
          const src = (z * patch[1] + y) * patch[2];
          for (let x = lo[2]; x < hi[2]; x++) a[dst + x] += ch[src + x] * gauss[src + x] * scale;
        }
      }
    });
  };

  // Bounded pipeline: keep `inFlight` calls running, consume results strictly in order.
  const window: Array<Promise<{ data: Float32Array; dims: number[] }>> = [];
  let next = 0;
  const submit = () => {
    const job = jobs[next++];
    window.push(model.run(build(job), [job.length, 1, ...patch], o.signal));
  };
  try {
    while (next < jobs.length && window.length < Math.max(1, o.inFlight)) submit();
    for (let j = 0; j < jobs.length; j++) {
      const r = await window.shift()!;
      if (next < jobs.length) submit();
      accumulate(jobs[j], r.data, r.dims[1]);
    }
  } catch (err) {
    // Aborted or failed: the calls still in flight are no one's; their errors are expected.
    for (const p of window) p.catch(() => {});
    throw err;
  }
  return acc ?? [];
}

/**
 * Divide accumulated channels by the summed tile weights and activate, in place (no second
 * volume-sized array: stage one's blocks are large): K channels over a region → the foreground
 * probability maps of `shape` (the accumulators themselves).
 */
export function finishTiles(acc: Float32Array[], weights: TileWeights, shape: Vec3, card: Pick<ModelCard, 'output' | 'activation'>): Array3<Float32Array>[] {
  const k = acc.length;
  const [wz, wy, wx] = weights;
  let i = 0;
  for (let z = 0; z < shape[0]; z++) for (let y = 0; y < shape[1]; y++) {
    const zy = wz[z] * wy[y];
    for (let x = 0; x < shape[2]; x++, i++) {
      const w = zy * wx[x];
      for (let c = 0; c < k; c++) acc[c][i] /= w;
    }
  }
  if (card.output === 'logits') activateChannels(acc, card.activation);
  const fg = foregroundCount(card, k);
  return acc.slice(k - fg).map((a) => array3(a, shape));
}

/** toProbabilities over channels held as separate arrays, in place. */
function activateChannels(ch: Float32Array[], activation: 'softmax' | 'sigmoid'): void {
  const k = ch.length;
  const n = ch[0]?.length ?? 0;
  if (activation === 'sigmoid' || k === 1) {
    for (const a of ch) for (let i = 0; i < n; i++) a[i] = 1 / (1 + Math.exp(-a[i]));
    return;
  }
  for (let i = 0; i < n; i++) {
    let m = -Infinity;
    for (let c = 0; c < k; c++) m = Math.max(m, ch[c][i]);
    let sum = 0;
    for (let c = 0; c < k; c++) {
      const e = Math.exp(ch[c][i] - m);
      ch[c][i] = e;
      sum += e;
    }
    for (let c = 0; c < k; c++) ch[c][i] /= sum;
  }
}

/**
 * nnU-Net's tile starts (per axis) over a volume of `size` starting at 0: a volume smaller than
 * a patch is padded centred, so its one tile starts below 0.
 */
export function paddedStarts(size: Vec3, patch: Vec3, step: number): { starts: number[][]; below: Vec3 } {
  const padded = size.map((v, a) => Math.max(v, patch[a]));
  // Pad to at least a patch, centred (nnU-Net: pad_nd_image, below = diff // 2).
  const below = padded.map((v, a) => Math.floor((v - size[a]) / 2)) as unknown as Vec3;
  const starts = [0, 1, 2].map((a) => tileSteps(padded[a], patch[a], step).map((t) => t - below[a]));
  return { starts, below };
}

/** Every tile of a product grid of starts, in nnU-Net's loop order (z, then y, then x). */
export function gridTiles(starts: readonly (readonly number[])[]): Vec3[] {
  const tiles: Vec3[] = [];
  for (const z of starts[0]) for (const y of starts[1]) for (const x of starts[2]) tiles.push([z, y, x]);
  return tiles;
}

/**
 * Run `model` over a normalised volume. Returns per-class probability maps for the foreground
 * classes (softmax channels 1..K-1, or every sigmoid channel), each the input's shape.
 */
export async function slidingWindow(input: Array3<Float32Array>, model: Model, o: SlidingOptions): Promise<Array3<Float32Array>[]> {
  const { starts } = paddedStarts(input.shape, o.patch, o.step);
  const whole = boxOfShape(input.shape);
  const acc = await accumulateTiles(input, whole, gridTiles(starts), whole, model, o);
  return finishTiles(acc, tileWeights(starts, o.patch, whole), input.shape, model.card);
}

/** Class map from foreground probabilities: argmax with background = 1 − Σ fg (softmax). */
export function argmax(probs: readonly Array3<Float32Array>[], activation: 'softmax' | 'sigmoid' = 'softmax'): Array3<Uint8Array> {
  const output = activation;
  const n = probs[0].data.length;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    let bestP = output === 'softmax' ? 1 : 0.5;
    if (output === 'softmax') for (const p of probs) bestP -= p.data[i];
    for (let c = 0; c < probs.length; c++) {
      if (probs[c].data[i] > bestP) { bestP = probs[c].data[i]; best = c + 1; }
    }
    out[i] = best;
  }
  return array3(out, probs[0].shape);
}
