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
