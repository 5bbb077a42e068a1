// Paste-back: crop predictions cut out of canvases are blended into a chunk's write box with
// Gaussian weights centred on each placement's source box (σ = shape/8, as the sliding window),
// so a voxel covered by several crops — overlapping children, a box split at a slot border —
// gets one consistent value. (Float sums depend on their order in the last bit: callers add
// crops in a fixed order — sorted canvases — so runs are bit-identical.) Voxels no crop covers
// take `background`.
import { type Box, type Vec3, intersect, isEmpty, shapeOf } from '../geometry/box.ts';
import { type Array3, array3 } from '../array/array3.ts';
import { gaussianMap } from '../infer/sliding.ts';

export interface CropPrediction {
  /** Full-res box the crop's prediction was made for (its weights centre here). */
  source: Box;
  /** The region `values` covers (⊆ source). */
  target: Box;
  /** One array per foreground channel, each target-shaped. */
  values: Array3<Float32Array>[];
}

export class PasteAccumulator {
  readonly write: Box;
  readonly shape: Vec3;
  private readonly acc: Float32Array[];
  private readonly weight: Float32Array;
  private readonly gauss = new Map<string, Float32Array>();

  constructor(write: Box, channels: number) {
    this.write = write;
    this.shape = shapeOf(write);
    const n = this.shape[0] * this.shape[1] * this.shape[2];
    this.acc = Array.from({ length: channels }, () => new Float32Array(n));
    this.weight = new Float32Array(n);
  }

  private weights(s: Vec3): Float32Array {
    const k = s.join('x');
    let g = this.gauss.get(k);
    if (!g) { g = gaussianMap(s); this.gauss.set(k, g); }
    return g;
  }

  add(p: CropPrediction): void {
    const r = intersect(p.target, this.write);
    if (isEmpty(r)) return;
    const ss = shapeOf(p.source);
    const g = this.weights(ss);
    const ts = shapeOf(p.target);
    const rs = shapeOf(r);
    const [, H, W] = this.shape;
    for (let z = 0; z < rs[0]; z++) {
      for (let y = 0; y < rs[1]; y++) {
        const gz = r.begin[0] + z - p.source.begin[0];
        const gy = r.begin[1] + y - p.source.begin[1];
        const gRow = (gz * ss[1] + gy) * ss[2] - p.source.begin[2];
        const tRow = ((r.begin[0] + z - p.target.begin[0]) * ts[1] + (r.begin[1] + y - p.target.begin[1])) * ts[2] - p.target.begin[2];
        const oRow = ((r.begin[0] + z - this.write.begin[0]) * H + (r.begin[1] + y - this.write.begin[1])) * W - this.write.begin[2];
        for (let x = r.begin[2]; x < r.end[2]; x++) {
          const w = g[gRow + x];
          this.weight[oRow + x] += w;
          for (let c = 0; c < this.acc.length; c++) this.acc[c][oRow + x] += w * p.values[c].data[tRow + x];
        }
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
    for (let i = 0; i < this.weight.length; i++) if (this.weight[i] > 0) n++;
    return n;
  }
}
