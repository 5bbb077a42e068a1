// Mapping between full-resolution and low-resolution voxel grids. `factor` is full-resolution
// voxels per low-resolution voxel along each axis (may be fractional, e.g. COVID 2.71/1.5).
// Low-res boxes map outward so a mapped box always covers what the source box covered. Pure.
import { type Box, type Vec3, box } from './box.ts';

export function scaleFactor(fullSpacing: Vec3, lowSpacing: Vec3): Vec3 {
  return [lowSpacing[0] / fullSpacing[0], lowSpacing[1] / fullSpacing[1], lowSpacing[2] / fullSpacing[2]];
}

/** Shape of a volume after downsampling by `factor` (at least one voxel). */
export function lowShape(shape: Vec3, factor: Vec3): Vec3 {
  return [
    Math.max(1, Math.round(shape[0] / factor[0])),
    Math.max(1, Math.round(shape[1] / factor[1])),
    Math.max(1, Math.round(shape[2] / factor[2])),
  ];
}

/** Full-res box → smallest low-res box covering it. */
export function toLow(b: Box, factor: Vec3): Box {
  return box(
    [Math.floor(b.begin[0] / factor[0]), Math.floor(b.begin[1] / factor[1]), Math.floor(b.begin[2] / factor[2])],
    [Math.ceil(b.end[0] / factor[0]), Math.ceil(b.end[1] / factor[1]), Math.ceil(b.end[2] / factor[2])],
  );
}

/** Low-res box → full-res box covering it (rounded outward). */
export function toFull(b: Box, factor: Vec3): Box {
  return box(
    [Math.floor(b.begin[0] * factor[0]), Math.floor(b.begin[1] * factor[1]), Math.floor(b.begin[2] * factor[2])],
    [Math.ceil(b.end[0] * factor[0]), Math.ceil(b.end[1] * factor[1]), Math.ceil(b.end[2] * factor[2])],
  );
}
