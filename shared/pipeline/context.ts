// The region a sliding window reads for a write box: the write box grown by a halo of half a
// patch (so every written voxel sees context on all sides, as in a whole-volume run), clipped
// to the volume, and grown back to at least one patch (shifted inside the volume where it
// fits; padded where the volume itself is smaller than a patch).
import { type Box, type Vec3, boxOfShape, grow, growTo, intersect } from '../geometry/box.ts';

export function halfPatch(patch: Vec3): Vec3 {
  return [Math.ceil(patch[0] / 2), Math.ceil(patch[1] / 2), Math.ceil(patch[2] / 2)];
}

export function contextBox(write: Box, patch: Vec3, volume: Vec3): Box {
  const vol = boxOfShape(volume);
  const clipped = intersect(grow(write, halfPatch(patch)), vol);
  return growTo(growTo(clipped, patch, vol), patch);
}
