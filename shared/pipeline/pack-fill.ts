// Canvas fill with real volume context (`pack.fill: context`). A canvas voxel no crop covers
// takes the volume voxel it would hold if the nearest crop's surroundings went on there: each
// such voxel belongs to the placement whose dest is nearest (L∞ distance in canvas voxels; ties
// to the placement listed first), and reads the volume at its own canvas position shifted by
// that placement's source − dest offset. What the network then sees between crops is real
// tissue up to half-way to the next crop, instead of a flat fill: the canvas is normalised (by
// the networks' instance normalisation) much like a tile of the volume, and a crop's edges see
// their own surroundings as far as the packing leaves room. Nothing of the fill is pasted back.
// Resized placements have no such mapping: they keep their dest and own nothing around it.
import { type Box, type Vec3, box } from '../geometry/box.ts';
import type { Placement } from './pack-common.ts';

export interface ContextFill {
  /** Canvas region [0, ext) the owners cover. */
  ext: Vec3;
  /** Per voxel of [0, ext) (z, y, x order): index into the canvas's placements, or -1. */
  owners: Int32Array;
  /** Per placement: the volume region to read (its source, grown over the voxels it owns). */
  reads: Box[];
}

/** Owners and reads of one canvas whose placements are `ps`, over the region [0, ext). */
export function contextFill(ps: readonly Placement[], ext: Vec3): ContextFill {
  const [D, H, W] = ext;
  const owners = new Int32Array(D * H * W).fill(-1);
  const live = ps.map((p, i) => i).filter((i) => !ps[i].resized);
  // Distance along one axis from coordinate v to [lo, hi): per placement, per coordinate.
  const dist = (a: number, n: number) => live.map((i) => {
    const { begin, end } = ps[i].dest;
    return Int32Array.from({ length: n }, (_, v) => (v < begin[a] ? begin[a] - v : v >= end[a] ? v - end[a] + 1 : 0));
  });
  const dz = dist(0, D), dy = dist(1, H), dx = dist(2, W);
  const lo = live.map((i) => [...ps[i].dest.begin]), hi = live.map((i) => [...ps[i].dest.end]);
  const m = new Int32Array(live.length);
  for (let z = 0; z < D; z++) for (let y = 0; y < H; y++) {
    for (let k = 0; k < live.length; k++) m[k] = Math.max(dz[k][z], dy[k][y]);
    const row = (z * H + y) * W;
    for (let x = 0; x < W; x++) {
      let best = -1, bd = Infinity;
      for (let k = 0; k < live.length; k++) {
        const d = Math.max(m[k], dx[k][x]);
        if (d < bd) { bd = d; best = k; }
      }
      if (best < 0) continue;
      owners[row + x] = live[best];
      const l = lo[best], h = hi[best];
      if (z < l[0]) l[0] = z; if (z >= h[0]) h[0] = z + 1;
      if (y < l[1]) l[1] = y; if (y >= h[1]) h[1] = y + 1;
      if (x < l[2]) l[2] = x; if (x >= h[2]) h[2] = x + 1;
    }
  }
  const reads = ps.map((p) => p.source);
  live.forEach((i, k) => {
    const off = [0, 1, 2].map((a) => ps[i].source.begin[a] - ps[i].dest.begin[a]);
    reads[i] = box(
      [lo[k][0] + off[0], lo[k][1] + off[1], lo[k][2] + off[2]],
      [hi[k][0] + off[0], hi[k][1] + off[1], hi[k][2] + off[2]],
    );
  });
  return { ext, owners, reads };
}
