// A dense 3D array in C order ([z, y, x], x fastest): the one in-memory volume type.
import { type Box, type Vec3, shapeOf, intersect, isEmpty } from '../geometry/box.ts';
import type { TypedArray } from '../volume/dtype.ts';

export interface Array3<T extends TypedArray = TypedArray> {
  readonly data: T;
  readonly shape: Vec3;
}

export function array3<T extends TypedArray>(data: T, shape: Vec3): Array3<T> {
  if (data.length !== shape[0] * shape[1] * shape[2]) {
    throw new RangeError(`array of ${data.length} elements does not match shape ${shape.join('x')}`);
  }
  return { data, shape: [shape[0], shape[1], shape[2]] };
}

export function zeros(shape: Vec3): Array3<Float32Array> {
  return array3(new Float32Array(shape[0] * shape[1] * shape[2]), shape);
}

export function zerosU8(shape: Vec3): Array3<Uint8Array> {
  return array3(new Uint8Array(shape[0] * shape[1] * shape[2]), shape);
}

/**
 * Copy the part of `src` (whose voxel [0,0,0] sits at `srcOrigin`) that falls in `region`
 * into `dst` (whose voxel [0,0,0] sits at `dstOrigin`). Both origins are in one shared frame.
 * Copies only where `region`, src and dst all overlap; returns the box copied.
 */
export function copyRegion(
  src: Array3, srcOrigin: Vec3, dst: Array3, dstOrigin: Vec3, region: Box,
): Box {
  const srcBox = { begin: srcOrigin, end: [srcOrigin[0] + src.shape[0], srcOrigin[1] + src.shape[1], srcOrigin[2] + src.shape[2]] as Vec3 };
  const dstBox = { begin: dstOrigin, end: [dstOrigin[0] + dst.shape[0], dstOrigin[1] + dst.shape[1], dstOrigin[2] + dst.shape[2]] as Vec3 };
  const r = intersect(intersect(region, srcBox), dstBox);
  if (isEmpty(r)) return r;
  const [dz, dy, dx] = shapeOf(r);
  const [, sy, sx] = src.shape;
  const [, ty, tx] = dst.shape;
  for (let z = 0; z < dz; z++) {
    for (let y = 0; y < dy; y++) {
      const s = ((r.begin[0] - srcOrigin[0] + z) * sy + (r.begin[1] - srcOrigin[1] + y)) * sx + (r.begin[2] - srcOrigin[2]);
      const d = ((r.begin[0] - dstOrigin[0] + z) * ty + (r.begin[1] - dstOrigin[1] + y)) * tx + (r.begin[2] - dstOrigin[2]);
      dst.data.set(src.data.subarray(s, s + dx), d);
    }
  }
  return r;
}

/** A new array holding `region` of `src` (src's voxel [0,0,0] at `srcOrigin`); outside src → 0. */
export function crop<T extends TypedArray>(src: Array3<T>, srcOrigin: Vec3, region: Box): Array3<T> {
  const shape = shapeOf(region);
  const C = src.data.constructor as new (n: number) => T;
  const out = array3(new C(shape[0] * shape[1] * shape[2]), shape);
  copyRegion(src, srcOrigin, out, region.begin, region);
  return out;
}
