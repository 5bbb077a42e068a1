// A Z-order (Morton) walk over a box of grid indices of any shape. The scheduler hands out root
// tasks in this order instead of raster order: raster order finishes a whole slab (10⁵ chunks
// of FAFB) before the next one starts, so a chunk waits that long for its neighbour in z and
// every intermediate result of the slab stays on disk meanwhile; a Z-order walk finishes small
// cubes, so neighbours complete close together in time. Pure.
import type { Vec3 } from './box.ts';

export interface MortonWalk {
  /** Size of the code space (≤ 8 × the number of indices): codes 0..codes-1. */
  readonly codes: number;
  /** The offset (0 ≤ o < shape) of `code`, or undefined for codes that fall outside the shape. */
  at(code: number): Vec3 | undefined;
}

/**
 * Interleaves the bits of the three axes, each axis with only as many bits as its extent needs
 * (an axis that runs out of bits drops out of the higher levels), so a skewed shape such as
 * 1 × 1 × 1000 does not blow up the code space.
 */
export function mortonWalk(shape: Vec3): MortonWalk {
  const bits = shape.map((s) => (s <= 1 ? 0 : Math.ceil(Math.log2(s))));
  // Code bit k comes from (axis, bit of that axis), lowest first.
  const plan: Array<[number, number]> = [];
  for (let level = 0; level < Math.max(...bits); level++) {
    for (let a = 2; a >= 0; a--) if (level < bits[a]) plan.push([a, level]);
  }
  const codes = 2 ** plan.length;
  return {
    codes,
    at(code: number): Vec3 | undefined {
      const o = [0, 0, 0];
      let c = code;
      for (let k = 0; k < plan.length; k++) {
        if (c % 2 === 1) o[plan[k][0]] += 2 ** plan[k][1];
        c = Math.floor(c / 2);
      }
      return o[0] < shape[0] && o[1] < shape[1] && o[2] < shape[2] ? (o as unknown as Vec3) : undefined;
    },
  };
}
