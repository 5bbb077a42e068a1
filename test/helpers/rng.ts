// Seeded PRNG for tests: the library's mulberry32 (tests only need reproducible random inputs).
export { mulberry32 as rng } from '../../shared/synth/random.ts';

/** Integer in [lo, hi). */
export function randInt(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo));
}
