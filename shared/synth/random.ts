// Deterministic randomness for the synthetic volumes. Two kinds, never mixed:
// - a seeded sequential PRNG (mulberry32) for object lists, drawn once per scene or per tile;
// - integer hashes of absolute coordinates for per-voxel noise, so any region of a volume
//   renders bit-identically to the same region cut from the whole volume.
// Pure: imports nothing.

/** A 32-bit avalanche mix (lowbias32 by C. Wellons); returns an unsigned 32-bit integer. */
export function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Fold one more integer into a running hash. */
export function hashStep(h: number, v: number): number {
  return mix32((h ^ Math.imul(v | 0, 0x9e3779b1)) + 0x632be5ab);
}

/** Hash of a list of integers (order matters). */
export function hashInts(...vs: number[]): number {
  let h = 0x2545f491;
  for (const v of vs) h = hashStep(h, v);
  return h;
}

/** Uniform in [0, 1) from a hash. */
export function unit(h: number): number {
  return (h >>> 0) / 4294967296;
}

/**
 * Approximately standard normal from one 32-bit hash: the sum of its four bytes
 * (Irwin–Hall, n = 4), centred and scaled; bounded to about ±3.45.
 */
export function gauss(h: number): number {
  return ((h & 255) + ((h >>> 8) & 255) + ((h >>> 16) & 255) + (h >>> 24) - 510) * (1 / 147.8);
}

/** mulberry32: a small, fast seeded PRNG giving uniform numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform in [lo, hi). */
export function uniform(rng: () => number, lo: number, hi: number): number {
  return lo + (hi - lo) * rng();
}

/** Integer in [lo, hi] inclusive. */
export function randInt(rng: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rng() * (hi - lo + 1));
}
