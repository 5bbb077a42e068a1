// nnU-Net's sliding-window inference: tiles at step = patch × step fraction spread evenly over
// the volume, a Gaussian importance map (σ = patch/8) weighting each tile's softmax, optional
// mirroring test-time augmentation, inputs smaller than a patch padded (not refused).
// Tiles run in batches on a Model (inference threads); results are accumulated strictly in
// tile order so the sum — and hence the output — is bit-identical run to run.
import type { Vec3 } from '../geometry/box.ts';
import { type Array3, array3 } from '../array/array3.ts';
import type { Model } from './model.ts';

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

/** Separable Gaussian importance map, max 1, no zeros (σ = patch/8 per axis). */
export function gaussianMap(patch: Vec3): Float32Array {
  const axis = (p: number) => {
    const s = p / 8;
    const c = (p - 1) / 2;
    return Float64Array.from({ length: p }, (_, i) => Math.exp(-((i - c) ** 2) / (2 * s * s)));
  };
  const [gz, gy, gx] = [axis(patch[0]), axis(patch[1]), axis(patch[2])];
  // Even sizes have no centre voxel: rescale so the map still peaks at 1.
  const peak = Math.max(...gz) * Math.max(...gy) * Math.max(...gx);
  const out = new Float32Array(patch[0] * patch[1] * patch[2]);
  let min = Infinity;
  let o = 0;
  for (let z = 0; z < patch[0]; z++) for (let y = 0; y < patch[1]; y++) for (let x = 0; x < patch[2]; x++) {
    const v = (gz[z] * gy[y] * gx[x]) / peak;
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

export const MIRRORS: readonly (readonly boolean[])[] = [
  [false, false, false], [true, false, false], [false, true, false], [false, false, true],
  [true, true, false], [true, false, true], [false, true, true], [true, true, true],
];

/**
 * Run `model` over a normalised volume. Returns per-class probability maps for the foreground
 * classes (softmax channels 1..K-1, or every sigmoid channel), each the input's shape.
 */
export async function slidingWindow(input: Array3<Float32Array>, model: Model, o: SlidingOptions): Promise<Array3<Float32Array>[]> {
  const patch = o.patch;
  const size: Vec3 = [Math.max(input.shape[0], patch[0]), Math.max(input.shape[1], patch[1]), Math.max(input.shape[2], patch[2])];
  const [D, H, W] = size;
  const vox = patch[0] * patch[1] * patch[2];
  const steps = [0, 1, 2].map((a) => tileSteps(size[a], patch[a], o.step));
  const tiles: Vec3[] = [];
  for (const z of steps[0]) for (const y of steps[1]) for (const x of steps[2]) tiles.push([z, y, x]);
  const mirrors = o.mirror ? MIRRORS : MIRRORS.slice(0, 1);
  const gauss = gaussianMap(patch);
  const [iD, iH, iW] = input.shape;

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
      tmp.fill(0); // zero padding where the tile reaches past a small input (nnU-Net pads with 0)
      for (let z = 0; z < patch[0]; z++) {
        const sz = tile[0] + z;
        if (sz >= iD) break;
        for (let y = 0; y < patch[1]; y++) {
          const sy = tile[1] + y;
          if (sy >= iH) break;
          const s = (sz * iH + sy) * iW + tile[2];
          const n = Math.min(patch[2], iW - tile[2]);
          if (n > 0) tmp.set(input.data.subarray(s, s + n), (z * patch[1] + y) * patch[2]);
        }
      }
      const dst = buf.subarray(b * vox, (b + 1) * vox);
      if (flip.some(Boolean)) flipInto(tmp, dst, 1, patch, flip);
      else dst.set(tmp);
    });
    return buf;
  };

  let acc: Float32Array[] | undefined;
  let fg = 0;
  const weight = new Float32Array(D * H * W);
  const flipped = new Float32Array(vox);
  const accumulate = (job: (typeof jobs)[number], out: Float32Array, k: number) => {
    if (!acc) {
      fg = model.card.output === 'softmax' && k > 1 ? k - 1 : k;
      acc = Array.from({ length: fg }, () => new Float32Array(D * H * W));
    }
    const first = k - fg;
    job.forEach(({ tile, flip }, b) => {
      const block = out.subarray(b * k * vox, (b + 1) * k * vox);
      toProbabilities(block, k, vox, model.card.output);
      for (let c = 0; c < fg; c++) {
        let ch = block.subarray((first + c) * vox, (first + c + 1) * vox);
        if (flip.some(Boolean)) { flipInto(ch, flipped, 1, patch, flip); ch = flipped; }
        const a = acc![c];
        for (let z = 0; z < patch[0]; z++) for (let y = 0; y < patch[1]; y++) {
          const dst = ((tile[0] + z) * H + tile[1] + y) * W + tile[2];
          const src = (z * patch[1] + y) * patch[2];
          for (let x = 0; x < patch[2]; x++) a[dst + x] += ch[src + x] * gauss[src + x];
        }
      }
      for (let z = 0; z < patch[0]; z++) for (let y = 0; y < patch[1]; y++) {
        const dst = ((tile[0] + z) * H + tile[1] + y) * W + tile[2];
        const src = (z * patch[1] + y) * patch[2];
        for (let x = 0; x < patch[2]; x++) weight[dst + x] += gauss[src + x];
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
  while (next < jobs.length && window.length < Math.max(1, o.inFlight)) submit();
  for (let j = 0; j < jobs.length; j++) {
    const r = await window.shift()!;
    if (next < jobs.length) submit();
    accumulate(jobs[j], r.data, r.dims[1]);
  }

  // Normalise by the summed weights and cut the padding away.
  return acc!.map((a) => {
    const out = new Float32Array(iD * iH * iW);
    let o2 = 0;
    for (let z = 0; z < iD; z++) for (let y = 0; y < iH; y++) {
      const row = (z * H + y) * W;
      for (let x = 0; x < iW; x++) out[o2++] = a[row + x] / weight[row + x];
    }
    return array3(out, input.shape);
  });
}

/** Class map from foreground probabilities: argmax with background = 1 − Σ fg (softmax). */
export function argmax(probs: readonly Array3<Float32Array>[], output: 'softmax' | 'sigmoid' = 'softmax'): Array3<Uint8Array> {
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
