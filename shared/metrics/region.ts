// Foreground bounding boxes and cropped binary masks: the "work only where the objects are"
// step every metric uses, so sparse masks in huge volumes cost one scan plus work on the crop.
import { type Box, type Vec3, box, shapeOf } from '../geometry/box.ts';
import { type Array3, array3 } from '../array/array3.ts';

/**
 * Which voxels count as foreground: with `cls` undefined, every non-zero voxel; otherwise the
 * voxels equal to `cls`.
 */
export type ClassSelector = number | undefined;

/** The smallest box holding the foreground (see {@link ClassSelector}) of all `arrays`; undefined when none has any. */
export function foregroundBox(arrays: readonly Array3[], cls?: number): Box | undefined {
  let z0 = Infinity, y0 = Infinity, x0 = Infinity, z1 = -1, y1 = -1, x1 = -1;
  for (const a of arrays) {
    const [Z, Y, X] = a.shape;
    const d = a.data;
    for (let z = 0; z < Z; z++) {
      for (let y = 0; y < Y; y++) {
        const row = (z * Y + y) * X;
        let first = -1;
        for (let x = 0; x < X; x++) {
          const v = d[row + x];
          if (cls === undefined ? v !== 0 : v === cls) { first = x; break; }
        }
        if (first < 0) continue;
        let last = first;
        for (let x = X - 1; x > first; x--) {
          const v = d[row + x];
          if (cls === undefined ? v !== 0 : v === cls) { last = x; break; }
        }
        if (z < z0) z0 = z;
        if (z > z1) z1 = z;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
        if (first < x0) x0 = first;
        if (last > x1) x1 = last;
      }
    }
  }
  if (z1 < 0) return undefined;
  return box([z0, y0, x0], [z1 + 1, y1 + 1, x1 + 1]);
}

/**
 * A binary mask (1 = foreground, see {@link ClassSelector}) of `region` of `a`; the region may
 * reach outside `a`, where the mask is 0.
 */
export function cropMask(a: Array3, region: Box, cls?: number): Array3<Uint8Array> {
  const shape = shapeOf(region);
  const [Z, Y, X] = a.shape;
  const [dz, dy, dx] = shape;
  const out = new Uint8Array(dz * dy * dx);
  const d = a.data;
  const xs = Math.max(0, region.begin[2]);
  const xe = Math.min(X, region.end[2]);
  for (let z = 0; z < dz; z++) {
    const sz = region.begin[0] + z;
    if (sz < 0 || sz >= Z) continue;
    for (let y = 0; y < dy; y++) {
      const sy = region.begin[1] + y;
      if (sy < 0 || sy >= Y) continue;
      const src = (sz * Y + sy) * X;
      const dst = (z * dy + y) * dx - region.begin[2];
      if (cls === undefined) {
        for (let x = xs; x < xe; x++) if (d[src + x] !== 0) out[dst + x] = 1;
      } else {
        for (let x = xs; x < xe; x++) if (d[src + x] === cls) out[dst + x] = 1;
      }
    }
  }
  return array3(out, shape);
}

/** True when both shapes are equal. */
export function sameShape(a: Vec3, b: Vec3): boolean {
  return a[0] === b[0] && a[1] === b[1] && a[2] === b[2];
}

/** Throws a RangeError naming both shapes when they differ. */
export function assertSameShape(a: Vec3, b: Vec3, what = 'pred', other = 'gt'): void {
  if (!sameShape(a, b)) {
    throw new RangeError(`${what} shape ${a.join('x')} does not match ${other} shape ${b.join('x')}`);
  }
}

/** Throws a RangeError unless all three spacings are finite and > 0. */
export function assertSpacing(spacing: Vec3): void {
  if (spacing.length !== 3 || !spacing.every((s) => Number.isFinite(s) && s > 0)) {
    throw new RangeError(`spacing must be three finite numbers > 0, got [${spacing.join(', ')}]`);
  }
}
