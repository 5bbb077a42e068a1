// Resampling of 3D arrays: area-averaging downsampling (the pyramid and stage one's on-the-fly
// low resolution use the same function, so training and inference see identical inputs),
// max-pooling, the label mode (the segmentation's pyramid), and trilinear / nearest resize (crop-and-resize in packing).
import type { Vec3 } from '../geometry/box.ts';
import { type Array3, array3 } from './array3.ts';

/** Shape after integer downsampling: ceil(shape / factor). */
export function downShape(shape: Vec3, factor: Vec3): Vec3 {
  return [Math.ceil(shape[0] / factor[0]), Math.ceil(shape[1] / factor[1]), Math.ceil(shape[2] / factor[2])];
}

function pool(src: Array3, factor: Vec3, op: 'mean' | 'max'): Array3<Float32Array> {
  const [Z, Y, X] = src.shape;
  const [fz, fy, fx] = factor.map((f) => Math.max(1, Math.round(f))) as unknown as Vec3;
  const out = downShape(src.shape, [fz, fy, fx]);
  const dst = new Float32Array(out[0] * out[1] * out[2]);
  const cnt = op === 'mean' ? new Float32Array(dst.length) : undefined;
  if (op === 'max') dst.fill(-Infinity);
  const d = src.data;
  for (let z = 0; z < Z; z++) {
    const oz = (z / fz) | 0;
    for (let y = 0; y < Y; y++) {
      const oy = (y / fy) | 0;
      const rowIn = (z * Y + y) * X;
      const rowOut = (oz * out[1] + oy) * out[2];
      for (let x = 0; x < X; x++) {
        const o = rowOut + ((x / fx) | 0);
        const v = d[rowIn + x];
        if (cnt) {
          dst[o] += v;
          cnt[o]++;
        } else if (v > dst[o]) dst[o] = v;
      }
    }
  }
  if (cnt) for (let i = 0; i < dst.length; i++) dst[i] /= cnt[i];
  return array3(dst, out);
}

/** Area averaging over factor-sized blocks; partial blocks at the far edge average what they hold. */
export function downsampleMean(src: Array3, factor: Vec3): Array3<Float32Array> {
  return pool(src, factor, 'mean');
}

/** Max over factor-sized blocks (for label and heatmap pyramids: keeps every foreground voxel). */
export function downsampleMax(src: Array3, factor: Vec3): Array3<Float32Array> {
  return pool(src, factor, 'max');
}

/**
 * The most frequent label in each factor-sized block (partial blocks at the far edge count what
 * they hold); a tie goes to the larger label, so a structure filling half a block — a thin cleft
 * — is kept rather than erased by background. For the segmentation's viewing pyramid (uint8).
 * A block, or a row of blocks, of one label (most of a sparse segmentation) is decided by one
 * scan, without counting. `rows`: per row (z, y) of `src`, the x range outside which it is 0
 * (labelObjects' RowRanges): blocks outside those ranges are 0 without being read.
 */
export function downsampleMode(src: Array3, factor: Vec3, rows?: { lo: Int32Array; hi: Int32Array }): Array3<Uint8Array> {
  const [Z, Y, X] = src.shape;
  const [fz, fy, fx] = factor;
  const out = downShape(src.shape, factor);
  const dst = new Uint8Array(out[0] * out[1] * out[2]);
  const counts = new Uint32Array(256);
  const seen = new Uint8Array(256);
  const d = src.data;
  let o = 0;
  for (let oz = 0; oz < out[0]; oz++) {
    const z0 = oz * fz, z1 = Math.min(Z, z0 + fz);
    for (let oy = 0; oy < out[1]; oy++) {
      const y0 = oy * fy, y1 = Math.min(Y, y0 + fy);
      // With the rows' nonzero ranges (labelObjects'), blocks outside them are 0 unread.
      let lo = 0, hi = X;
      if (rows) {
        lo = X; hi = 0;
        for (let z = z0; z < z1; z++) for (let y = y0; y < y1; y++) {
          const r = z * Y + y;
          if (rows.lo[r] < rows.hi[r]) { lo = Math.min(lo, rows.lo[r]); hi = Math.max(hi, rows.hi[r]); }
        }
        if (lo >= hi) { o += out[2]; continue; }
      } else {
        // A whole row of blocks of one label (most rows of a sparse segmentation): one scan.
        const v0 = d[(z0 * Y + y0) * X];
        if (uniform(d, Y, X, z0, z1, y0, y1, 0, X, v0)) {
          dst.fill(v0, o, o + out[2]);
          o += out[2];
          continue;
        }
      }
      for (let ox = 0; ox < out[2]; ox++, o++) {
        const x0 = ox * fx, x1 = Math.min(X, x0 + fx);
        if (x1 <= lo || x0 >= hi) continue;
        const first = d[(z0 * Y + y0) * X + x0];
        if (uniform(d, Y, X, z0, z1, y0, y1, x0, x1, first)) {
          dst[o] = first;
          continue;
        }
        let n = 0;
        for (let z = z0; z < z1; z++) for (let y = y0; y < y1; y++) {
          const row = (z * Y + y) * X;
          for (let x = row + x0, end = row + x1; x < end; x++) {
            const v = d[x];
            if (counts[v]++ === 0) seen[n++] = v;
          }
        }
        let best = 0, most = 0;
        for (let k = 0; k < n; k++) {
          const v = seen[k];
          if (counts[v] > most || (counts[v] === most && v > best)) { best = v; most = counts[v]; }
          counts[v] = 0;
        }
        dst[o] = best;
      }
    }
  }
  return array3(dst, out);
}

/** Whether block [z0,z1)×[y0,y1)×[x0,x1) of a Z×Y×X array (Y, X given) holds only `v`. */
function uniform(d: ArrayLike<number>, Y: number, X: number, z0: number, z1: number, y0: number, y1: number, x0: number, x1: number, v: number): boolean {
  for (let z = z0; z < z1; z++) for (let y = y0; y < y1; y++) {
    const row = (z * Y + y) * X;
    for (let x = row + x0, end = row + x1; x < end; x++) if (d[x] !== v) return false;
  }
  return true;
}

/**
 * Trilinear resize to `shape`, aligning voxel centres (align_corners = false, as
 * torch.nn.functional.interpolate and nnU-Net's resampling of crops).
 */
export function resizeLinear(src: Array3, shape: Vec3): Array3<Float32Array> {
  const [Z, Y, X] = src.shape;
  const out = new Float32Array(shape[0] * shape[1] * shape[2]);
  const axis = (n: number, m: number) => {
    const i0 = new Int32Array(m);
    const i1 = new Int32Array(m);
    const w = new Float32Array(m);
    const s = n / m;
    for (let o = 0; o < m; o++) {
      let c = (o + 0.5) * s - 0.5;
      if (c < 0) c = 0;
      const f = Math.floor(c);
      i0[o] = Math.min(f, n - 1);
      i1[o] = Math.min(f + 1, n - 1);
      w[o] = c - f;
    }
    return { i0, i1, w };
  };
  const az = axis(Z, shape[0]);
  const ay = axis(Y, shape[1]);
  const ax = axis(X, shape[2]);
  const d = src.data;
  let o = 0;
  for (let z = 0; z < shape[0]; z++) {
    const z0 = az.i0[z] * Y, z1 = az.i1[z] * Y, wz = az.w[z];
    for (let y = 0; y < shape[1]; y++) {
      const y0 = ay.i0[y], y1 = ay.i1[y], wy = ay.w[y];
      const r00 = (z0 + y0) * X, r01 = (z0 + y1) * X, r10 = (z1 + y0) * X, r11 = (z1 + y1) * X;
      for (let x = 0; x < shape[2]; x++) {
        const x0 = ax.i0[x], x1 = ax.i1[x], wx = ax.w[x];
        const c00 = d[r00 + x0] + (d[r00 + x1] - d[r00 + x0]) * wx;
        const c01 = d[r01 + x0] + (d[r01 + x1] - d[r01 + x0]) * wx;
        const c10 = d[r10 + x0] + (d[r10 + x1] - d[r10 + x0]) * wx;
        const c11 = d[r11 + x0] + (d[r11 + x1] - d[r11 + x0]) * wx;
        const c0 = c00 + (c01 - c00) * wy;
        const c1 = c10 + (c11 - c10) * wy;
        out[o++] = c0 + (c1 - c0) * wz;
      }
    }
  }
  return array3(out, shape);
}

/** Nearest-neighbour resize to `shape` (voxel centres aligned). */
export function resizeNearest<T extends Array3>(src: T, shape: Vec3): Array3<Float32Array> {
  const [Z, Y, X] = src.shape;
  const out = new Float32Array(shape[0] * shape[1] * shape[2]);
  const idx = (n: number, m: number) => Int32Array.from({ length: m }, (_, o) => Math.min(n - 1, Math.floor((o + 0.5) * n / m)));
  const iz = idx(Z, shape[0]), iy = idx(Y, shape[1]), ix = idx(X, shape[2]);
  let o = 0;
  for (let z = 0; z < shape[0]; z++) {
    for (let y = 0; y < shape[1]; y++) {
      const row = (iz[z] * Y + iy[y]) * X;
      for (let x = 0; x < shape[2]; x++) out[o++] = src.data[row + ix[x]];
    }
  }
  return array3(out, shape);
}
