// Half-open voxel boxes in [z, y, x] order. Pure: this module imports nothing from Tessera.
// Boxes are plain frozen data so they travel through messages and JSON unchanged.

export type Vec3 = readonly [number, number, number];

export interface Box {
  readonly begin: Vec3;
  readonly end: Vec3;
}

export function vec3(z: number, y: number, x: number): Vec3 {
  return [z, y, x];
}

export function box(begin: Vec3, end: Vec3): Box {
  return { begin: [begin[0], begin[1], begin[2]], end: [end[0], end[1], end[2]] };
}

/** The box [0, shape). */
export function boxOfShape(shape: Vec3): Box {
  return box([0, 0, 0], shape);
}

/** A box of `shape` starting at `begin`. */
export function boxAt(begin: Vec3, shape: Vec3): Box {
  return box(begin, [begin[0] + shape[0], begin[1] + shape[1], begin[2] + shape[2]]);
}

export function shapeOf(b: Box): Vec3 {
  return [
    Math.max(0, b.end[0] - b.begin[0]),
    Math.max(0, b.end[1] - b.begin[1]),
    Math.max(0, b.end[2] - b.begin[2]),
  ];
}

export function volumeOf(b: Box): number {
  const s = shapeOf(b);
  return s[0] * s[1] * s[2];
}

export function isEmpty(b: Box): boolean {
  return b.end[0] <= b.begin[0] || b.end[1] <= b.begin[1] || b.end[2] <= b.begin[2];
}

/**
 * Voxels covered by the union of `boxes` (overlaps counted once), by coordinate compression:
 * at most (2k)³ cells for k boxes and never more than the voxels of their bounding box.
 */
export function unionVolume(boxes: readonly Box[]): number {
  const live = boxes.filter((b) => !isEmpty(b));
  if (live.length === 0) return 0;
  if (live.length === 1) return volumeOf(live[0]);
  let cuts = [0, 1, 2].map((a) => [...new Set(live.flatMap((b) => [b.begin[a], b.end[a]]))].sort((p, q) => p - q));
  // Many boxes in a small region: the voxels themselves are fewer cells than the compressed grid.
  if (cuts.reduce((n, c) => n * (c.length - 1), 1) > cuts.reduce((n, c) => n * (c[c.length - 1] - c[0]), 1)) {
    cuts = cuts.map((c) => Array.from({ length: c[c.length - 1] - c[0] + 1 }, (_, i) => c[0] + i));
  }
  const n = cuts.map((c) => c.length - 1);
  const at = cuts.map((c) => new Map(c.map((v, i) => [v, i])));
  const cell = new Uint8Array(n[0] * n[1] * n[2]);
  for (const b of live) {
    const lo = [0, 1, 2].map((a) => at[a].get(b.begin[a])!);
    const hi = [0, 1, 2].map((a) => at[a].get(b.end[a])!);
    for (let z = lo[0]; z < hi[0]; z++) for (let y = lo[1]; y < hi[1]; y++) cell.fill(1, (z * n[1] + y) * n[2] + lo[2], (z * n[1] + y) * n[2] + hi[2]);
  }
  let v = 0;
  for (let z = 0; z < n[0]; z++) for (let y = 0; y < n[1]; y++) for (let x = 0; x < n[2]; x++) {
    if (cell[(z * n[1] + y) * n[2] + x]) v += (cuts[0][z + 1] - cuts[0][z]) * (cuts[1][y + 1] - cuts[1][y]) * (cuts[2][x + 1] - cuts[2][x]);
  }
  return v;
}

export function intersect(a: Box, b: Box): Box {
  return box(
    [Math.max(a.begin[0], b.begin[0]), Math.max(a.begin[1], b.begin[1]), Math.max(a.begin[2], b.begin[2])],
    [Math.min(a.end[0], b.end[0]), Math.min(a.end[1], b.end[1]), Math.min(a.end[2], b.end[2])],
  );
}

/** The smallest box holding both. */
export function union(a: Box, b: Box): Box {
  return box(
    [Math.min(a.begin[0], b.begin[0]), Math.min(a.begin[1], b.begin[1]), Math.min(a.begin[2], b.begin[2])],
    [Math.max(a.end[0], b.end[0]), Math.max(a.end[1], b.end[1]), Math.max(a.end[2], b.end[2])],
  );
}

export function contains(outer: Box, inner: Box): boolean {
  return (
    outer.begin[0] <= inner.begin[0] && outer.begin[1] <= inner.begin[1] && outer.begin[2] <= inner.begin[2] &&
    outer.end[0] >= inner.end[0] && outer.end[1] >= inner.end[1] && outer.end[2] >= inner.end[2]
  );
}

export function containsPoint(b: Box, p: Vec3): boolean {
  return (
    p[0] >= b.begin[0] && p[0] < b.end[0] &&
    p[1] >= b.begin[1] && p[1] < b.end[1] &&
    p[2] >= b.begin[2] && p[2] < b.end[2]
  );
}

/** Grow by `margin` on every side (negative shrinks). */
export function grow(b: Box, margin: Vec3): Box {
  return box(
    [b.begin[0] - margin[0], b.begin[1] - margin[1], b.begin[2] - margin[2]],
    [b.end[0] + margin[0], b.end[1] + margin[1], b.end[2] + margin[2]],
  );
}

export function translate(b: Box, by: Vec3): Box {
  return box(
    [b.begin[0] + by[0], b.begin[1] + by[1], b.begin[2] + by[2]],
    [b.end[0] + by[0], b.end[1] + by[1], b.end[2] + by[2]],
  );
}

export function equals(a: Box, b: Box): boolean {
  return (
    a.begin[0] === b.begin[0] && a.begin[1] === b.begin[1] && a.begin[2] === b.begin[2] &&
    a.end[0] === b.end[0] && a.end[1] === b.end[1] && a.end[2] === b.end[2]
  );
}

export function center(b: Box): Vec3 {
  return [(b.begin[0] + b.end[0]) / 2, (b.begin[1] + b.end[1]) / 2, (b.begin[2] + b.end[2]) / 2];
}

/**
 * Grow a box symmetrically so that every axis is at least `minShape`, then shift it back
 * inside `bounds` where possible (a box never shrinks below what `bounds` allows).
 */
export function growTo(b: Box, minShape: Vec3, bounds?: Box): Box {
  const begin: number[] = [];
  const end: number[] = [];
  for (let a = 0; a < 3; a++) {
    const len = b.end[a] - b.begin[a];
    let lo = b.begin[a];
    let hi = b.end[a];
    if (len < minShape[a]) {
      const extra = minShape[a] - len;
      lo -= Math.floor(extra / 2);
      hi = lo + minShape[a];
    }
    if (bounds) {
      const bl = bounds.begin[a];
      const bh = bounds.end[a];
      if (hi - lo >= bh - bl) {
        lo = bl;
        hi = bh;
      } else if (lo < bl) {
        hi += bl - lo;
        lo = bl;
      } else if (hi > bh) {
        lo -= hi - bh;
        hi = bh;
      }
    }
    begin.push(lo);
    end.push(hi);
  }
  return box(begin as unknown as Vec3, end as unknown as Vec3);
}

/** Intersection over union of two boxes; 0 when either is empty. */
export function iou(a: Box, b: Box): number {
  const i = volumeOf(intersect(a, b));
  if (i === 0) return 0;
  return i / (volumeOf(a) + volumeOf(b) - i);
}

/** Intersection over the smaller box's volume (1 when one holds the other). */
export function intersectionOverSmaller(a: Box, b: Box): number {
  const i = volumeOf(intersect(a, b));
  if (i === 0) return 0;
  return i / Math.min(volumeOf(a), volumeOf(b));
}

/** Snap outward to multiples of `step` (aligned to `origin`). */
export function snapOut(b: Box, step: Vec3, origin: Vec3 = [0, 0, 0]): Box {
  const f = (v: number, a: number) => origin[a] + Math.floor((v - origin[a]) / step[a]) * step[a];
  const c = (v: number, a: number) => origin[a] + Math.ceil((v - origin[a]) / step[a]) * step[a];
  return box([f(b.begin[0], 0), f(b.begin[1], 1), f(b.begin[2], 2)], [c(b.end[0], 0), c(b.end[1], 1), c(b.end[2], 2)]);
}

export function boxToString(b: Box): string {
  return `${b.begin[0]}:${b.end[0]},${b.begin[1]}:${b.end[1]},${b.begin[2]}:${b.end[2]}`;
}

/** Parse "Z0:Z1,Y0:Y1,X0:X1"; returns undefined for malformed text (callers name the field). */
export function parseBox(text: string): Box | undefined {
  const parts = text.split(',');
  if (parts.length !== 3) return undefined;
  const begin: number[] = [];
  const end: number[] = [];
  for (const p of parts) {
    const m = /^\s*(-?\d+)\s*:\s*(-?\d+)\s*$/.exec(p);
    if (!m) return undefined;
    begin.push(Number(m[1]));
    end.push(Number(m[2]));
  }
  return box(begin as unknown as Vec3, end as unknown as Vec3);
}
