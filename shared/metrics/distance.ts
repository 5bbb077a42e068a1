// Exact Euclidean distance transform with anisotropic spacing: the separable lower-envelope
// algorithm of Felzenszwalb & Huttenlocher ("Distance Transforms of Sampled Functions", 2012),
// one 1D pass per axis over squared distances. O(N) per axis, exact up to float rounding.
//
// "Sites" are the voxels distances are measured to (non-zero entries). With no site at all every
// distance is +Infinity. For sparse data in big volumes use edtSquaredInRegion: it computes the
// transform only over a cropped box (e.g. the pred ∪ gt bounding box grown by a margin), which is
// exact for every voxel of the box as long as the box holds all the sites that matter.
import { type Box, type Vec3, shapeOf } from '../geometry/box.ts';
import { type Array3, array3 } from '../array/array3.ts';
import { assertSpacing } from './region.ts';

/** Scratch buffers for {@link lowerEnvelope1d}, sized for lines of up to `n` samples. */
export interface EnvelopeScratch {
  readonly f: Float64Array;
  readonly d: Float64Array;
  readonly v: Int32Array;
  readonly z: Float64Array;
}

export function envelopeScratch(n: number): EnvelopeScratch {
  return { f: new Float64Array(n), d: new Float64Array(n), v: new Int32Array(n), z: new Float64Array(n + 1) };
}

/**
 * One 1D pass: d[q] = min_r ((q − r)·h)² + f[r] over r in [0, n), for samples `h` apart.
 * Entries of f equal to +Infinity are not sites; with none, d is all +Infinity.
 */
export function lowerEnvelope1d(n: number, h: number, s: EnvelopeScratch): void {
  const { f, d, v, z } = s;
  let k = -1;
  for (let q = 0; q < n; q++) {
    const fq = f[q];
    if (fq === Infinity) continue;
    const pq = q * h;
    if (k < 0) {
      k = 0;
      v[0] = q;
      z[0] = -Infinity;
      z[1] = Infinity;
      continue;
    }
    const a = fq + pq * pq;
    let x: number;
    for (;;) {
      const r = v[k];
      const pr = r * h;
      x = (a - (f[r] + pr * pr)) / (2 * (pq - pr));
      if (x <= z[k]) k--; // z[0] = -Infinity stops this before k < 0
      else break;
    }
    k++;
    v[k] = q;
    z[k] = x;
    z[k + 1] = Infinity;
  }
  if (k < 0) {
    d.fill(Infinity, 0, n);
    return;
  }
  let j = 0;
  for (let q = 0; q < n; q++) {
    const pq = q * h;
    while (z[j + 1] < pq) j++;
    const r = v[j];
    const t = pq - r * h;
    d[q] = t * t + f[r];
  }
}

/**
 * In place: turn `g` (0 at sites, +Infinity elsewhere) into squared Euclidean distances to the
 * nearest site, with voxel spacing `spacing` ([z, y, x]).
 */
export function edtSquaredInPlace(g: Float64Array, shape: Vec3, spacing: Vec3): void {
  assertSpacing(spacing);
  const [Z, Y, X] = shape;
  if (g.length !== Z * Y * X) throw new RangeError(`array of ${g.length} elements does not match shape ${shape.join('x')}`);
  if (g.length === 0) return;
  const s = envelopeScratch(Math.max(Z, Y, X));
  const { f, d } = s;
  // x: contiguous lines.
  for (let row = 0; row < Z * Y; row++) {
    const o = row * X;
    for (let i = 0; i < X; i++) f[i] = g[o + i];
    lowerEnvelope1d(X, spacing[2], s);
    for (let i = 0; i < X; i++) g[o + i] = d[i];
  }
  // y: stride X.
  if (Y > 1) {
    for (let zz = 0; zz < Z; zz++) {
      for (let x = 0; x < X; x++) {
        const o = zz * Y * X + x;
        for (let i = 0; i < Y; i++) f[i] = g[o + i * X];
        lowerEnvelope1d(Y, spacing[1], s);
        for (let i = 0; i < Y; i++) g[o + i * X] = d[i];
      }
    }
  }
  // z: stride Y·X.
  if (Z > 1) {
    const st = Y * X;
    for (let o = 0; o < st; o++) {
      for (let i = 0; i < Z; i++) f[i] = g[o + i * st];
      lowerEnvelope1d(Z, spacing[0], s);
      for (let i = 0; i < Z; i++) g[o + i * st] = d[i];
    }
  }
}

/** Squared distance from every voxel to the nearest site (non-zero entry of `sites`). */
export function edtSquared(sites: ArrayLike<number>, shape: Vec3, spacing: Vec3): Float64Array {
  const g = new Float64Array(sites.length);
  for (let i = 0; i < g.length; i++) g[i] = sites[i] !== 0 ? 0 : Infinity;
  edtSquaredInPlace(g, shape, spacing);
  return g;
}

/** Distance from every voxel to the nearest site (non-zero entry of `sites`); +Infinity with no site. */
export function edt(sites: ArrayLike<number>, shape: Vec3, spacing: Vec3): Float64Array {
  const g = edtSquared(sites, shape, spacing);
  for (let i = 0; i < g.length; i++) g[i] = Math.sqrt(g[i]);
  return g;
}

/**
 * Squared distances over `region` only (its voxel [0,0,0] is `region.begin` of `sites`; parts of
 * the region outside `sites` hold no sites). Only the sites inside the region count, so the result
 * is the full-volume transform wherever the region holds every site (or every one that can be
 * nearest): crop to the foreground bounding box grown by a margin to keep sparse masks fast.
 */
export function edtSquaredInRegion(sites: Array3, region: Box, spacing: Vec3): Array3<Float64Array> {
  const shape = shapeOf(region);
  const [dz, dy, dx] = shape;
  const [Z, Y, X] = sites.shape;
  const g = new Float64Array(dz * dy * dx).fill(Infinity);
  const src = sites.data;
  for (let z = 0; z < dz; z++) {
    const sz = region.begin[0] + z;
    if (sz < 0 || sz >= Z) continue;
    for (let y = 0; y < dy; y++) {
      const sy = region.begin[1] + y;
      if (sy < 0 || sy >= Y) continue;
      for (let x = 0; x < dx; x++) {
        const sx = region.begin[2] + x;
        if (sx < 0 || sx >= X) continue;
        if (src[(sz * Y + sy) * X + sx] !== 0) g[(z * dy + y) * dx + x] = 0;
      }
    }
  }
  edtSquaredInPlace(g, shape, spacing);
  return array3(g, shape);
}
