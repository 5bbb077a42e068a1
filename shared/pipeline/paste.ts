// Paste-back: crop predictions cut out of canvases are blended into a chunk's write box with
// Gaussian weights centred on each placement's source box (σ = shape/8, as the sliding window),
// so a voxel covered by several crops — overlapping children, a box split at a slot border —
// gets one consistent value. (Float sums depend on their order in the last bit: callers add
// crops in a fixed order — sorted canvases — so runs are bit-identical.) Voxels no crop covers
// take `background`.
//
// The work is where crops land (≈ 15 % of a chunk on the EM bench): each add touches only its
// crop's voxels, stage two's 16-bit values are dequantised by a table lookup in the same loop,
// and finish() divides and arg-maxes only the rows crops reached, in place.
import { type Box, type Vec3, intersect, isEmpty, shapeOf } from '../geometry/box.ts';
import { type Array3, array3 } from '../array/array3.ts';
import { gaussAxis } from '../infer/sliding.ts';
import { INV_QUANT } from './quant.ts';
import type { BufferPool } from '../array/pool.ts';

export interface CropPrediction {
  /** Full-res box the crop's prediction was made for (its weights centre here). */
  source: Box;
  /** The region `values` covers (⊆ source). */
  target: Box;
  /** One array per foreground channel, each target-shaped. */
  values: Array3<Float32Array>[];
}

/** A crop prediction as stage two stores it: 16-bit values (quant.ts), channel after channel. */
export interface QuantisedCrop {
  source: Box;
  target: Box;
  /** channels × target voxels, C order per channel. */
  values: Uint16Array;
}

/** What finish() hands back: per-channel probabilities, the arg-max, voxels covered. */
export interface Pasted {
  probs: Array3<Float32Array>[];
  seg: Array3<Uint8Array>;
  covered: number;
}

export class PasteAccumulator {
  readonly write: Box;
  readonly shape: Vec3;
  private readonly acc: Float32Array[];
  private readonly weight: Float32Array;
  /** Per row (z, y) of the write box: the x range [lo, hi) crops reached (lo ≥ hi: none). */
  private readonly rowLo: Int32Array;
  private readonly rowHi: Int32Array;
  /** One row of weights (scratch). */
  private readonly wRow: Float32Array;
  private readonly axes = new Map<number, Float64Array>();
  private seg?: Uint8Array;
  /** finish() wrote every voxel (a background): release() clears them all. */
  private whole = false;

  /** `pool`: where the chunk-sized arrays come from and go back to (release()). */
  private readonly pool?: BufferPool;

  constructor(write: Box, channels: number, pool?: BufferPool) {
    this.pool = pool;
    this.write = write;
    this.shape = shapeOf(write);
    const [D, H, W] = this.shape;
    const n = D * H * W;
    this.acc = Array.from({ length: channels }, () => pool?.f32(n) ?? new Float32Array(n));
    this.weight = pool?.f32(n) ?? new Float32Array(n);
    this.rowLo = new Int32Array(D * H).fill(W);
    this.rowHi = new Int32Array(D * H);
    this.wRow = new Float32Array(W);
  }

  private axis(n: number): Float64Array {
    let g = this.axes.get(n);
    if (!g) this.axes.set(n, (g = gaussAxis(n)));
    return g;
  }

  /** Add a crop with float values. */
  add(p: CropPrediction): void {
    this.accumulate(p.source, p.target, p.values.map((v) => v.data));
  }

  /** Add a crop with stage two's 16-bit values (the same floats as add() of q / QUANT). */
  addQuantised(p: QuantisedCrop): void {
    const s = shapeOf(p.target);
    const n = s[0] * s[1] * s[2];
    this.accumulate(p.source, p.target, this.acc.map((_, c) => p.values.subarray(c * n, (c + 1) * n)));
  }

  /**
   * weight += w and acc[c] += w · value over the crop's part of the write box, w being
   * gaussianMap(source shape) at the voxel: one float32 addition per voxel and array, as
   * ever, so sums come out bit for bit the same whatever else changed around them.
   */
  private accumulate(source: Box, target: Box, values: readonly (Float32Array | Uint16Array)[]): void {
    const r = intersect(target, this.write);
    if (isEmpty(r)) return;
    const ss = shapeOf(source);
    const gz = this.axis(ss[0]), gy = this.axis(ss[1]), gx = this.axis(ss[2]);
    const ts = shapeOf(target);
    const [, H, W] = this.shape;
    const wb = this.write.begin;
    const x0 = r.begin[2] - wb[2], x1 = r.end[2] - wb[2], nx = x1 - x0;
    const gx0 = r.begin[2] - source.begin[2];
    const w = this.wRow, weight = this.weight, acc = this.acc;
    const one = values.length === 1 && values[0] instanceof Uint16Array ? values[0] : undefined;
    for (let z = r.begin[0]; z < r.end[0]; z++) {
      for (let y = r.begin[1]; y < r.end[1]; y++) {
        const gzy = gz[z - source.begin[0]] * gy[y - source.begin[1]];
        const row = (z - wb[0]) * H + (y - wb[1]);
        const o = row * W + x0;
        const t = ((z - target.begin[0]) * ts[1] + (y - target.begin[1])) * ts[2] + (r.begin[2] - target.begin[2]);
        if (one) accumulateRow1(weight, acc[0], one, gx, gzy, o, t, gx0, nx);
        else {
          for (let x = 0; x < nx; x++) {
            const v = Math.fround(gzy * gx[gx0 + x]);
            w[x] = v;
            weight[o + x] += v;
          }
          for (let c = 0; c < values.length; c++) {
            const a = acc[c];
            const q = values[c];
            if (q instanceof Uint16Array) for (let x = 0; x < nx; x++) a[o + x] += w[x] * Math.fround(q[t + x] * INV_QUANT);
            else for (let x = 0; x < nx; x++) a[o + x] += w[x] * q[t + x];
          }
        }
        if (x0 < this.rowLo[row]) this.rowLo[row] = x0;
        if (x1 > this.rowHi[row]) this.rowHi[row] = x1;
      }
    }
  }

  /** Blended probabilities per channel; `background(c)` fills voxels no crop reached. */
  result(background?: (c: number) => Array3<Float32Array>): Array3<Float32Array>[] {
    return this.acc.map((a, c) => {
      const out = new Float32Array(a.length);
      const bg = background?.(c);
      for (let i = 0; i < a.length; i++) out[i] = this.weight[i] > 0 ? a[i] / this.weight[i] : bg ? bg.data[i] : 0;
      return array3(out, this.shape);
    });
  }

  /** Voxels at least one crop covered. */
  covered(): number {
    let n = 0;
    this.forEachRow((i, end) => {
      for (; i < end; i++) if (this.weight[i] > 0) n++;
    });
    return n;
  }

  /**
   * The blend and its arg-max (as result() and argmax() give them) in one pass over the rows
   * crops reached; with `background`, over every voxel. The accumulator's arrays become the
   * probabilities: add nothing after this.
   */
  finish(activation: 'softmax' | 'sigmoid', background?: (c: number) => Array3<Float32Array>): Pasted {
    const seg = (this.seg = this.pool?.u8(this.weight.length) ?? new Uint8Array(this.weight.length));
    let covered = 0;
    this.whole = !!background;
    if (background) {
      const bg = this.acc.map((_, c) => background(c).data);
      covered = this.blendRange(0, seg.length, seg, activation, bg);
    } else {
      // Voxels no crop reached keep probability 0 and class 0 (0 beats neither 1 − 0 nor 0.5).
      const one = this.acc.length === 1;
      this.forEachRow((i, end) => { covered += one ? this.blendRange1(i, end, seg, activation) : this.blendRange(i, end, seg, activation); });
    }
    return { probs: this.acc.map((a) => array3(a, this.shape)), seg: array3(seg, this.shape), covered };
  }

  /** Blend voxels [i, end) in place and arg-max them into `seg`; the count covered. */
  private blendRange(i: number, end: number, seg: Uint8Array, activation: 'softmax' | 'sigmoid', bg?: Float32Array[]): number {
    const acc = this.acc, weight = this.weight, k = acc.length;
    const softmax = activation === 'softmax';
    let covered = 0;
    for (; i < end; i++) {
      const wt = weight[i];
      if (wt > 0) covered++;
      let best = 0;
      let bestP = softmax ? 1 : 0.5;
      for (let c = 0; c < k; c++) {
        const p = wt > 0 ? Math.fround(acc[c][i] / wt) : bg ? bg[c][i] : 0;
        acc[c][i] = p;
        if (softmax) bestP -= p;
      }
      for (let c = 0; c < k; c++) if (acc[c][i] > bestP) { bestP = acc[c][i]; best = c + 1; }
      seg[i] = best;
    }
    return covered;
  }

  /** blendRange for one channel and no background (EM, CT): the same floats and classes, fewer steps. */
  private blendRange1(i: number, end: number, seg: Uint8Array, activation: 'softmax' | 'sigmoid'): number {
    const a = this.acc[0], weight = this.weight;
    const softmax = activation === 'softmax';
    let covered = 0;
    for (; i < end; i++) {
      const wt = weight[i];
      if (!(wt > 0)) continue;
      covered++;
      const p = Math.fround(a[i] / wt);
      a[i] = p;
      // argmax: class 1 when p beats the background's 1 − p (softmax) or 0.5 (sigmoid).
      if (p > (softmax ? 1 - p : 0.5)) seg[i] = 1;
    }
    return covered;
  }

  /**
   * Give the arrays back to the pool, zeroed where this accumulator wrote them: the
   * probabilities and arg-max finish() returned are gone with them.
   */
  release(): void {
    const pool = this.pool;
    if (!pool) return;
    const arrays: (Float32Array | Uint8Array)[] = [...this.acc, this.weight, ...(this.seg ? [this.seg] : [])];
    if (this.whole) for (const a of arrays) a.fill(0);
    else this.forEachRow((i, end) => { for (const a of arrays) a.fill(0, i, end); });
    for (const a of arrays) pool.give(a);
  }

  /** Calls f(start, end) with the flat index range of each row crops reached. */
  private forEachRow(f: (start: number, end: number) => void): void {
    const W = this.shape[2];
    for (let row = 0; row < this.rowLo.length; row++) {
      if (this.rowLo[row] < this.rowHi[row]) f(row * W + this.rowLo[row], row * W + this.rowHi[row]);
    }
  }
}

/**
 * One row of a one-channel quantised crop (EM, CT: the common case) in one pass: the weight and
 * the weighted value per voxel, the same float32 operations in the same order as the general
 * loops (w rounded to float32, then w · q/QUANT rounded to float32 — quant.ts's INV_QUANT
 * gives that float exactly — added), without the scratch row.
 */
function accumulateRow1(weight: Float32Array, a: Float32Array, q: Uint16Array, gx: Float64Array, gzy: number, o: number, t: number, gx0: number, nx: number): void {
  for (let x = 0; x < nx; x++) {
    const v = Math.fround(gzy * gx[gx0 + x]);
    weight[o + x] += v;
    a[o + x] += v * Math.fround(q[t + x] * INV_QUANT);
  }
}
